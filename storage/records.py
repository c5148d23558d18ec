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


def reuse_folds(
    trial: optuna.Trial, folds: list[FoldResult], metric: str, epochs_per_fold: int
) -> None:
    """Copy the finished folds of the trial ``trial`` retries or was promoted from: their
    records, their epochs as intermediate values, ``fold_scores`` and ``reused_folds``."""
    for result in folds:
        trial.set_user_attr(f"fold_{result.fold}", result.to_dict())
        for e in result.epochs:
            trial.report(getattr(e, metric), result.fold * epochs_per_fold + e.epoch)
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
    """1 when the study maximises, -1 when it minimises: ``sign * value`` is higher-is-better.
    The one place the objective's direction is read."""
    return 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0


def ranked_complete(study: optuna.Study, *, with_fold_scores: bool = False) -> list[FrozenTrial]:
    """The complete trials with a finite value, best first (the lower number on a tie);
    ``with_fold_scores``: only those that recorded their fold scores (the paired fold test's)."""
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
        and math.isfinite(t.value)
        and (not with_fold_scores or "fold_scores" in t.user_attrs)
    ]
    sign = direction_sign(study)
    return sorted(done, key=lambda t: (-sign * float(t.value or 0.0), t.number))


def best_complete(study: optuna.Study, *, with_fold_scores: bool = False) -> FrozenTrial | None:
    """The study's best complete trial (the lower number on a tie), or None before the first:
    the one definition the pruner, the final model, the export and the reports share."""
    ranked = ranked_complete(study, with_fold_scores=with_fold_scores)
    return ranked[0] if ranked else None


def best_so_far(study: optuna.Study) -> tuple[int, float] | None:
    """(number, value) of the study's best complete trial, or None before the first."""
    best = best_complete(study)
    return (best.number, float(best.value or 0.0)) if best is not None else None
