"""What the Optuna dashboard shows beyond Optuna's own pages: notes and confusion matrices.

Each finished trial gets a Markdown note (fold scores, per-class summary), a ``per_class`` user
attribute (precision/recall/F1 from the confusion matrix summed over its finished folds) and,
with an artifact folder, that confusion matrix as a PNG artifact. The study gets a note
(``study_note``): the final model a --budget run exported, the objective, how to read the curves
and the importance chart, and the current leaderboard. None of this may fail a trial: errors
are logged and skipped.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from search.reporting.final_model import final_rows
from search.reporting.pareto import front_markdown
from search.reporting.summary import curves_note, importance_note, objective_text
from search.reporting.trials import leaderboard, trial_note
from search.text import counted
from trainer.records import FoldResult

log = logging.getLogger(__name__)


def per_class(matrix: np.ndarray, class_names: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows: true)."""
    m = np.asarray(matrix, dtype=np.float64)
    out = {}
    for i, name in enumerate(class_names[: m.shape[0]]):
        tp, predicted, actual = m[i, i], m[:, i].sum(), m[i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": int(actual),
        }
    return out


def default_artifact_dir(storage_url: str) -> str:
    """Beside the SQLite file (``studies.db`` -> ``artifacts/``), else ``./artifacts``."""
    if storage_url.startswith("sqlite:///"):
        database = storage_url[len("sqlite:///") :].split("?")[0]
        return str(Path(database).expanduser().resolve().parent / "artifacts")
    return str(Path("artifacts").resolve())


class DashboardWriter:
    def __init__(
        self, study: optuna.Study, metric: str, class_names: list[str], artifact_dir: str | None
    ) -> None:
        self.study = study
        self.metric = metric
        self.class_names = class_names
        self.store = None
        if artifact_dir:
            from optuna.artifacts import FileSystemArtifactStore

            self.store = FileSystemArtifactStore(artifact_dir)

    def trial_done(self, trial: optuna.Trial, folds: list[FoldResult]) -> None:
        """Call before ``tell``: artifacts and notes attach to a trial that is still running."""
        if not folds:
            return
        try:
            from optuna_dashboard import save_note

            epochs = self.study.user_attrs.get("epochs")
            note = trial_note(trial.number, self.metric, folds, self.class_names)
            save_note(trial, f"{note}\n\nIntermediate values: {curves_note(epochs)}.")
            confusions = [np.array(f.confusion) for f in folds if f.confusion]
            if not confusions:
                return
            total = np.sum(confusions, axis=0)
            trial.set_user_attr("confusion", total.tolist())
            trial.set_user_attr("per_class", per_class(total, self.class_names))
            if self.store is not None:
                self._upload(trial, total, len(folds))
        except Exception as exc:  # the dashboard extras are niceties
            log.warning("could not save dashboard extras of trial %d: %s", trial.number, exc)

    def _upload(self, trial: optuna.Trial, total: np.ndarray, n_folds: int) -> None:
        from optuna.artifacts import upload_artifact

        assert self.store is not None

        from search.reporting.confusion import confusion_png

        png = confusion_png(
            total,
            self.class_names,
            f"trial {trial.number}: confusion over {counted(n_folds, 'fold')}",
        )
        # The dashboard names an artifact after the uploaded file: a private folder keeps the
        # plain name without colliding with another worker's upload.
        with tempfile.TemporaryDirectory(prefix="search-artifact-") as folder:
            path = os.path.join(folder, f"confusion_trial{trial.number}.png")
            with open(path, "wb") as fh:
                fh.write(png)
            upload_artifact(
                artifact_store=self.store,
                file_path=path,
                study_or_trial=trial,
                mimetype="image/png",
            )

    def study_changed(self) -> None:
        """Refresh the study's note (``study_note``)."""
        try:
            from optuna_dashboard import save_note

            save_note(self.study, study_note(self.study, self.metric))
        except Exception as exc:
            log.warning("could not save the study's leaderboard note: %s", exc)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def study_note(study: optuna.Study, metric: str) -> str:
    """The study's Markdown note: the final model a --budget run exported (when there is one),
    the Pareto front (with a cost objective), the objective, how to read the per-step curves and
    the importance chart, the leaderboard."""
    attrs = study.user_attrs
    lines = []
    final = final_rows(attrs)
    if final:
        lines += ["## Final model", "", "| | |", "|---|---|"]
        lines += [f"| {what} | {_cell(value)} |" for what, value in final]
        lines.append("")
    lines += front_markdown(study)
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    lines += [
        "## Objective",
        "",
        f"**{objective_text(metric, study)}**.",
        "",
        f"Intermediate values: {curves_note(attrs.get('epochs'))}.",
        "",
        importance_note(complete)
        or f"Parameter importances: over {counted(complete, 'complete trial')}, a rough guide.",
        "",
        "## Leaderboard",
        "",
        f"| trial | {metric} | backbone | augment | optimizer | learning rate | fold scores |",
        "|---:|---:|---|---|---|---:|---|",
    ]
    rows = leaderboard(study, top=10)
    for r in rows:
        folds = ", ".join(f"{s:.3f}" for s in r["fold_scores"])
        lines.append(
            f"| {r['trial']} | {r['value']:.4f} | {r['backbone']} | {r['augment']} | "
            f"{r['optimizer']} | {r['learning_rate']:.2g} | {folds} |"
        )
    if not rows:
        lines.append("| - | no complete trial yet | | | | | |")
    return "\n".join(lines)
