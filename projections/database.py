"""SQL access for the read models: a SQLite file beside the events' one, or the PostgreSQL
database of the events.

Queries are plain SQL through SQLAlchemy's `text()`, in the dialect both stores share
(`ON CONFLICT`, partial indexes, `LIMIT`). Instants are stored as integer microseconds since
the epoch (UTC) so that both stores compare and index them the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import NullPool

MAX_PARAMETERS = 30_000  # bound in one statement: under SQLite's limit of 32,766

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(instant: datetime) -> int:
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def insert_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    """Inserts rows (tuples in the order of `columns`): with COPY on PostgreSQL, with
    multi-row INSERT statements on SQLite.

    Straight to the driver: SQLAlchemy's processing of each row's parameters cost a rebuild
    more than the database's work (and psycopg parses a long statement's placeholders in
    Python, which COPY avoids).
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    mark = placeholder(conn)
    per_statement = max(1, MAX_PARAMETERS // len(columns))
    one = f"({', '.join([mark] * len(columns))})"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        conn.exec_driver_sql(
            head + ", ".join([one] * len(chunk)), tuple(chain.from_iterable(chunk))
        )


def placeholder(conn: Connection) -> str:
    """The driver's mark for a bound parameter, for statements sent with `exec_driver_sql`."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


@dataclass(frozen=True)
class ReadModelDatabase:
    """A writer for projectors and a reader for queries.

    On SQLite a writer takes the write lock at BEGIN (so two never deadlock upgrading a read
    lock); a reader's deferred BEGIN reads one WAL snapshot.
    """

    writer: Engine
    reader: Engine
    sqlite_path: str | None = None
    # PostgreSQL: connections in autocommit, each held for a small query asked often. Through
    # the reader's pool each query would also pay a checkout's ping and a BEGIN and a COMMIT:
    # four round trips for one, and more than three times the CPU of the query alone.
    autocommit: Engine | None = None

    @classmethod
    def sqlite(cls, path: str) -> ReadModelDatabase:
        return cls(_sqlite_engine(path, "BEGIN IMMEDIATE"), _sqlite_engine(path, "BEGIN"), path)

    @classmethod
    def postgres(cls, url: str, schema: str, pool_size: int) -> ReadModelDatabase:
        def engine(isolation_level: str, **pool: Any) -> Engine:
            return create_engine(
                url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
                    "postgres://", "postgresql+psycopg://", 1
                ),
                isolation_level=isolation_level,
                connect_args={"options": f"-c search_path={schema}", "connect_timeout": 5},
                **pool,
            )

        def pooled(isolation_level: str, size: int) -> Engine:
            return engine(
                isolation_level,
                pool_size=size,
                max_overflow=0,
                pool_pre_ping=True,
                pool_timeout=5,  # then the request answers 503 rather than wait on
            )

        # A read sees one snapshot: the read model's position and its rows agree.
        return cls(
            pooled("READ COMMITTED", 2),
            pooled("REPEATABLE READ", pool_size),
            # Not pooled: each connection is held by its user, and closed when it is done.
            autocommit=engine("AUTOCOMMIT", poolclass=NullPool),
        )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.reader.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.writer.dispose()
        self.reader.dispose()
        if self.autocommit is not None:
            self.autocommit.dispose()


def _sqlite_engine(path: str, begin: str) -> Engine:
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Take transaction control from the driver, so BEGIN is ours (see the "begin" hook).
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout = 10000")
        # Readers never block the projector's writes. A commit need not reach the disk at once:
        # read models are rebuilt from the event log, and a transaction lost to a power cut
        # takes its tracking position with it, so its events are applied again.
        dbapi_connection.execute("PRAGMA journal_mode = WAL")
        dbapi_connection.execute("PRAGMA synchronous = NORMAL")
        # SQLite's lower() folds ASCII letters only, PostgreSQL's those of every script:
        # Python's makes the two stores match text alike.
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)

    return engine


def _lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value
