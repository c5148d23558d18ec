"""The one writer of a trial's start tags and failure: all or nothing, on any storage."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError

from storage import open_storage
from storage.records import FailureKind, failure_kind, record_failure, tag_started


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_tags_and_failures_are_written_whole_and_never_onto_a_finished_trial(
    tmp_path: Path, kind: str
) -> None:
    storage = (
        open_storage(f"sqlite:///{tmp_path / 's.db'}")
        if kind == "sqlite"
        else optuna.storages.InMemoryStorage()
    )
    study = optuna.create_study(storage=storage, study_name="x")
    trial = study.ask()
    tags = {"worker": 1, "host": "h", "config": {"backbone": "small_cnn"}}
    tag_started(study._storage, trial._trial_id, tags)
    record_failure(study._storage, trial._trial_id, FailureKind.WORKER_DIED, "died " * 1000)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    (frozen,) = study.get_trials()
    assert {k: frozen.user_attrs[k] for k in tags} == tags
    assert (
        failure_kind(frozen) == "worker_died" and len(frozen.user_attrs["failure_reason"]) == 2000
    )
    with pytest.raises(UpdateFinishedTrialError):
        record_failure(study._storage, trial._trial_id, FailureKind.INTERRUPTED, "too late")
    assert failure_kind(study.get_trials()[0]) == "worker_died"
    # Optuna's own stale-heartbeat failures carry no kind: they read as heartbeat_stale.
    other = study.ask()
    study.tell(other, state=optuna.trial.TrialState.FAIL)
    assert failure_kind(study.get_trials()[1]) == FailureKind.HEARTBEAT_STALE
