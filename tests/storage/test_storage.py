from __future__ import annotations

from pathlib import Path

import optuna
import pytest

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


def test_sqlite_storage_has_heartbeats(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    assert storage.get_heartbeat_interval() is not None
    study = optuna.create_study(storage=storage, study_name="x")
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    study.tell(trial, 1.0)
    assert study.best_value == 1.0


def test_postgres_storage_works(tmp_path: Path) -> None:
    import os

    from tests.conftest import require

    url = os.environ.get("SEARCH_TEST_POSTGRES_URL", "")
    require(bool(url), "SEARCH_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL)")
    storage = open_storage(url)
    name = f"pg-{os.getpid()}-{tmp_path.name}"
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    study.tell(trial, 0.5)
    assert optuna.load_study(study_name=name, storage=open_storage(url)).best_value == 0.5
    optuna.delete_study(study_name=name, storage=storage)
