"""What a trial's record in storage holds, written and read in one place.

Writers: ``tag_started`` (the tags a trial gets when a coordinator starts it) and
``record_failure`` (its ``failure_kind``, a ``FailureKind``, and ``failure_reason``), each in one
transaction on an RDB storage, so no reader sees a half-tagged trial; ``record_fold`` and
``reuse_folds`` (the folds a trial finished, or took over from the trial it retries). Readers:
``fold_results``, ``failure_kind`` and the summaries below.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage.optuna_internals import write_user_attrs
from trainer.records import FoldResult

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# --objective's second objectives: the trial attribute that holds each (lower is better).
COSTS = {"latency": "latency_ms", "params": "params"}
# The flag that limits each cost when a point of the front is chosen.
LIMIT_FLAGS = {"latency": "--max-latency-ms", "params": "--max-params"}


def parse_objective(text: str) -> str:
    """``--objective``: "accuracy" (the --metric score alone) or "accuracy,latency" /
    "accuracy,params" (the score and a cost, a multi-objective study); ValueError otherwise."""
    parts = [p.strip().lower() for p in text.split(",") if p.strip()]
    if parts[:1] == ["accuracy"] and (len(parts) == 1 or len(parts) == 2 and parts[1] in COSTS):
        return ",".join(parts)
    raise ValueError(
        f"--objective {text!r} is not one of accuracy, accuracy,latency, accuracy,params "
        "(the --metric score first, then at most one cost to minimise beside it)"
    )


def fold_results(trial: FrozenTrial) -> list[FoldResult]:
    """The folds a trial finished, in fold order (read from its ``fold_<i>`` attributes)."""
    out = []
    for key, value in trial.user_attrs.items():
        if key.startswith("fold_") and key[5:].isdigit():
            out.append(FoldResult.from_dict(value))
    return sorted(out, key=lambda r: r.fold)


class FailureKind(str, enum.Enum):
    """Why a trial failed (its ``failure_kind`` attribute)."""

    FAILED = "failed"  # a trainer error of no more specific kind
    ERROR = "error"  # an unexpected exception in the worker
    INVALID_CONFIG = "invalid_config"
    OUT_OF_MEMORY = "out_of_memory"
    NON_FINITE_LOSS = "non_finite_loss"
    WEIGHTS_UNAVAILABLE = "weights_unavailable"
    TIMEOUT = "timeout"  # ran past --trial-timeout
    WORKER_DIED = "worker_died"
    INTERRUPTED = "interrupted"  # its coordinator stopped (Ctrl-C, SIGTERM, a kill)
    HEARTBEAT_STALE = "heartbeat_stale"  # its host stopped beating
    SURPLUS = "surplus"  # asked when the study was already full; never run

    def __str__(self) -> str:  # the value in messages, on every Python version
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)


def _write(storage: Any, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Every attribute in one transaction on an RDB storage (``optuna_internals``)."""
    write_user_attrs(storage, trial_id, attrs)


def tag_started(storage: Any, trial_id: int, tags: Mapping[str, Any]) -> None:
    """The tags of a trial a coordinator starts (config, worker, device, host, pids, seed...)."""
    _write(storage, trial_id, tags)


def record_failure(storage: Any, trial_id: int, kind: FailureKind | str, reason: str) -> None:
    """Why a trial failed, before its state is set to FAIL; raises UpdateFinishedTrialError when
    another process finished it first. ``kind`` is a FailureKind, or the ``kind`` of a plug-in
    trainer's own ``TrialFailed`` subclass."""
    _write(
        storage,
        trial_id,
        {"failure_kind": getattr(kind, "value", str(kind)), "failure_reason": reason[:2000]},
    )


def record_fold(trial: optuna.Trial, result: FoldResult, scores: list[float]) -> None:
    """A finished fold's record (``fold_<k>``) and the trial's fold scores so far."""
    trial.set_user_attr(f"fold_{result.fold}", result.to_dict())
    trial.set_user_attr("fold_scores", scores)


EPOCH_VALUES = "epoch_values"  # a cost study's per-epoch scores by step (Optuna keeps none there)
# The user attribute of the space's portfolio configurations, queued when a study is created.
STARTING_POINT = "starting_point"
# The user attribute of a configuration --warm-start queued: the study#trial it came from.
WARM_START = "warm_start"


def queued_first(trial: FrozenTrial | optuna.Trial) -> bool:
    """Whether ``trial`` is a configuration queued when its study was created (the portfolio,
    --warm-start): chosen to be good, so trained in full rather than screened."""
    return bool(trial.user_attrs.get(STARTING_POINT) or trial.user_attrs.get(WARM_START))


def epoch_values(trial: FrozenTrial | optuna.Trial) -> dict[int, float]:
    """A trial's per-epoch scores by step (``fold * epochs + epoch``): Optuna's intermediate
    values, or in a multi-objective study, where Optuna keeps none, the trial's own record."""
    if isinstance(trial, FrozenTrial) and trial.intermediate_values:
        return dict(trial.intermediate_values)
    return {int(k): float(v) for k, v in trial.user_attrs.get(EPOCH_VALUES, {}).items()}


