"""What the dashboard and the run summary show of the trials: one Markdown note per trial
(fold scores and a per-class summary of the confusion matrix) and the leaderboard rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna

from storage.records import ranked_complete, score
from trainer.records import FoldResult


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
    """The ``top`` complete trials, best first, as table rows."""
    done = ranked_complete(study)
    rows = []
    for t in done[:top]:
        config = t.user_attrs.get("config", {})
        rows.append(
            {
                "trial": t.number,
                "value": score(t),
                "backbone": config.get("backbone", "?"),
                "augment": config.get("augment", "?"),
                "optimizer": config.get("optimizer", "?"),
                "learning_rate": config.get("learning_rate", float("nan")),
                "fold_scores": t.user_attrs.get("fold_scores", []),
            }
        )
    return rows
