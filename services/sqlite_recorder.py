"""The SQLite event recorder: a save's events go in with one INSERT statement.

The library inserts one row per statement. Each statement lets go of the interpreter lock
while SQLite runs it and must take it back afterwards, which costs up to a switch interval when
the event loop thread is busy: a save of a hundred events waited that long a hundred times.
One multi-row INSERT waits once. The events table has no AUTOINCREMENT, so the rows of one
statement, inserted under the transaction's write lock, get consecutive rowids ending at the
last insert rowid: the same notification ids the library's row-by-row inserts would give.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

ROWS_PER_STATEMENT = 500  # 4 parameters each, well under SQLite's limit of 32,766


class MultiRowRecorder(SQLiteApplicationRecorder):
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
