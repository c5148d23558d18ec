"""Where studies live: one function that opens an Optuna RDB storage from a SQLAlchemy URL.

SQLite (the default) and PostgreSQL are both RDB storages, so heartbeats work on either: a
coordinator that dies stops beating and its running trials are failed after the grace period.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

DEFAULT_URL = "sqlite:///studies.db"
HEARTBEAT_SECONDS = 20
GRACE_SECONDS = 60


class StorageError(Exception):
    """The storage URL cannot be used; the message says what to do."""


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to print or store."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn driver and URL errors into one ``StorageError`` naming the (redacted) URL."""
    try:
        yield
    except StorageError:
        raise
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError) as exc:
        raise StorageError(
            f"--storage {redact(url)} is not a usable SQLAlchemy URL ({exc}); "
            f"use e.g. {DEFAULT_URL} or postgresql://user@host/dbname"
        ) from exc
    except (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.DatabaseError,
        optuna.exceptions.StorageInternalError,
    ) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:300]
        raise StorageError(
            f"cannot use storage {redact(url)}: {reason}; check that the database exists, is "
            "reachable and writable (for SQLite: the folder exists and is writable)"
        ) from exc
    except ImportError as exc:
        raise StorageError(
            f"storage {redact(url)} needs a database driver that is not installed ({exc}); "
            "for PostgreSQL install psycopg[binary]"
        ) from exc


def _check_sqlite_path(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    if not parsed.database or parsed.database == ":memory:":
        raise StorageError(
            "sqlite in-memory storage cannot be shared with workers or resumed; "
            f"use a file, e.g. {DEFAULT_URL}"
        )
    folder = Path(parsed.database).expanduser().resolve().parent
    if not folder.is_dir():
        raise StorageError(
            f"the folder of the SQLite file {parsed.database!r} does not exist ({folder}); "
            "create it or choose another --storage path"
        )


def open_storage(
    url: str = DEFAULT_URL,
    *,
    heartbeat_interval: int | None = HEARTBEAT_SECONDS,
    grace_period: int | None = GRACE_SECONDS,
) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats; SQLite waits on locks instead of failing at once."""
    with storage_errors(url):
        _check_sqlite_path(url)
        engine_kwargs: dict[str, object] = {}
        if make_url(url).get_backend_name() == "sqlite":
            engine_kwargs["connect_args"] = {"timeout": 120}
        else:
            engine_kwargs["pool_pre_ping"] = True
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
        )


def find_storage(
    url: str = DEFAULT_URL,
    *,
    heartbeat_interval: int | None = HEARTBEAT_SECONDS,
    grace_period: int | None = GRACE_SECONDS,
) -> optuna.storages.RDBStorage | None:
    """The storage at ``url`` if its database already holds Optuna's tables, else None.

    Creates nothing: no SQLite file, no schema. A run that may still be refused looks its study
    up through this, and calls ``open_storage`` only once it is sure to go ahead.
    """
    with storage_errors(url):
        _check_sqlite_path(url)
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if not parsed.database or not Path(parsed.database).expanduser().is_file():
                return None
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as connection:
                has_schema = sqlalchemy.inspect(connection).has_table("studies")
        finally:
            engine.dispose()
        if not has_schema:
            return None
        return open_storage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)


def sqlite_file(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other databases)."""
    with storage_errors(url):
        parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).expanduser().resolve()
