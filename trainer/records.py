"""Records that cross process boundaries: plain dataclasses that round-trip through JSON."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from trainer.config import Decision

if TYPE_CHECKING:
    from trainer.config import TrialConfig
    from trainer.hooks import TrainHooks

METRIC_NAMES: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "loss",
)


@dataclass(frozen=True)
class Dataset:
    """Images kept as uint8 N x H x W x 3 and int64 labels 0..C-1."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.images[index], self.labels[index], self.class_names)


@dataclass(frozen=True)
class Fold:
    """Indices into the dataset for one cross-validation split."""

    train: np.ndarray
    val: np.ndarray


@dataclass(frozen=True)
class EpochMetrics:
    """Validation metrics after one epoch (plus the training loss and learning rate used)."""

    epoch: int
    accuracy: float
    balanced_accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    loss: float
    train_loss: float
    learning_rate: float
    seconds: float
    phase: str = "train"  # "warmup" (head only) or "train"
    # Only with the robust_accuracy objective: accuracy under the seeded corruptions
    # (trainer/corruptions.py), and the mean of clean and corrupted accuracy.
    corrupted_accuracy: float = float("nan")
    robust_accuracy: float = float("nan")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FoldResult:
    """One fold: every epoch's validation metrics, the best epoch and how it ended."""

    fold: int
    epochs: tuple[EpochMetrics, ...]
    best_epoch: int
    stopped: bool  # a STOP decision ended this fold
    early_stopped: bool  # patience ran out (best weights restored)
    seconds: float
    first_epoch_seconds: float
    confusion: tuple[tuple[int, ...], ...] = ()  # rows: true class, cols: predicted, best epoch

    @property
    def best(self) -> EpochMetrics:
        return next(e for e in self.epochs if e.epoch == self.best_epoch)

    def score(self, metric: str) -> float:
        return float(getattr(self.best, metric))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["confusion"] = [list(r) for r in self.confusion]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FoldResult:
        return cls(
            fold=int(data["fold"]),
            epochs=tuple(EpochMetrics(**e) for e in data["epochs"]),
            best_epoch=int(data["best_epoch"]),
            stopped=bool(data["stopped"]),
            early_stopped=bool(data["early_stopped"]),
            seconds=float(data["seconds"]),
            first_epoch_seconds=float(data["first_epoch_seconds"]),
            confusion=tuple(tuple(int(v) for v in r) for r in data.get("confusion", ())),
        )


@dataclass(frozen=True)
class TrialResult:
    """What one trial did: its folds (completed ones first), whether a decision stopped it."""

    folds: tuple[FoldResult, ...]
    n_folds: int  # how many folds the trial was asked to run
    stopped: bool
    stop_reason: str = ""
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def completed_folds(self) -> int:
        return sum(1 for f in self.folds if not f.stopped)

    def mean_score(self, metric: str) -> float:
        done = [f.score(metric) for f in self.folds if not f.stopped]
        return float(np.mean(done)) if done else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "folds": [f.to_dict() for f in self.folds],
            "n_folds": self.n_folds,
            "stopped": self.stopped,
            "stop_reason": self.stop_reason,
            "seconds": self.seconds,
            "timings": dict(self.timings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        return cls(
            folds=tuple(FoldResult.from_dict(f) for f in data["folds"]),
            n_folds=int(data["n_folds"]),
            stopped=bool(data["stopped"]),
            stop_reason=str(data.get("stop_reason", "")),
            seconds=float(data.get("seconds", 0.0)),
            timings={k: float(v) for k, v in data.get("timings", {}).items()},
        )


# report(fold, epoch, metrics) -> Decision, called after every validated epoch.
ReportFn = Callable[[int, int, EpochMetrics], Decision]
# on_fold(result) -> Decision, called after each finished fold.
FoldFn = Callable[[FoldResult], Decision]


class TrainTrial(Protocol):
    """What trains one trial: ``trainer.train.train_trial``, the fake trainer
    (``search.testing.fake``), a replay of recorded curves, or a ``--trainer module:function``.

    Trains ``folds`` (skipping the folds in ``completed``, which are returned as they are),
    calls ``report`` after every epoch and ``on_fold`` after every fold, and stops early when
    either answers ``Decision.STOP``."""

    def __call__(
        self,
        config: TrialConfig,
        data: Dataset,
        folds: Sequence[Fold],
        report: ReportFn,
        *,
        monitor: str = "accuracy",
        on_fold: FoldFn | None = None,
        completed: Sequence[FoldResult] = (),
        hooks: TrainHooks | None = None,
    ) -> TrialResult: ...
