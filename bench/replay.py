"""Replay the recorded training table (bench/hpo_table.py) as a trainer (issue 7).

``train_trial`` has ``trainer.train_trial``'s signature, so the real coordinator runs it through
``python -m search.run --trainer replay:train_trial`` (with ``bench/`` on ``PYTHONPATH`` and the
table named by ``HPO_TABLE``); the other systems call ``run_fold``/``train_trial`` directly.
Every system therefore sees the same per-epoch validation scores, produced by the project's
trainer on the real data, and pays for exactly the epochs it asks for.

Learning rates are searched on a log scale over the grid's span and snapped to the nearest grid
value (in log space), so every system searches the same continuous-looking space.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from trainer.config import Decision, TrialConfig
from trainer.errors import NonFiniteLoss
from trainer.records import Dataset, EpochMetrics, Fold, FoldFn, FoldResult, ReportFn, TrialResult

TABLE_ENV = "HPO_TABLE"


def key_of(point: dict) -> str:
    """A grid point's key in the table, its knobs in the grid's order (bench/hpo_table.py
    writes, everyone here reads)."""
    return "|".join(f"{k}={v}" for k, v in point.items())


@dataclass(frozen=True)
class Table:
    setup: dict
    points: dict

    @property
    def epochs(self) -> int:
        return int(self.setup["epochs"])

    @property
    def folds(self) -> int:
        return int(self.setup["folds"])

    @property
    def grid(self) -> dict:
        return self.setup["grid"]

    def lr_range(self) -> tuple[float, float]:
        """The continuous range every system searches: the grid's span +- half a step."""
        logs = sorted(math.log10(v) for v in self.grid["learning_rate"])
        half = (logs[-1] - logs[0]) / (len(logs) - 1) / 2
        return 10 ** (logs[0] - half), 10 ** (logs[-1] + half)

    def snap(self, lr: float) -> float:
        return min(self.grid["learning_rate"], key=lambda v: abs(math.log10(v / lr)))

    @property
    def held_out(self) -> bool:
        """Table B: recorded on images no constant was chosen on (bench/hpo_table.py)."""
        return self.setup.get("images_from", "all") == "other"

    @property
    def knobs(self) -> tuple[str, ...]:
        """The searched knobs, in the grid's order (learning rate among them)."""
        return tuple(self.grid)

    @property
    def choices(self) -> dict[str, list]:
        """The categorical knobs and their values (every knob but the learning rate)."""
        return {k: v for k, v in self.grid.items() if k != "learning_rate"}

    def entry(self, values: dict) -> dict:
        """The recorded point of a configuration (``values`` has every knob; others ignored)."""
        point = {k: self.snap(values[k]) if k == "learning_rate" else values[k] for k in self.knobs}
        key = key_of(point)
        if key not in self.points:
            raise KeyError(f"{key} is not in the table (is the table complete?)")
        return self.points[key]

    def trace_seconds(self, entry: dict) -> float:
        """Tracing paid by a fresh model: fold 1's first epoch minus its typical later epoch."""
        secs = entry["folds"][0]["seconds"]
        later = sorted(secs[1:])
        return max(0.0, secs[0] - later[len(later) // 2]) if later else 0.0


@cache
def load_table(path: str | None = None) -> Table:
    path = path or os.environ.get(TABLE_ENV)
    if not path:
        raise RuntimeError(f"set {TABLE_ENV} to the table written by bench/hpo_table.py")
    raw = json.loads(Path(path).read_text())
    return Table(raw["setup"], raw["points"])


def run_fold(
    entry: dict, fold: int, epochs: int, patience: int
) -> tuple[list[float], list[float], int]:
    """Accuracies and seconds of the epochs a fold trains (early stopping applied), best epoch."""
    curve = entry["folds"][fold]["accuracy"][:epochs]
    best, best_epoch, wait, used = -math.inf, 0, 0, 0
    for epoch, acc in enumerate(curve):
        used = epoch + 1
        if acc > best:
            best, best_epoch, wait = acc, epoch, 0
        else:
            wait += 1
        if patience and wait >= patience:
            break
    return curve[:used], entry["folds"][fold]["seconds"][:used], best_epoch


def train_trial(
    config: TrialConfig,
    data: Dataset,
    folds: Sequence[Fold],
    report: ReportFn,
    *,
    monitor: str = "accuracy",
    on_fold: FoldFn | None = None,
    completed: Sequence[FoldResult] = (),
    **_: object,
) -> TrialResult:
    table = load_table()
    if config.epochs != table.epochs or len(folds) != table.folds:
        raise ValueError(
            f"the table has {table.folds} folds x {table.epochs} epochs; the study asks for "
            f"{len(folds)} x {config.epochs}"
        )
    entry = table.entry({k: getattr(config, k) for k in table.knobs})
    if entry["failed"]:
        raise NonFiniteLoss(f"recorded failure: {entry['failed']}")
    done = {r.fold: r for r in completed}
    results = [done[i] for i in sorted(done)]
    stopped, reason = False, ""
    for index in range(len(folds)):
        if index in done:
            continue
        accs, secs, _ = run_fold(entry, index, config.epochs, config.patience)
        balanced = entry["folds"][index]["balanced_accuracy"]
        epochs: list[EpochMetrics] = []
        fold_stopped = False
        for epoch, (acc, sec) in enumerate(zip(accs, secs, strict=True)):
            m = EpochMetrics(
                epoch=epoch,
                accuracy=acc,
                balanced_accuracy=balanced[epoch],
                macro_precision=acc,
                macro_recall=balanced[epoch],
                macro_f1=acc,
                loss=1.0 - acc,
                train_loss=1.0 - acc,
                learning_rate=config.learning_rate,
                seconds=sec,
            )
            epochs.append(m)
            if report(index, epoch, m) is Decision.STOP:
                fold_stopped = True
                break
        best = max(epochs, key=lambda e: getattr(e, monitor))
        result = FoldResult(
            fold=index,
            epochs=tuple(epochs),
            best_epoch=best.epoch,
            stopped=fold_stopped,
            early_stopped=len(accs) < config.epochs,
            seconds=sum(e.seconds for e in epochs),
            first_epoch_seconds=epochs[0].seconds,
        )
        results.append(result)
        if fold_stopped:
            stopped, reason = True, f"stopped during fold {index}"
            break
        if on_fold is not None and on_fold(result) is Decision.STOP and index < len(folds) - 1:
            stopped, reason = True, f"stopped after fold {index}"
            break
    return TrialResult(tuple(results), len(folds), stopped=stopped, stop_reason=reason)
