"""Finding trials whose coordinator died, failing them once, and re-running their configurations.

Who fails a trial owns its retry: a stale heartbeat is claimed by the one coordinator whose
``FAIL`` write wins (Optuna locks the row and refuses a second finish), so two surviving hosts
never re-queue the same configuration twice.
"""

from __future__ import annotations

import datetime
import logging
import os

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from search.policy.pruning import SCREENED
from storage.optuna_internals import heartbeats, stale_trial_ids, study_id, study_storage, trial_id
from storage.records import FailureKind, failure_kind, record_failure

log = logging.getLogger(__name__)

# Failures worth re-running the same configuration for (the trial itself was fine), and how
# many times one configuration may be re-run for that reason.
RETRY_LIMITS: dict[str, int] = {
    FailureKind.INTERRUPTED: 10,
    FailureKind.HEARTBEAT_STALE: 10,
    FailureKind.WORKER_DIED: 1,
}
# A live coordinator tags a trial within milliseconds of asking for it.
UNTAGGED_GRACE_SECONDS = 15.0


def _fail(study: optuna.Study, trial_id: int, kind: str, reason: str) -> bool:
    """Tag and fail a RUNNING trial; False when another process finished it first."""
    storage = study_storage(study)
    try:
        record_failure(storage, trial_id, kind, reason)
        return bool(storage.set_trial_state_values(trial_id, state=TrialState.FAIL))
    except UpdateFinishedTrialError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(study: optuna.Study, host: str) -> list[int]:
    """Fail trials left RUNNING by dead coordinators; return the numbers this call failed.

    - heartbeat older than the grace period (any host);
    - on this host, a coordinator pid that no longer runs (no need to wait for the grace);
    - no coordinator tag long after it started (killed between ask and tag).
    """
    failed: list[int] = []
    storage = study_storage(study)
    if heartbeats(storage):
        for stale in stale_trial_ids(storage, study_id(study)):
            attrs = storage.get_trial(stale).user_attrs
            if attrs.get("host") == host and attrs.get("coordinator_pid") == os.getpid():
                continue  # our own trial: a slow loop, not a dead coordinator
            if _fail(
                study,
                stale,
                FailureKind.HEARTBEAT_STALE,
                "its host stopped beating (heartbeat older than the grace period)",
            ):
                failed.append(storage.get_trial(stale).number)
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("coordinator_pid")
        if pid is None:
            started = t.datetime_start or now
            if (now - started).total_seconds() < UNTAGGED_GRACE_SECONDS:
                continue
            reason = "its coordinator stopped before the trial started"
        elif t.user_attrs.get("host") == host and not _alive(int(pid)):
            reason = f"its coordinator (pid {pid} on {host}) stopped"
        else:
            continue
        if _fail(study, trial_id(t), FailureKind.INTERRUPTED, reason):
            failed.append(t.number)
    if failed:
        log.info("marked interrupted trials %s failed; their configurations will be re-run", failed)
    return failed


def requeue(study: optuna.Study, numbers: list[int] | None = None) -> list[int]:
    """Enqueue once each retryable failed trial's configuration.

    With ``numbers``, only those (failures this process recorded); without, every failed trial
    that has no retry yet (a scan at start-up, for failures whose re-queue was cut short).
    """
    trials = study.get_trials(deepcopy=False)
    retried = {int(t.user_attrs["retry_of"]) for t in trials if "retry_of" in t.user_attrs}
    candidates = trials if numbers is None else [trials[n] for n in numbers]
    queued = []
    for t in candidates:
        if t.state != TrialState.FAIL or t.number in retried or not t.params:
            continue
        if t.user_attrs.get(SCREENED):
            continue  # the screen had already stopped it after fold 0; its fold may be promoted
        kind = failure_kind(t)
        if kind not in RETRY_LIMITS:
            continue
        retries = _retries(t, kind)
        if retries >= RETRY_LIMITS[kind]:
            log.warning(
                "trial %d failed (%s); its configuration has now failed that way %d times, "
                "so it is not re-run again",
                t.number,
                kind,
                retries + 1,
            )
            continue
        study.enqueue_trial(
            t.params,
            user_attrs={"retry_of": t.number, f"retries_{kind}": retries + 1},
            skip_if_exists=False,
        )
        queued.append(t.number)
    if queued:
        log.info(
            "re-queued the %s of failed %s %s",
            "configuration" if len(queued) == 1 else "configurations",
            "trial" if len(queued) == 1 else "trials",
            ", ".join(str(n) for n in queued),
        )
    return queued


def _retries(trial: FrozenTrial, kind: str) -> int:
    return int(trial.user_attrs.get(f"retries_{kind}", 0))
