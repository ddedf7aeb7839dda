"""The PostgreSQL event recorder: failing fast while the database is away, and inserting
without pipeline mode.

`eventsourcing` retries each statement ten times on a connection error, and each attempt may
wait for a pooled connection as long as the pool's timeout: a request would learn that the
database is away only after about a minute. Here a statement is tried twice, so the API answers
503 within seconds; the pool reconnects by itself when the database is back.

The library inserts a save's events with `executemany` in psycopg's pipeline mode, which was
seen to hang for good on a save of a few thousand events (the server waiting for the client,
the client for the server; psycopg 3.3.9, both implementations). Here the events go in one
INSERT … SELECT FROM unnest(arrays): one round trip, no pipeline, and the same table lock and
NOTIFY as the library's, so notification ids still follow commit order.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg.sql import SQL, Composed, Identifier

_retry = retry((InterfaceError, OperationalError), max_attempts=2, wait=0.1)
_base = PostgresApplicationRecorder


class FailFastRecorder(PostgresApplicationRecorder):
    # Each method calls the library's own, without its retry decorator (`__wrapped__`).

    @_retry
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        with self.datastore.transaction(commit=True) as curs:
            self._lock_table(curs)
            self._notify_channel(curs)
            if not stored_events:
                return []
            curs.execute(
                self._insert_unnest,
                (
                    [e.originator_id for e in stored_events],
                    [e.originator_version for e in stored_events],
                    [e.topic for e in stored_events],
                    [e.state for e in stored_events],
                ),
            )
            # Rows are inserted in array order, so their ids rise in that order.
            return sorted(row["notification_id"] for row in curs.fetchall())

    @cached_property
    def _insert_unnest(self) -> Composed:
        id_type = "uuid" if self.datastore.originator_id_type == "uuid" else "text"
        return SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version, topic, state FROM unnest("
            "%s::{id_type}[], %s::bigint[], %s::text[], %s::bytea[]) WITH ORDINALITY "
            "AS e(originator_id, originator_version, topic, state, n) ORDER BY n "
            "RETURNING notification_id"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
            id_type=SQL(id_type),
        )

    @_retry
    def select_events(self, originator_id: UUID | str, **kwargs: Any) -> Sequence[StoredEvent]:
        return _base.select_events.__wrapped__(self, originator_id, **kwargs)  # type: ignore[attr-defined]

    @_retry
    def select_notifications(self, *args: Any, **kwargs: Any) -> Sequence[Notification]:
        return _base.select_notifications.__wrapped__(self, *args, **kwargs)  # type: ignore[attr-defined]

    @_retry
    def max_notification_id(self) -> int | None:
        return _base.max_notification_id.__wrapped__(self)  # type: ignore[attr-defined]
