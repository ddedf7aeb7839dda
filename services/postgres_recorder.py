"""The PostgreSQL event recorder, failing fast while the database is away.

`eventsourcing` retries each statement ten times on a connection error, and each attempt may
wait for a pooled connection as long as the pool's timeout: a request would learn that the
database is away only after about a minute. Here a statement is tried twice, so the API answers
503 within seconds; the pool reconnects by itself when the database is back.
"""

from __future__ import annotations

from collections.abc import Sequence
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

_retry = retry((InterfaceError, OperationalError), max_attempts=2, wait=0.1)
_base = PostgresApplicationRecorder


class FailFastRecorder(PostgresApplicationRecorder):
    # Each method calls the library's own, without its retry decorator (`__wrapped__`).

    @_retry
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        return _base.insert_events.__wrapped__(self, stored_events, **kwargs)  # type: ignore[attr-defined]

    @_retry
    def select_events(self, originator_id: UUID | str, **kwargs: Any) -> Sequence[StoredEvent]:
        return _base.select_events.__wrapped__(self, originator_id, **kwargs)  # type: ignore[attr-defined]

    @_retry
    def select_notifications(self, *args: Any, **kwargs: Any) -> Sequence[Notification]:
        return _base.select_notifications.__wrapped__(self, *args, **kwargs)  # type: ignore[attr-defined]

    @_retry
    def max_notification_id(self) -> int | None:
        return _base.max_notification_id.__wrapped__(self)  # type: ignore[attr-defined]
