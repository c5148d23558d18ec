"""Each private Optuna name storage/optuna_internals.py uses, checked against the installed
Optuna: a release that renames or changes one fails here, by name, before any study does."""

from __future__ import annotations

import datetime

import optuna
import pytest
from optuna.trial import TrialState

from storage import optuna_internals as oi

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture()
def rdb_study(tmp_path):
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=2
    )
    return optuna.create_study(study_name="s", storage=storage)


def test_optuna_is_the_major_version_the_adapter_was_written_for() -> None:
    assert optuna.__version__.split(".")[0] == "5"


def test_study_storage_study_id_and_trial_id_address_the_trial(rdb_study) -> None:
    trial = rdb_study.ask()
    storage = oi.study_storage(rdb_study)
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert storage.get_trial(oi.trial_id(trial)).number == trial.number
    frozen = rdb_study.trials[0]
    assert oi.trial_id(frozen) == oi.trial_id(trial)
    assert storage.get_study_id_from_name("s") == oi.study_id(rdb_study)


def test_rdb_of_finds_the_rdb_behind_a_studys_cache(rdb_study) -> None:
    assert isinstance(oi.rdb_of(oi.study_storage(rdb_study)), optuna.storages.RDBStorage)
    assert oi.rdb_of(optuna.storages.InMemoryStorage()) is None


@pytest.mark.parametrize("kind", ["rdb", "memory"])
def test_write_user_attrs_writes_every_attribute_and_refuses_a_finished_trial(
    rdb_study, kind
) -> None:
    study = rdb_study if kind == "rdb" else optuna.create_study()
    trial = study.ask()
    storage = oi.study_storage(study)
    oi.write_user_attrs(storage, oi.trial_id(trial), {"a": 1, "b": [2, "x"]})
    assert storage.get_trial(oi.trial_id(trial)).user_attrs == {"a": 1, "b": [2, "x"]}
    study.tell(trial, 0.5)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        oi.write_user_attrs(storage, oi.trial_id(trial), {"c": 3})


def test_heartbeats_and_stale_trial_ids(rdb_study) -> None:
    storage = oi.study_storage(rdb_study)
    assert oi.heartbeats(storage) and not oi.heartbeats(optuna.storages.InMemoryStorage())
    trial = rdb_study.ask()
    oi.beat(storage, oi.trial_id(trial))
    assert oi.stale_trial_ids(storage, oi.study_id(rdb_study)) == []
    # A beat older than the 2 s grace period: written back in time, as a dead host leaves it.
    from optuna.storages._rdb import models

    rdb = oi.rdb_of(storage)
    assert rdb is not None
    session = rdb.scoped_session()
    row = session.query(models.TrialHeartbeatModel).one()
    row.heartbeat = datetime.datetime.now() - datetime.timedelta(seconds=60)
    session.commit()
    assert oi.stale_trial_ids(storage, oi.study_id(rdb_study)) == [oi.trial_id(trial)]
    assert rdb_study.trials[0].state == TrialState.RUNNING


def test_enqueued_params_are_the_ones_enqueue_trial_fixed(rdb_study) -> None:
    rdb_study.enqueue_trial({"x": 3})
    trial = rdb_study.ask()
    assert trial.suggest_int("x", 0, 9) == 3
    storage = oi.study_storage(rdb_study)
    assert oi.enqueued_params(storage, oi.trial_id(trial)) == {"x": 3}
    assert oi.frozen_enqueued_params(rdb_study.trials[0]) == {"x": 3}
    plain = rdb_study.ask()
    assert oi.enqueued_params(storage, oi.trial_id(plain)) is None
