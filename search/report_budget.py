"""Where each trial's fold-epoch budget went, for the report: trained, re-used or saved.

A trial promoted by the screen re-uses its screened trial's first fold, and a retry re-uses the
folds its failed predecessor finished (``reused_folds``): those epochs are shown again in its
record but were trained by the other trial, so they are neither trained again nor saved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from search.records import FINISHED, fold_results

ROW_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


@dataclass(frozen=True)
class Budget:
    """Fold-epochs of one trial, or summed over several: ``trained + reused + saved`` is the
    full budget of every finished trial; a trial that did not finish saves nothing."""

    trained: int
    reused: int
    saved: int

    def __add__(self, other: Budget) -> Budget:
        return Budget(
            self.trained + other.trained, self.reused + other.reused, self.saved + other.saved
        )


@dataclass(frozen=True)
class PruningRow:
    """The fold-epochs one state's trials trained, re-used and saved."""

    state: TrialState
    trials: int
    budget: Budget


def reused_epochs(trial: FrozenTrial) -> int:
    """Fold-epochs of the folds a trial re-used from a failed or screened trial."""
    reused = set(trial.user_attrs.get("reused_folds", ()))
    return sum(len(r.epochs) for r in fold_results(trial) if r.fold in reused)


def fold_epochs(trial: FrozenTrial) -> int:
    """Fold-epochs a trial trained: one reported step per epoch of every fold it ran, less the
    folds it re-used from a failed or screened trial (shown again, not trained again)."""
    return len(trial.intermediate_values) - reused_epochs(trial)


def trial_budget(trial: FrozenTrial, budget: int) -> Budget:
    """Split a trial's ``budget`` (folds x epochs) into trained, re-used and saved."""
    trained, reused = fold_epochs(trial), reused_epochs(trial)
    saved = max(0, budget - trained - reused) if trial.state in FINISHED else 0
    return Budget(trained, reused, saved)


def total(trials: Iterable[FrozenTrial], budget: int) -> Budget:
    out = Budget(0, 0, 0)
    for t in trials:
        out += trial_budget(t, budget)
    return out


def pruning_rows(trials: Iterable[FrozenTrial], budget: int) -> list[PruningRow]:
    """One row per state: complete and pruned always, failed and running when present."""
    trials = list(trials)
    rows = []
    for state in ROW_STATES:
        of = [t for t in trials if t.state == state]
        if of or state in FINISHED:
            rows.append(PruningRow(state, len(of), total(of, budget)))
    return rows
