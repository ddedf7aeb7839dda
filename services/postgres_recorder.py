"""The PostgreSQL event recorder: failing fast while the database is away, and a save in one
round trip.

`eventsourcing` retries each statement ten times on a connection error, and each attempt may
wait for a pooled connection as long as the pool's timeout: a request would learn that the
database is away only after about a minute. Here a statement is tried twice (a save only until
it is sent: see `insert_events`), so the API answers 503 within seconds; the pool reconnects by
itself when the database is back.

The library inserts a save's events with `executemany` in psycopg's pipeline mode, which was
seen to hang for good on a save of a few thousand events (the server waiting for the client,
the client for the server; psycopg 3.3.9, both implementations). Without pipeline mode a save
took six round trips (BEGIN, the lock timeout, the table lock, NOTIFY, the INSERT, COMMIT), and
each hands the interpreter lock over while it waits and must take it back after: in a loaded
process that waiting cost a save more than the database did. Here the library's statements and
one INSERT … SELECT FROM unnest(arrays) go as one query, its values bound by the client: one
round trip, which PostgreSQL runs as one transaction (an error in any statement rolls back all
of them), with the same table lock and NOTIFY as the library's, so notification ids still
follow commit order.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import ExitStack
from functools import cached_property
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.utils import retry
from psycopg import ClientCursor, Connection
from psycopg.sql import SQL, Composed, Identifier, Literal
from psycopg_pool import ConnectionPool

from services.sockets import readable

_retry = retry((InterfaceError, OperationalError), max_attempts=2, wait=0.1)
_base = PostgresApplicationRecorder

# How long a process starting waits for its pool's connections.
POOL_OPEN_SECONDS = 30.0
# How long the pool tries again to replace a lost connection before it leaves that to the next
# request that needs one.
RECONNECT_SECONDS = 5.0


class ConninfoFactory(PostgresFactory):
    """The library's factory, its pool given `POSTGRES_CONNINFO` (the whole of CRM_DATABASE_URL)
    as well: the library passes on only the database, host, port, user and password, and the
    URL's other parameters (`sslmode`, `sslrootcert`, `application_name`, …) would hold for
    the read models' connections but not for the event store's."""

    CONNINFO = "POSTGRES_CONNINFO"

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        pool = self.datastore.pool
        pool.conninfo = self.env.get(self.CONNINFO) or ""
        # The pool replaces a lost connection with attempts ever further apart (1, 2, 4 … s)
        # for `reconnect_timeout`, 300 s by default, and meanwhile counts it as there: after
        # an outage of minutes the API waited up to two more for the next attempt. Given up
        # within seconds, the connection is made again as soon as a request asks for one.
        pool.reconnect_timeout = RECONNECT_SECONDS
        # The library's pre-ping (POSTGRES_PRE_PING) asks the server before every statement.
        pool._check = check_when_readable  # psycopg_pool takes `check` only when made


def check_when_readable(conn: Connection[Any]) -> None:
    """The pool's check of a connection it lends: a round trip only when the socket has
    something to read. A session the server ended is then found broken here and replaced
    before a statement fails on it; a quiet socket is a session as the last statement left it.
    Asking the server every time (psycopg_pool's `check_connection`) cost each statement a
    second round trip."""
    if conn.closed:
        raise OperationalError("the connection is closed")
    if readable(conn.fileno()):
        ConnectionPool.check_connection(conn)


class FailFastRecorder(PostgresApplicationRecorder):
    # Each method calls the library's own, without its retry decorator (`__wrapped__`).

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        # The pool connects in the background, and the library's first query (its type
        # adapters, here) would wait for a connection only as long as a request does: a start
        # on a database busy for a moment (at its connection limit, a loaded machine) would
        # fail although the database was there. A start waits for the whole pool instead; a
        # pool that cannot fill in time raises PoolTimeout, an OperationalError.
        datastore.pool.open(wait=True, timeout=POOL_OPEN_SECONDS)
        super().__init__(datastore, **kwargs)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        if not stored_events:
            return []
        arrays = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        # Only taking a connection is tried twice, not the save: a connection lost once the save
        # was sent may have lost just its answer, with the save committed. Sent again, it would
        # fail on the versions it took itself, which the account writer takes for another
        # process's write: it would decide the command again on top of its own events and store
        # it twice. Not sent again, the command fails (503), and its events are stored once.
        with ExitStack() as stack:
            conn = self._connection(stack)
            # The pool's connections are in autocommit mode, so psycopg sends no BEGIN of its
            # own: the statements of one simple query make PostgreSQL's implicit transaction.
            curs = stack.enter_context(ClientCursor(conn))
            curs.execute(self._save, arrays)
            while curs.nextset():  # to the last statement's result: the INSERT's
                pass
            # Rows are inserted in array order, so their ids rise in that order.
            return sorted(row["notification_id"] for row in curs.fetchall())

    def ids_not_as_written(self) -> list[tuple[str, int]]:
        """None: a uuid column holds an id in one form only (see MultiRowRecorder)."""
        return []

    def create_table(self) -> None:
        super().create_table()
        # An aggregate's versions follow one another (see MultiRowRecorder): a version whose
        # predecessor is not stored is refused as a version already taken is (23505, an
        # IntegrityError). Checked after each row, when the rows of its statement are in.
        name = self.events_table_name
        function = Identifier(self.datastore.schema, f"{name}_versions_follow")
        statements = SQL(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF NEW.originator_version > 1 AND NOT EXISTS (SELECT 1 FROM {table} "
            "WHERE originator_id = NEW.originator_id "
            "AND originator_version = NEW.originator_version - 1) THEN "
            "RAISE EXCEPTION 'version % of % follows no stored version', "
            "NEW.originator_version, NEW.originator_id USING ERRCODE = 'unique_violation'; "
            "END IF; RETURN NULL; END $$; "
            "DO $$ BEGIN CREATE TRIGGER {trigger} AFTER INSERT ON {table} FOR EACH ROW "
            "EXECUTE FUNCTION {function}(); EXCEPTION WHEN duplicate_object THEN NULL; END $$; "
            # The library's column takes NULL, which it then cannot read back: every read of
            # the account and of the log would fail. Asked first, as the ALTER locks the whole
            # table, and would wait behind a long export's reads (new reads queued behind it).
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_attribute "
            "WHERE attrelid = {regclass}::regclass AND attname = 'state' AND NOT attnotnull) THEN "
            "ALTER TABLE {table} ALTER COLUMN state SET NOT NULL; END IF; END $$"
        ).format(
            function=function,
            table=Identifier(self.datastore.schema, name),
            trigger=Identifier(f"{name}_versions_follow"),
            regclass=Literal(f'"{self.datastore.schema}"."{name}"'),  # a checked schema name
        )
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(statements, prepare=False)

    @_retry
    def _connection(self, stack: ExitStack) -> Connection[Any]:
        """A pooled connection, held until `stack` closes; its errors, and those of what runs on
        it meanwhile, come as the library's (OperationalError and the like)."""
        return stack.enter_context(self.datastore.get_connection())

    @cached_property
    def _save(self) -> Composed:
        notify = SQL("NOTIFY {0}").format(Identifier(self.channel_name))
        return SQL("; ").join([*self.lock_table_statements, notify, self._insert_unnest])

    @cached_property
    def _insert_unnest(self) -> Composed:
        return self._on_events(
            "INSERT INTO {table} (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version, topic, state FROM unnest("
            "%s::{id_type}[], %s::bigint[], %s::text[], %s::bytea[]) WITH ORDINALITY "
            "AS e(originator_id, originator_version, topic, state, n) ORDER BY n "
            "RETURNING notification_id"
        )

    def _on_events(self, statement: str) -> Composed:
        """The statement with the events table (`{table}`) and its id's type (`{id_type}`)."""
        id_type = "uuid" if self.datastore.originator_id_type == "uuid" else "text"
        return SQL(statement).format(
            table=Identifier(self.datastore.schema, self.events_table_name), id_type=SQL(id_type)
        )

    @_retry
    def select_events(self, originator_id: UUID | str, **kwargs: Any) -> Sequence[StoredEvent]:
        return _base.select_events.__wrapped__(self, originator_id, **kwargs)  # type: ignore[attr-defined]

    @_retry
    def last_versions(self, originator_ids: Collection[UUID]) -> dict[UUID, int]:
        """The last stored version of each of these aggregates that has events, asked in one
        statement (each a descent of the primary key)."""
        with ExitStack() as stack:
            curs = stack.enter_context(self._connection(stack).cursor())
            curs.execute(self._last_versions, ([*originator_ids],))
            return {UUID(str(row["id"])): row["version"] for row in curs.fetchall()}

    @cached_property
    def _last_versions(self) -> Composed:
        return self._on_events(
            "SELECT id, version FROM unnest(%s::{id_type}[]) AS ids(id), LATERAL (SELECT "
            "max(originator_version) AS version FROM {table} WHERE originator_id = ids.id) "
            "AS last WHERE version IS NOT NULL"
        )

    @_retry
    def select_events_of(self, originator_ids: Collection[UUID]) -> dict[UUID, list[StoredEvent]]:
        """Every event of each of these aggregates, in version order, asked in one statement."""
        found: dict[UUID, list[StoredEvent]] = {}
        with ExitStack() as stack:
            curs = stack.enter_context(self._connection(stack).cursor())
            curs.execute(self._events_of, ([*originator_ids],))
            for row in curs.fetchall():
                originator_id = row["originator_id"]
                found.setdefault(originator_id, []).append(
                    StoredEvent(
                        originator_id=originator_id,
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=bytes(row["state"]),
                    )
                )
        return found

    @cached_property
    def _events_of(self) -> Composed:
        return self._on_events(
            "SELECT originator_id, originator_version, topic, state FROM {table} "
            "WHERE originator_id = ANY(%s::{id_type}[]) ORDER BY originator_id, originator_version"
        )

    @_retry
    def select_notifications(self, *args: Any, **kwargs: Any) -> Sequence[Notification]:
        return _base.select_notifications.__wrapped__(self, *args, **kwargs)  # type: ignore[attr-defined]

    @_retry
    def max_notification_id(self) -> int | None:
        return _base.max_notification_id.__wrapped__(self)  # type: ignore[attr-defined]
