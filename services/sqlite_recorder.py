"""The SQLite event recorder: a save's events go in with one INSERT statement, which is its own
transaction.

The library inserts one row per statement, between a BEGIN and a COMMIT. Every statement lets
go of the interpreter lock while SQLite runs it and must take it back afterwards, which costs
up to a switch interval whenever another thread (the event loop) is busy, and in a loaded
process that waiting, not the disk, is what a save costs: a save of thirty events as one
statement between BEGIN and COMMIT took 14 ms (4 to begin, 6 to insert, 4 to commit) while the
disk's sync takes 0.3 ms. So a save that fits in one statement runs it alone in autocommit
mode, where SQLite makes the statement atomic and durable by itself (the WAL is synced before
it returns), and the lock is taken back once instead of three times. A larger save (a bulk
import) runs its statements in one transaction, as before.

The events table has no AUTOINCREMENT, so the rows of one statement, inserted under the write
lock, get consecutive rowids ending at the last insert rowid: the same notification ids the
library's row-by-row inserts would give.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

ROWS_PER_STATEMENT = 500  # 4 parameters each, well under SQLite's limit of 32,766

# As the library's transactions translate SQLite's errors (the account writer, for one, tells
# a taken version by IntegrityError), most specific first.
_ERRORS: tuple[tuple[type[sqlite3.Error], type[PersistenceError]], ...] = (
    (sqlite3.InterfaceError, InterfaceError),
    (sqlite3.DataError, DataError),
    (sqlite3.OperationalError, OperationalError),
    (sqlite3.IntegrityError, IntegrityError),
    (sqlite3.InternalError, InternalError),
    (sqlite3.ProgrammingError, ProgrammingError),
    (sqlite3.NotSupportedError, NotSupportedError),
    (sqlite3.DatabaseError, DatabaseError),
    (sqlite3.Error, PersistenceError),
)


class MultiRowRecorder(SQLiteApplicationRecorder):
    def construct_create_table_statements(self) -> list[str]:
        # An aggregate's versions follow one another: a version whose predecessor is not
        # stored was decided on a state the store no longer holds (one restored from a backup
        # under a running process). Refused as a version already taken is (IntegrityError), so
        # the account writer decides the command again on the account as stored, rather than
        # leave a hole in its history for good.
        table = self.events_table_name
        return [
            *super().construct_create_table_statements(),
            f"CREATE TRIGGER IF NOT EXISTS {table}_versions_follow BEFORE INSERT ON {table} "
            "WHEN NEW.originator_version > 1 AND NOT EXISTS (SELECT 1 FROM "
            f"{table} WHERE originator_id = NEW.originator_id AND "
            "originator_version = NEW.originator_version - 1) "
            "BEGIN SELECT RAISE(ABORT, 'the version before it is not stored'); END",
        ]

    def ids_not_as_written(self) -> list[tuple[str, int]]:
        """The id and version of each event stored under an id not in the form the ledger
        writes (32 lower-case hex digits). Changed behind its back (in capitals, with dashes),
        the event still reads as the account's in the log, but a read of the account no longer
        finds it."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT originator_id, originator_version FROM {self.events_table_name} "
                "WHERE length(originator_id) != 32 OR originator_id GLOB '*[^0-9a-f]*'"
            )
            return [(row[0], row[1]) for row in c.fetchall()]

    def last_versions(self, originator_ids: Collection[UUID]) -> dict[UUID, int]:
        """The last stored version of each of these aggregates that has events (each a descent
        of the primary key)."""
        rows = self._select_for_each_chunk(
            originator_ids,
            lambda n: (
                f"WITH ids(id) AS (VALUES {','.join(['(?)'] * n)}) "
                f"SELECT id, (SELECT max(originator_version) FROM {self.events_table_name} "
                "WHERE originator_id = ids.id) AS version FROM ids WHERE version IS NOT NULL"
            ),
        )
        return {UUID(hex_id): version for hex_id, version in rows}

    def select_events_of(self, originator_ids: Collection[UUID]) -> dict[UUID, list[StoredEvent]]:
        """Every event of each of these aggregates, in version order."""
        rows = self._select_for_each_chunk(
            originator_ids,
            lambda n: (
                "SELECT originator_id, originator_version, topic, state FROM "
                f"{self.events_table_name} WHERE originator_id IN ({','.join(['?'] * n)}) "
                "ORDER BY originator_id, originator_version"
            ),
        )
        found: dict[UUID, list[StoredEvent]] = {}
        for hex_id, version, topic, state in rows:
            originator_id = UUID(hex_id)
            found.setdefault(originator_id, []).append(
                StoredEvent(originator_id, version, topic, state)
            )
        return found

    def _select_for_each_chunk(
        self, originator_ids: Collection[UUID], statement: Callable[[int], str]
    ) -> list[Any]:
        """The rows `statement(n)` selects for n of these ids at a time, up to
        ROWS_PER_STATEMENT of them a statement, all in one read transaction."""
        ids = [originator_id.hex for originator_id in originator_ids]
        rows: list[Any] = []
        with self.datastore.transaction(commit=False) as c:
            for start in range(0, len(ids), ROWS_PER_STATEMENT):
                chunk = ids[start : start + ROWS_PER_STATEMENT]
                c.execute(statement(len(chunk)), chunk)
                rows.extend(c.fetchall())
        return rows

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if len(stored_events) > ROWS_PER_STATEMENT:
            return super().insert_events(stored_events, **kwargs)
        with self.datastore.get_connection(commit=True) as connection, _persistence_errors():
            cursor = connection.cursor()
            with cursor:  # closes it
                return self._insert_events(cursor, stored_events)

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **_: Any
    ) -> Sequence[int] | None:
        ids: list[int] = []
        for start in range(0, len(stored_events), ROWS_PER_STATEMENT):
            chunk = stored_events[start : start + ROWS_PER_STATEMENT]
            params: list[Any] = []
            for s in chunk:
                originator_id = s.originator_id
                params += (
                    originator_id.hex if isinstance(originator_id, UUID) else originator_id,
                    s.originator_version,
                    s.topic,
                    s.state,
                )
            values = ",".join(["(?,?,?,?)"] * len(chunk))
            c.execute(f"INSERT INTO {self.events_table_name} VALUES {values}", params)
            last = c.lastrowid
            ids += range(last - len(chunk) + 1, last + 1)
        return ids


@contextmanager
def _persistence_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as error:
        for raised, meant in _ERRORS:
            if isinstance(error, raised):
                raise meant(error) from error
        raise
