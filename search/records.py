"""What a trial's record in storage holds, written and read in one place."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from trainer.records import FoldResult

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def fold_results(trial: FrozenTrial) -> list[FoldResult]:
    """The folds a trial finished, in fold order (read from its ``fold_<i>`` attributes)."""
    out = []
    for key, value in trial.user_attrs.items():
        if key.startswith("fold_") and key[5:].isdigit():
            out.append(FoldResult.from_dict(value))
    return sorted(out, key=lambda r: r.fold)


def failure_kind(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get("failure_kind", "heartbeat_stale"))


def count_states(study: optuna.Study) -> dict[TrialState, int]:
    counts = {state: 0 for state in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state] += 1
    return counts


def trial_note(number: int, metric: str, folds: list[FoldResult], class_names: list[str]) -> str:
    """Markdown for the dashboard: fold scores and a per-class summary of the confusion matrix."""
    lines = [
        f"## Trial {number}",
        "",
        f"| fold | best epoch | {metric} | macro F1 | loss |",
        "|---:|---:|---:|---:|---:|",
    ]
    for f in folds:
        b = f.best
        lines.append(
            f"| {f.fold} | {f.best_epoch} | {getattr(b, metric):.4f} | "
            f"{b.macro_f1:.4f} | {b.loss:.4f} |"
        )
    scores = [f.score(metric) for f in folds]
    if scores:
        lines += ["", f"mean {metric}: **{np.mean(scores):.4f}** (sd {np.std(scores):.4f})"]
    confusions = [np.array(f.confusion) for f in folds if f.confusion]
    if confusions:
        total: np.ndarray = np.sum(confusions, axis=0)
        lines += ["", "| class | images | recall | most confused with |", "|---|---:|---:|---|"]
        for i, name in enumerate(class_names[: total.shape[0]]):
            row = total[i].astype(float)
            n = row.sum()
            recall = row[i] / n if n else 0.0
            off = row.copy()
            off[i] = -1
            j = int(off.argmax())
            confused = f"{class_names[j]} ({int(row[j])})" if row[j] > 0 else "-"
            lines.append(f"| {name} | {int(n)} | {recall:.3f} | {confused} |")
    return "\n".join(lines)


def leaderboard(study: optuna.Study, top: int = 10) -> list[dict[str, Any]]:
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: -float(t.value or 0.0) if maximize else float(t.value or 0.0))
    rows = []
    for t in done[:top]:
        config = t.user_attrs.get("config", {})
        rows.append(
            {
                "trial": t.number,
                "value": t.value,
                "backbone": config.get("backbone", "?"),
                "augment": config.get("augment", "?"),
                "optimizer": config.get("optimizer", "?"),
                "learning_rate": config.get("learning_rate", float("nan")),
                "fold_scores": t.user_attrs.get("fold_scores", []),
            }
        )
    return rows


def best_complete(study: optuna.Study) -> FrozenTrial | None:
    """The study's best complete trial (the lower number on a tie), or None before the first."""
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    if not done:
        return None
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    return max(done, key=lambda t: (sign * float(t.value or 0.0), -t.number))


def best_so_far(study: optuna.Study) -> tuple[int, float] | None:
    """(number, value) of the study's best complete trial, or None before the first."""
    best = best_complete(study)
    return (best.number, float(best.value or 0.0)) if best is not None else None
