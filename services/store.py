"""Opens the event store that the settings name: the embedded SQLite file or PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from eventsourcing.utils import get_topic

from domain.ledger import AccountLedger, utc_now
from services.leadership import lock_key
from services.settings import Settings
from services.sqlite_recorder import MultiRowRecorder

if TYPE_CHECKING:
    from projections.database import ReadModelDatabase


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database is away (refused, cut, not answering), as a process
    that tries again finds it, rather than a fault of the code."""
    import psycopg
    import sqlalchemy.exc
    from eventsourcing.persistence import OperationalError

    return isinstance(
        error, psycopg.OperationalError | OperationalError | sqlalchemy.exc.OperationalError
    )


def first_line(error: BaseException) -> str:
    """What a log line or a message names an error by: its first line, or its type's name
    when it says nothing."""
    said = str(error).strip()
    return said.splitlines()[0] if said else type(error).__name__


def eventsourcing_env(settings: Settings) -> dict[str, str]:
    """The `eventsourcing` library is configured by environment; this builds it from Settings."""
    if settings.database_url is None:
        settings.make_data_dir()
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(settings.sqlite_path),
            "SQLITE_LOCK_TIMEOUT": "10",
            "APPLICATION_RECORDER_TOPIC": get_topic(MultiRowRecorder),
        }
    # Here, not at the top: a process on SQLite never loads psycopg (megabytes it would keep).
    from services.postgres_recorder import ConninfoFactory, FailFastRecorder

    url = urlsplit(settings.database_url)  # checked by Settings
    query = dict(part.split("=", 1) for part in url.query.split("&") if "=" in part)
    return {
        "PERSISTENCE_MODULE": get_topic(ConninfoFactory),
        # The URL's parameters (sslmode…) for every connection; those below take precedence.
        ConninfoFactory.CONNINFO: settings.database_url,
        "POSTGRES_DBNAME": unquote(url.path.lstrip("/")) or "postgres",
        # A unix-socket directory may come as ?host=/path, as libpq allows.
        "POSTGRES_HOST": unquote(query.get("host", url.hostname or "127.0.0.1")),
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_SCHEMA": settings.database_schema,
        "POSTGRES_POOL_SIZE": str(settings.database_pool_size),
        "POSTGRES_MAX_OVERFLOW": "0",
        # How long a statement waits for a pooled connection; with FailFastRecorder's two
        # attempts, a request learns within seconds that the database is away (503).
        "POSTGRES_CONNECT_TIMEOUT": "2",
        "POSTGRES_PRE_PING": "y",
        "APPLICATION_RECORDER_TOPIC": get_topic(FailFastRecorder),
    }


def open_ledger(settings: Settings, clock: Callable[[], datetime] = utc_now) -> AccountLedger:
    env = eventsourcing_env(settings)
    if settings.aggregate_cache_size > 0:
        # Loaded accounts are kept, and brought up to date with the events stored since
        # (by any process) before each use, so a command costs the same at any history length.
        env["AGGREGATE_CACHE_MAXSIZE"] = str(settings.aggregate_cache_size)
        env["AGGREGATE_CACHE_FASTFORWARD"] = "y"
    cache = settings.aggregate_cache_size
    if settings.database_url is None:
        return AccountLedger(env=env, clock=clock, cache_size=cache)
    with _setting_up(env):
        return AccountLedger(env=env, clock=clock, cache_size=cache)  # creates missing tables


@contextmanager
def _setting_up(env: dict[str, str]) -> Iterator[None]:
    """Holds the schema's set-up lock, with the schema created: API replicas and workers
    starting together on a new database create its tables one after the other, not at once
    (PostgreSQL's CREATE … IF NOT EXISTS is not safe against a concurrent create)."""
    import psycopg
    from psycopg import sql

    schema = env["POSTGRES_SCHEMA"]
    with psycopg.connect(
        env["POSTGRES_CONNINFO"],
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        autocommit=True,
        connect_timeout=int(env.get("POSTGRES_CONNECT_TIMEOUT", "5")),
    ) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(schema, "store-setup"),))
        if schema != "public":  # the library creates its tables, not a missing schema
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        yield  # the lock goes with the connection


def drop_schema(url: str, schema: str) -> None:
    """Removes a PostgreSQL schema with everything in it (benchmarks clean up with this)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def open_read_models(settings: Settings) -> ReadModelDatabase:
    """The read models live beside the events: a SQLite file of their own in the same folder,
    or the same PostgreSQL schema."""
    # Here, not at the top: the publisher's process, which never reads them, does not load them.
    from projections.database import ReadModelDatabase

    if settings.database_url is None:
        settings.make_data_dir()
        return ReadModelDatabase.sqlite(str(settings.read_models_path))
    return ReadModelDatabase.postgres(
        settings.database_url, settings.database_schema, settings.database_pool_size
    )
