"""Where each trial's fold-epoch budget went, for the report: trained, re-used, continued or
saved.

A trial promoted by the screen re-uses its screened trial's first fold, and a retry re-uses the
folds its failed predecessor finished (``reused_folds``): those epochs are shown again in its
record but were trained by the other trial, so they are neither trained again nor saved. The
other way round, the folds a screened trial left untrained and its promoted trial (or a retry of
that one) went on to train are *continued*: trained, once, in the promoted trial's record, so
not saved either. Saved is what no trial trained.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from search.policy.pruning import PROMOTED_FROM
from storage.records import FINISHED, epoch_values, fold_results

ROW_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


@dataclass(frozen=True)
class Budget:
    """Fold-epochs of one trial, or summed over several: ``trained + reused + continued +
    saved`` is the full budget of every finished trial; a trial that did not finish continues
    and saves nothing."""

    trained: int
    reused: int
    continued: int
    saved: int

    def __add__(self, other: Budget) -> Budget:
        return Budget(
            self.trained + other.trained,
            self.reused + other.reused,
            self.continued + other.continued,
            self.saved + other.saved,
        )


NOTHING = Budget(0, 0, 0, 0)


@dataclass(frozen=True)
class PruningRow:
    """The fold-epochs one state's trials trained, re-used, had continued and saved."""

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
    return len(epoch_values(trial)) - reused_epochs(trial)


def trained_steps(trial: FrozenTrial, epochs: int) -> set[int]:
    """The steps (``fold * epochs + epoch``) a trial trained itself: not those of re-used folds."""
    reused = set(trial.user_attrs.get("reused_folds", ()))
    return {s for s in epoch_values(trial) if s // epochs not in reused}


def continued_epochs(trials: Iterable[FrozenTrial], epochs: int) -> dict[int, int]:
    """Per screened trial number: the fold-epochs it did not train that the trial promoted from
    it, or a retry of that trial, did (each step once, however often it was tried)."""
    trials = list(trials)
    retries: dict[int, list[FrozenTrial]] = {}
    for t in trials:
        if "retry_of" in t.user_attrs:
            retries.setdefault(int(t.user_attrs["retry_of"]), []).append(t)
    steps: dict[int, set[int]] = {}
    for t in trials:
        if PROMOTED_FROM in t.user_attrs:
            line, seen = [t], steps.setdefault(int(t.user_attrs[PROMOTED_FROM]), set())
            while line:
                heir = line.pop()
                seen |= trained_steps(heir, epochs)
                line += retries.get(heir.number, [])
    return {
        t.number: len(steps[t.number] - set(epoch_values(t))) for t in trials if t.number in steps
    }


def trial_budgets(trials: Iterable[FrozenTrial], *, folds: int, epochs: int) -> dict[int, Budget]:
    """Per trial number: its ``folds x epochs`` budget split into trained, re-used, continued
    (by the trial promoted from it) and saved."""
    trials = list(trials)
    continued = continued_epochs(trials, epochs)
    out = {}
    for t in trials:
        trained, reused = fold_epochs(t), reused_epochs(t)
        if t.state in FINISHED:
            rest = max(0, folds * epochs - trained - reused)
            later = min(rest, continued.get(t.number, 0))
            out[t.number] = Budget(trained, reused, later, rest - later)
        else:
            out[t.number] = Budget(trained, reused, 0, 0)
    return out


def pruning_rows(trials: Iterable[FrozenTrial], *, folds: int, epochs: int) -> list[PruningRow]:
    """One row per state: complete and pruned always, failed and running when present."""
    trials = list(trials)
    budgets = trial_budgets(trials, folds=folds, epochs=epochs)
    rows = []
    for state in ROW_STATES:
        of = [t for t in trials if t.state == state]
        if of or state in FINISHED:
            total = sum((budgets[t.number] for t in of), NOTHING)
            rows.append(PruningRow(state, len(of), total))
    return rows
