from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from storage import StorageError, open_storage, redact


def test_passwords_are_redacted() -> None:
    assert (
        redact("postgresql://bob:s3cret@db:5432/studies") == "postgresql://bob:***@db:5432/studies"
    )
    assert "s3cret" not in redact("postgresql+psycopg://bob:s3cret@db/x")
    assert redact("sqlite:///studies.db") == "sqlite:///studies.db"


def test_unknown_scheme_is_one_clear_error() -> None:
    with pytest.raises(StorageError, match="not a usable SQLAlchemy URL.*sqlite:///studies.db"):
        open_storage("nosuchdb://x")


def test_missing_sqlite_folder_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "s.db"
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"sqlite:///{target}")
    assert not target.parent.exists()


def test_unreachable_postgres_names_the_url_without_its_password() -> None:
    with pytest.raises(StorageError) as info:
        open_storage("postgresql://bob:s3cret@127.0.0.1:1/studies")
    assert "s3cret" not in str(info.value) and "127.0.0.1" in str(info.value)


def _age_heartbeat(storage: optuna.storages.RDBStorage, trial_id: int, seconds: float) -> None:
    """Move a trial's last heartbeat into the past, as if its worker had stopped beating then."""
    import datetime

    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(storage.scoped_session) as session:
        row = models.TrialHeartbeatModel.where_trial_id(trial_id, session)
        row.heartbeat = row.heartbeat - datetime.timedelta(seconds=seconds)


def _stale_heartbeat_fails_only_the_silent_trial(url: str, name: str) -> None:
    """A trial whose heartbeat is older than the grace period is failed (and can be retried);
    one that beats on keeps running. Both the heartbeat and the staleness are the storage's."""
    from storage import GRACE_SECONDS

    storage = open_storage(url)
    assert storage.get_heartbeat_interval() is not None
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    silent, beating = study.ask(), study.ask()
    for trial in (silent, beating):
        storage.record_heartbeat(trial._trial_id)
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.trials] == [TrialState.RUNNING] * 2  # both fresh
    _age_heartbeat(storage, silent._trial_id, GRACE_SECONDS + 5)
    _age_heartbeat(storage, beating._trial_id, GRACE_SECONDS - 5)
    optuna.storages.fail_stale_trials(study)
    again = optuna.load_study(study_name=name, storage=open_storage(url))
    assert [t.state for t in again.trials] == [TrialState.FAIL, TrialState.RUNNING]
    study.tell(beating, 0.5)
    assert again.best_value == 0.5
    optuna.delete_study(study_name=name, storage=storage)


def test_sqlite_heartbeats_fail_a_stale_trial(tmp_path: Path) -> None:
    _stale_heartbeat_fails_only_the_silent_trial(f"sqlite:///{tmp_path / 's.db'}", "x")


def test_postgres_heartbeats_fail_a_stale_trial(tmp_path: Path) -> None:
    import os

    from tests.conftest import require

    url = os.environ.get("SEARCH_TEST_POSTGRES_URL", "")
    require(bool(url), "SEARCH_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL)")
    _stale_heartbeat_fails_only_the_silent_trial(url, f"pg-{os.getpid()}-{tmp_path.name}")
