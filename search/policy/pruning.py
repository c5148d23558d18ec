"""Two-level pruning with one step scheme: epochs inside folds, and whole folds.

Every epoch is reported at ``step = fold * epochs_per_fold + epoch``, so a step means the same
(fold, epoch) in every trial of a study and epoch-level pruners (median, successive halving)
compare like with like. Fold scores are not intermediate values: they live in the trial's
``fold_scores`` user attribute and a paired fold test compares them with the best trial's scores
on the same folds, so the two levels never share a step.

A study also starts with a screen (``FoldEpochPruner.screen``): while no trial has completed, its
first few trials stop after their first fold. After them, a trial whose first fold beats every
screened one goes on to finish; one that does not is screened too, and once ``screen_max``
trials are screened the one with the best first fold is queued again to finish its remaining
folds (re-using that fold). Without it, every start-up trial that beats the ones before it
trains every fold, only to be beaten a few trials later. Configurations queued when the study
was created (the space's portfolio, ``--warm-start``'s) are not screened: they were chosen to be
good, one fold is too noisy to drop them on, and they finish under the fold test.

In a study with a cost as its second objective (``--objective accuracy,latency``) a trial is
measured before it trains, and both levels compare it only with the complete trials that cost
at most what it costs: only they can dominate it, so a trial stopped is one off the Pareto
front, and the cheapest trials are never stopped by a costlier one's accuracy. The screen and
Optuna's epoch pruners (``median``, ``halving``: single-objective) do not apply there.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import wilcoxon

from storage.records import best_complete, direction_sign, fold_results, queued_first

PRUNERS = ("default", "median", "halving", "fold", "none")
# Trial user attributes of the screen: a trial stopped by it, and the trial queued from the best.
SCREENED = "screened"
PROMOTED_FROM = "promoted_from"
# Set on the trial whose first fold beat every screened trial's: it ends the screen and finishes.
BEAT_SCREEN = "beat_screen"
# Studies shorter than this are not screened: the screen and its promotion would be most of them
# (set before measuring: docs/constants.md).
SCREEN_MIN_TRIALS = 10
# The default's within-fold margin to the best trial (score units: 0.15 = 15 accuracy points).
EPOCH_GAP = 0.15


class StopReason(str, enum.Enum):
    """Why a trial was stopped early: the words its ``pruned_at`` attribute ends with."""

    SCREENING = "screening"  # the screen, after the first fold
    FOLD_LEVEL = "fold-level"  # the paired fold test, after a fold
    EPOCH_LEVEL = "epoch-level"  # the epoch pruner, inside a fold
    BUDGET = "the search's share of --budget ran out"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)


@dataclass(frozen=True)
class ScreenDecision:
    """What the screen decided after a trial's first fold; the engine acts on it.

    ``stop``: the trial stops now (screened). ``tag``: the user attribute to set True on the
    trial (``SCREENED`` or ``BEAT_SCREEN``), if any. ``promote``: the (number, parameters) of
    the screened trial to queue again with ``promoted_from``, if any. ``why``: one line."""

    stop: bool
    why: str
    tag: str | None = None
    promote: tuple[int, dict[str, Any]] | None = field(default=None)


@dataclass(frozen=True)
class FoldTest:
    """Prune a trial whose completed folds are worse than the best trial's same folds.

    After ``k`` folds (from ``min_folds``) it prunes when any of these holds:

    - the mean gap to the best trial on those folds exceeds ``mean_gaps[k - 1]`` (the last entry
      from then on): 3 points after one fold, 2 after two, 1 from the third. The tolerated gap
      shrinks as folds accumulate because the mean of ``k`` paired fold differences is less
      noisy, and a trial 1 point behind after three folds will almost never end ahead;
    - every fold so far is worse by more than ``min_gap``;
    - a one-sided Wilcoxon signed-rank test of the paired fold scores gives p < ``p_threshold``
      (possible from 4 folds) and the mean gap is at least ``min_effect`` (near-ties finish).

    From the first fold by default: fold-end scores do not penalise slow starters the way early
    epochs do. The thresholds were chosen with bench/pruner_sweep.py; docs/pruning.md gives
    the figures.
    """

    p_threshold: float = 0.1
    min_gap: float = 0.05
    min_effect: float = 0.005
    min_folds: int = 1
    mean_gaps: tuple[float, ...] = (0.03, 0.02, 0.01)

    def __post_init__(self) -> None:
        if not 0 < self.p_threshold < 1 or self.min_gap < 0 or self.min_folds < 1:
            raise ValueError("FoldTest needs 0 < p_threshold < 1, min_gap >= 0, min_folds >= 1")
        if any(not (g >= 0) for g in self.mean_gaps):
            raise ValueError("FoldTest's mean_gaps must all be >= 0")

    def should_prune(self, scores: list[float], best: list[float], *, sign: float) -> bool:
        n = min(len(scores), len(best))
        if n < self.min_folds:
            return False
        diffs = [sign * (scores[i] - best[i]) for i in range(n)]  # < 0: worse than the best
        mean = sum(diffs) / n
        # "exceeds": a gap of exactly 3 points (0.87 vs 0.90 is -0.0300...03 in floats) stays
        if self.mean_gaps and mean < -self.mean_gaps[min(n, len(self.mean_gaps)) - 1] - 1e-12:
            return True
        if all(d < -self.min_gap for d in diffs):
            return True
        if mean > -self.min_effect:
            return False
        p = wilcoxon(diffs, alternative="less", zero_method="zsplit").pvalue
        return bool(p < self.p_threshold)


class FoldEpochPruner(BasePruner):
    """Epoch-level pruning inside folds (skipping each fold's first epochs), and the fold level.

    Inside a fold, after its first ``epoch_warmup`` epochs, a trial stops when its best score so
    far in the fold trails the best completed trial's best over the same epochs of the same fold
    by more than ``epoch_gap`` (0: off), or when ``epoch_pruner`` says so. The gap rule stops a
    hopeless trial half a fold before the fold test would; its margin is wide because single
    epochs are noisy and slow starters catch up (see ``make_pruner``).

    A trial is never pruned inside its last fold or after it: stopping it there saves little (or
    nothing, when early stopping ends the fold at that very epoch), and telling it PRUNED would
    throw away a finished cross-validated score (and drop it from the completed trials that the
    median and the fold test compare against).
    """

    def __init__(
        self,
        *,
        epochs_per_fold: int,
        epoch_pruner: BasePruner | None,
        fold_test: FoldTest | None,
        epoch_warmup: int = 1,
        n_folds: int | None = None,
        screen: int = 0,
        screen_max: int | None = None,
        epoch_gap: float = 0.0,
    ) -> None:
        if epochs_per_fold < 1 or epoch_warmup < 0 or (n_folds is not None and n_folds < 1):
            raise ValueError("epochs_per_fold and n_folds must be >= 1 and epoch_warmup >= 0")
        if not epoch_gap >= 0:
            raise ValueError("epoch_gap must be >= 0 (0: off)")
        if screen < 0 or screen == 1:
            raise ValueError("screen must be 0 (off) or at least 2 trials")
        if screen_max is not None and screen_max < screen:
            raise ValueError("screen_max must be at least screen (None: the same)")
        self.epochs_per_fold = epochs_per_fold
        self.n_folds = n_folds
        self.epoch_pruner = epoch_pruner
        self.fold_test = fold_test
        self.epoch_warmup = epoch_warmup
        self.screen = screen
        self.screen_max = screen if screen_max is None else screen_max
        self.epoch_gap = epoch_gap

    def split_step(self, step: int) -> tuple[int, int]:
        return divmod(step, self.epochs_per_fold)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or (self.epoch_pruner is None and not self.epoch_gap):
            return False
        fold, epoch = self.split_step(step)
        if epoch < self.epoch_warmup or self._finished(fold + 1, self.epochs_per_fold):
            return False  # the last fold: early stopping may end it at any epoch
        if self.epoch_gap and self._far_behind(study, trial, fold, epoch):
            return True
        return self.epoch_pruner is not None and bool(self.epoch_pruner.prune(study, trial))

    def _far_behind(self, study: optuna.Study, trial: FrozenTrial, fold: int, epoch: int) -> bool:
        """Whether the trial's best in this fold so far trails the best trial's by ``epoch_gap``."""
        best = best_trial(study)
        if best is None:
            return False
        first = fold * self.epochs_per_fold
        steps = range(first, first + epoch + 1)
        mine = [trial.intermediate_values[s] for s in steps if s in trial.intermediate_values]
        ref = [best.intermediate_values[s] for s in steps if s in best.intermediate_values]
        return self._behind(study, mine, ref)

    def _behind(self, study: optuna.Study, mine: list[float], ref: list[float]) -> bool:
        if not mine or not ref:
            return False
        sign = direction_sign(study)  # compared as higher-is-better
        return max(sign * v for v in mine) < max(sign * v for v in ref) - self.epoch_gap

    def prune_costed(
        self, study: optuna.Study, fold: int, epoch: int, curve: list[float], cost: float | None
    ) -> bool:
        """``prune`` in a study with a cost objective, where Optuna keeps no intermediate
        values: the epoch gap to the best complete trial that costs at most ``cost``, in the
        same fold over the same epochs (``curve``: this fold's scores so far; the reference's
        from its fold record). Optuna's epoch pruners do not apply (``make_pruner``)."""
        if not self.epoch_gap or cost is None or epoch < self.epoch_warmup:
            return False
        if self._finished(fold + 1, self.epochs_per_fold):
            return False  # the last fold, as in prune
        best = best_trial(study, max_cost=cost)
        ref_fold = {r.fold: r for r in fold_results(best)}.get(fold) if best else None
        if ref_fold is None:
            return False
        metric = str(study.user_attrs.get("metric", "accuracy"))
        ref = [getattr(e, metric) for e in ref_fold.epochs if e.epoch <= epoch]
        return self._behind(study, curve, ref)

    def prune_fold(
        self, study: optuna.Study, scores: list[float], cost: float | None = None
    ) -> bool:
        """After a fold: compare the trial's fold scores with the best completed trial's (with
        ``cost``, the best of those that cost at most that)."""
        if self.fold_test is None or self._finished(len(scores), self.epochs_per_fold):
            return False
        best = best_fold_scores(study, max_cost=cost)
        if best is None:
            return False
        return self.fold_test.should_prune(scores, best, sign=direction_sign(study))

    def screen_fold(
        self, study: optuna.Study, trial: optuna.Trial | FrozenTrial, scores: list[float]
    ) -> ScreenDecision:
        """After a trial's first fold: whether the screen stops it, and what to queue.

        While no trial of the study has completed, the first ``screen`` trials are stopped after
        their first fold and tagged ``screened``. After them, a trial whose first fold beats every
        screened trial's is tagged ``beat_screen`` and goes on: it ends the screen and finishes
        (the fold test has nothing to compare it with yet). A trial that does not beat them is
        screened too, until ``screen_max`` are; then the screened trial with the best first fold
        is queued again (``promoted_from``), and the coordinator re-uses its finished fold, so
        promoting it costs only its remaining folds. The screen's size (3, up to 4) was chosen
        with bench/pruner_sweep.py; docs/pruning.md gives the figures. Reads the study only.
        """
        go_on = ScreenDecision(stop=False, why="not screened")
        if self.screen < 2 or len(scores) != 1 or self._finished(1, self.epochs_per_fold):
            return go_on
        if PROMOTED_FROM in trial.user_attrs:
            return ScreenDecision(False, "a promoted trial finishes")
        if queued_first(trial):  # the portfolio's and --warm-start's: chosen to be good
            return ScreenDecision(False, "a queued configuration (portfolio, warm start) finishes")
        trials = study.get_trials(deepcopy=False)
        if any(t.state == TrialState.COMPLETE or PROMOTED_FROM in t.user_attrs for t in trials):
            return ScreenDecision(False, "the screen is over")
        if _beat_screen_alive(trials, trial.number):
            return ScreenDecision(False, "a trial that beat the screen is on its way to finishing")
        screened = [
            (float(t.user_attrs["fold_scores"][0]), t.number, t.params)
            for t in trials
            if t.user_attrs.get(SCREENED) and t.user_attrs.get("fold_scores")
            if t.number != trial.number
        ]
        if len(screened) >= self.screen_max:
            # A coordinator stopped between screening the last trial and queueing the best:
            # queue it now, and let this trial go on.
            return ScreenDecision(
                False, "the screen is full: its best is queued", promote=_best(study, screened)
            )
        sign = direction_sign(study)
        if len(screened) >= self.screen and all(
            sign * scores[0] > sign * s for s, _, _ in screened
        ):
            return ScreenDecision(False, "its first fold beat every screened one", BEAT_SCREEN)
        promote = None
        if len(screened) + 1 == self.screen_max:
            promote = _best(study, [*screened, (scores[0], trial.number, trial.params)])
        return ScreenDecision(True, "screened after its first fold", SCREENED, promote)

    def _finished(self, folds_done: int, epochs_done: int) -> bool:
        """Whether ``folds_done`` folds, the last of them ``epochs_done`` epochs in, is all."""
        return (
            self.n_folds is not None
            and folds_done >= self.n_folds
            and epochs_done >= self.epochs_per_fold
        )


def _beat_screen_alive(trials: list[FrozenTrial], number: int) -> bool:
    """Whether a trial (other than ``number``) that beat the screen is running, or queued or
    running again as a retry. One that failed for good or was stopped (``halving`` may stop it
    mid-fold) does not end the screen: the next trials may beat it in turn, or be screened until
    the best first fold is promoted."""
    parent = {t.number: int(t.user_attrs["retry_of"]) for t in trials if "retry_of" in t.user_attrs}
    live = set()
    for t in trials:
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            n: int | None = t.number
            while n is not None and n not in live:
                live.add(n)
                n = parent.get(n)  # a retry keeps the trial it retries alive
    return any(
        BEAT_SCREEN in t.user_attrs and t.number != number and t.number in live for t in trials
    )


def _best(study: optuna.Study, screened: list[tuple[float, int, dict]]) -> tuple[int, dict]:
    """The screened trial with the best first fold (ties: the earliest): number, parameters."""
    sign = direction_sign(study)
    _, number, params = max(screened, key=lambda c: (sign * c[0], -c[1]))
    return number, dict(params)


def best_trial(study: optuna.Study, max_cost: float | None = None) -> FrozenTrial | None:
    """The best completed trial with fold scores (``storage.records.best_complete``); with
    ``max_cost``, of those that cost at most that."""
    return best_complete(study, with_fold_scores=True, max_cost=max_cost)


def best_fold_scores(study: optuna.Study, max_cost: float | None = None) -> list[float] | None:
    """The per-fold scores of the best completed trial (within ``max_cost``), or None."""
    best = best_trial(study, max_cost)
    return None if best is None else [float(s) for s in best.user_attrs["fold_scores"]]


def make_pruner(
    name: str,
    *,
    epochs_per_fold: int,
    n_folds: int,
    n_trials: int | None = None,
    workers: int = 1,
    costed: bool = False,
) -> FoldEpochPruner | None:
    """The pruner behind ``--pruner``; ``None`` for ``none``.

    The fold-level pruners (``default``, ``halving``, ``fold``) screen the study's first 3
    trials on their first fold (and a 4th that does not beat them) when the study has several
    folds and room for the promotion: at least ``SCREEN_MIN_TRIALS`` trials (or no trial limit)
    after the ``workers - 1`` that are already running when the first one finishes.
    ``costed``: the study has a cost objective (no screen; ``median`` and ``halving`` refused).
    """
    if name not in PRUNERS:
        raise ValueError(f"--pruner {name!r} is not one of {', '.join(PRUNERS)}")
    if costed and name in ("median", "halving"):
        raise ValueError(
            f"--pruner {name} compares accuracy alone, which would stop trials on the Pareto "
            "front of a study with a cost objective; use --pruner default, fold or none there"
        )
    if name == "none":
        return None
    # 3 and 2 set before measuring (docs/constants.md); bench/pruner_sweep.py compares the scheme
    median = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0, n_min_trials=2)
    halving = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    epoch: BasePruner | None = {
        "default": None,
        "median": median,
        "halving": halving,
        "fold": None,
    }[name]
    fold = FoldTest() if name in ("default", "halving", "fold") and n_folds > 1 else None
    long_enough = not costed and (n_trials is None or n_trials - (workers - 1) >= SCREEN_MIN_TRIALS)
    # The first half of every fold is never judged: slow starters (Ranger's rectified warm-up,
    # large learning rates) trail for an epoch or two and then win. Inside a fold the default
    # then stops only a trial 15 points behind the best trial's best in the same fold so far,
    # with no quantile cut: late in a study the finished trials are the incumbent and its
    # neighbours, so a quantile of them sits just under the incumbent's curve and would stop
    # slow starters, which TPE then avoids (it ranks pruned trials last). docs/pruning.md gives
    # the figures behind each choice.
    return FoldEpochPruner(
        epochs_per_fold=epochs_per_fold,
        epoch_pruner=epoch,
        fold_test=fold,
        epoch_warmup=max(1, epochs_per_fold // 2),
        n_folds=n_folds,
        screen=3 if fold is not None and long_enough else 0,
        screen_max=4 if fold is not None and long_enough else None,
        epoch_gap=EPOCH_GAP if name == "default" else 0.0,
    )
