"""Every use of an Optuna name that Optuna does not publish, in one place.

Optuna keeps a study's storage, a trial's id, heartbeats, one-transaction attribute writes and the
enqueued parameters behind underscores. The coordinator needs each of them; nothing else in this
project may touch them. ``tests/storage/test_optuna_internals.py`` checks each against the Optuna
installed, so an Optuna release that moves one fails there by name, and ``pyproject.toml`` bounds
Optuna to the major version these were written for (5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import optuna
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

__all__ = [
    "BaseHeartbeat",
    "beat",
    "enqueued_params",
    "heartbeats",
    "is_heartbeat_enabled",
    "rdb_of",
    "stale_trial_ids",
    "study_id",
    "study_storage",
    "trial_id",
    "write_user_attrs",
]


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes through (``Study._storage``)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The study's id in its storage (``Study._study_id``)."""
    return study._study_id


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """A trial's id in its storage (``_trial_id``; not its number)."""
    return trial._trial_id


def rdb_of(storage: Any) -> optuna.storages.RDBStorage | None:
    """The RDB storage behind ``storage`` (a study's is a cache over it: ``_backend``)."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def write_user_attrs(storage: Any, trial: int, attrs: Mapping[str, Any]) -> None:
    """Every attribute in one transaction on an RDB storage (one by one elsewhere); raises
    optuna's UpdateFinishedTrialError when the trial is finished."""
    rdb = rdb_of(storage)
    if rdb is None:
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial, key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session, True) as session:
        for key, value in attrs.items():
            rdb._set_trial_attr_without_commit(
                session, models.TrialUserAttributeModel, trial, key, value
            )


def heartbeats(storage: Any) -> bool:
    """Whether ``storage`` records heartbeats and has them switched on."""
    return isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(cast(Any, storage))


def beat(storage: Any, trial: int) -> None:
    """Record a heartbeat for a running trial, where the storage keeps them."""
    if isinstance(storage, BaseHeartbeat):
        storage.record_heartbeat(trial)


def stale_trial_ids(storage: Any, study: int) -> list[int]:
    """Ids of the study's RUNNING trials whose heartbeat is older than the grace period."""
    return list(storage._get_stale_trial_ids(study))


def enqueued_params(storage: Any, trial: int) -> dict[str, Any] | None:
    """The parameters ``enqueue_trial`` fixed for a trial (system attribute ``fixed_params``)."""
    return storage.get_trial_system_attrs(trial).get("fixed_params")


def frozen_enqueued_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any] | None:
    """The same, read from a trial already loaded."""
    return trial.system_attrs.get("fixed_params")