def record_epoch(trial: optuna.Trial, step: int, value: float) -> None:
    """Report one epoch's score: to Optuna in a single-objective study, else to the trial's own
    record (``epoch_values``), which the reports read the same way."""
    if len(trial.study.directions) == 1:
        trial.report(value, step)
        return
    values = {str(k): v for k, v in epoch_values(trial).items()}
    values[str(step)] = value
    trial.set_user_attr(EPOCH_VALUES, values)


def reuse_folds(
    trial: optuna.Trial, folds: list[FoldResult], metric: str, epochs_per_fold: int
) -> None:
    """Copy the finished folds of the trial ``trial`` retries or was promoted from: their
    records, their epochs' scores (``record_epoch``), ``fold_scores`` and ``reused_folds``."""
    for result in folds:
        trial.set_user_attr(f"fold_{result.fold}", result.to_dict())
        for e in result.epochs:
            record_epoch(trial, result.fold * epochs_per_fold + e.epoch, getattr(e, metric))
    if folds:
        trial.set_user_attr("fold_scores", [r.score(metric) for r in folds])
        trial.set_user_attr("reused_folds", [r.fold for r in folds])


def failure_kind(trial: FrozenTrial) -> str:
    """The trial's failure kind; a failed trial without one was failed by Optuna's own heartbeat
    check (``fail_stale_trials``)."""
    return str(trial.user_attrs.get("failure_kind", FailureKind.HEARTBEAT_STALE.value))


def count_states(study: optuna.Study) -> dict[TrialState, int]:
    counts = {state: 0 for state in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state] += 1
    return counts


def direction_sign(study: optuna.Study) -> float:
    """1 when the study maximises its score (its first objective), -1 when it minimises it:
    ``sign * score`` is higher-is-better. The one place the objective's direction is read."""
    return 1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1.0


def score(trial: FrozenTrial) -> float | None:
    """A finished trial's score (its first objective's value), None when it has none; what
    ``trial.value`` is in a single-objective study, and is not allowed to be in another."""
    values = trial.values
    return None if not values else float(values[0])


def objective_cost(objective: str) -> str | None:
    """The cost an ``--objective`` minimises beside the score (``latency`` or ``params``), None
    for accuracy alone."""
    parts = objective.split(",")
    return parts[1] if len(parts) > 1 else None


def cost_name(study: optuna.Study) -> str | None:
    """The study's second objective (``latency`` or ``params``), None for accuracy alone."""
    return objective_cost(str(study.user_attrs.get("objective", "accuracy")))


def unmeasured_limit(cost: str | None, limits: dict[str, float | None]) -> str | None:
    """The first cost of ``limits`` (a limit by cost) given a limit though it is not ``cost``,
    the one the study measures: a limit the study cannot apply. None when there is none."""
    return next((c for c, value in limits.items() if value is not None and c != cost), None)


def cost_of(trial: FrozenTrial | optuna.Trial, cost: str | None) -> float | None:
    """The trial's measured cost under objective ``cost`` (None: not measured, or no cost)."""
    value = trial.user_attrs.get(COSTS[cost]) if cost else None
    return None if value is None else float(value)


def ranked_complete(
    study: optuna.Study, *, with_fold_scores: bool = False, max_cost: float | None = None
) -> list[FrozenTrial]:
    """The complete trials with a finite score, best first (the lower number on a tie);
    ``with_fold_scores``: only those that recorded their fold scores (the paired fold test's);
    ``max_cost``: only those whose cost (the study's second objective) is at most that."""
    cost = cost_name(study) if max_cost is not None else None
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if (s := score(t)) is not None
        and math.isfinite(s)
        and (not with_fold_scores or "fold_scores" in t.user_attrs)
        and (max_cost is None or (c := cost_of(t, cost)) is not None and c <= max_cost)
    ]
    sign = direction_sign(study)
    return sorted(done, key=lambda t: (-sign * float(score(t) or 0.0), t.number))


def best_complete(
    study: optuna.Study, *, with_fold_scores: bool = False, max_cost: float | None = None
) -> FrozenTrial | None:
    """The study's best complete trial (the lower number on a tie), or None before the first:
    the one definition the pruner, the final model, the export and the reports share. With
    ``max_cost``, the best of those that cost at most that: the most accurate point of the
    Pareto front within a limit."""
    ranked = ranked_complete(study, with_fold_scores=with_fold_scores, max_cost=max_cost)
    return ranked[0] if ranked else None


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The complete trials no other complete trial beats on score and cost together, cheapest
    first (a trial ties another on both: the lower number stays); empty without a cost."""
    cost = cost_name(study)
    if cost is None:
        return []
    sign = direction_sign(study)
    points = [
        (float(c), -sign * float(score(t) or 0.0), t.number, t)
        for t in ranked_complete(study)
        if (c := cost_of(t, cost)) is not None
    ]
    front, best = [], math.inf
    for _, loss, _, t in sorted(points, key=lambda p: p[:3]):
        if loss < best:  # more accurate than every cheaper point
            front.append(t)
            best = loss
    return front


def best_so_far(study: optuna.Study) -> tuple[int, float] | None:
    """(number, value) of the study's best complete trial, or None before the first."""
    best = best_complete(study)
    return (best.number, float(score(best) or 0.0)) if best is not None else None
