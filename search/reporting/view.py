"""The parts of a study the report, its page and its figures read: a ``StudyView`` fixed once,
so every table and figure sees the same trials, and how a trial's values and state are named."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from storage.records import score

STATE_LABELS = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


@dataclass(frozen=True)
class StudyView:
    """The parts of a study the report reads, fixed once so every figure sees the same trials."""

    trials: tuple[FrozenTrial, ...]
    folds: int
    epochs: int
    metric: str
    maximize: bool = True

    @property
    def sign(self) -> float:
        """1 when the study maximises, -1 when it minimises: ``sign * value`` is
        higher-is-better (as ``storage.records.direction_sign``)."""
        return 1.0 if self.maximize else -1.0

    @property
    def budget(self) -> int:
        """Fold-epochs one trial may train: every fold to its last epoch."""
        return self.folds * self.epochs

    def of(self, *states: TrialState) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state in states]

    def ranked(self) -> list[FrozenTrial]:
        """Complete trials with a value, best first."""
        done = [t for t in self.of(TrialState.COMPLETE) if score(t) is not None]
        return sorted(done, key=lambda t: (-self.sign * float(score(t) or 0.0), t.number))


def param(trial: FrozenTrial, name: str) -> Any:
    """A sampled parameter, else the value in the trial's stored configuration."""
    if name in trial.params:
        return trial.params[name]
    return trial.user_attrs.get("config", {}).get(name)


def fold_mean(trial: FrozenTrial) -> float | None:
    """The mean of the fold scores a trial finished (None before its first fold ends)."""
    scores = [float(v) for v in trial.user_attrs.get("fold_scores", [])]
    return sum(scores) / len(scores) if scores else None


def state_label(state: TrialState) -> str:
    """``failed``, not ``fail``: how the page names a trial state."""
    return STATE_LABELS.get(state, state.name.lower())
