"""SQL access for the read models: a SQLite file beside the events' one, or the PostgreSQL
database of the events.

Queries are plain SQL through SQLAlchemy's `text()`, in the dialect both stores share
(`ON CONFLICT`, partial indexes, `LIMIT`). Instants are stored as integer microseconds since
the epoch (UTC) so that both stores compare and index them the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event

if TYPE_CHECKING:
    import psycopg

CONNECT_SECONDS = 5  # for a connection, then a request answers 503 rather than wait on
QUERY_SECONDS = 5  # for a small query on a held connection, likewise
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
    postgres_url: str | None = None
    schema: str = "public"

    @classmethod
    def sqlite(cls, path: str) -> ReadModelDatabase:
        return cls(_sqlite_engine(path, "BEGIN IMMEDIATE"), _sqlite_engine(path, "BEGIN"), path)

    @classmethod
    def postgres(cls, url: str, schema: str, pool_size: int) -> ReadModelDatabase:
        def engine(isolation_level: str, size: int) -> Engine:
            return create_engine(
                url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
                    "postgres://", "postgresql+psycopg://", 1
                ),
                pool_size=size,
                max_overflow=0,
                pool_pre_ping=True,
                pool_timeout=CONNECT_SECONDS,
                isolation_level=isolation_level,
                connect_args={
                    "options": f"-c search_path={schema}",
                    "connect_timeout": CONNECT_SECONDS,
                },
            )

        # A read sees one snapshot: the read model's position and its rows agree.
        return cls(
            engine("READ COMMITTED", 2),
            engine("REPEATABLE READ", pool_size),
            postgres_url=url,
            schema=schema,
        )

    def held_connection(self) -> HeldConnection:
        """PostgreSQL: a connection for an event loop's small queries (below)."""
        assert self.postgres_url is not None
        return HeldConnection(self.postgres_url, self.schema)

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


class ReadModelsUnavailable(Exception):
    """The read models' PostgreSQL does not answer."""


class HeldConnection:
    """One PostgreSQL connection of the event loop's own, outside the pools, each statement a
    transaction of its own: for a small query asked often, such as the read models'
    positions. Through the reader's pool, from a worker thread, each such query would also
    pay a checkout's ping, a BEGIN and a COMMIT (four round trips for one), and the hand-overs
    of the interpreter lock: an API process answered about 0.6 times as many kept pages then
    (BENCHMARKS.md).

    A connection belongs to the event loop it was opened in: another loop opens its own.
    Queries are run one at a time (its user's concern).
    """

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema
        self._held: tuple[asyncio.AbstractEventLoop, psycopg.AsyncConnection] | None = None

    async def rows(self, query: str) -> list[tuple]:
        """The rows of `query`; asked once more on a new connection if the one held fails
        (most often one the database dropped as it restarted). ReadModelsUnavailable if the
        database does not answer that second time, or either time within QUERY_SECONDS."""
        import psycopg  # here, not at the top: a SQLite deployment never loads it

        try:
            return await self._rows(query)
        except TimeoutError as error:
            await self.close()
            raise ReadModelsUnavailable("no answer in time") from error
        except psycopg.OperationalError:
            await self.close()
        try:
            return await self._rows(query)
        except (psycopg.OperationalError, TimeoutError) as error:
            await self.close()
            raise ReadModelsUnavailable(type(error).__name__) from error

    async def _rows(self, query: str) -> list[tuple]:
        import psycopg

        loop = asyncio.get_running_loop()
        # A connection's answers are awaited on its loop: after another loop, a new one.
        if self._held is None or self._held[0] is not loop:
            await self.close()
            connection = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_SECONDS,
                options=f"-c search_path={self.schema}",
            )
            self._held = (loop, connection)
        # A query never answered leaves its connection unusable: `rows` closes it.
        async with asyncio.timeout(QUERY_SECONDS):
            cursor = await self._held[1].execute(query)
            return await cursor.fetchall()

    async def close(self) -> None:
        """Closes the connection held, if any (closing takes no round trip, so it may be
        closed from any loop); a later query opens another."""
        held, self._held = self._held, None
        if held is not None:
            await held[1].close()


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
