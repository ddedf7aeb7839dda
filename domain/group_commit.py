"""Group commit: concurrent commands' events stored together, one transaction for many.

Every transaction waits for its commit to reach the disk (SQLite's fsync of the WAL), and the
PostgreSQL event store serialises inserts behind a table lock; both cost per transaction, not
per event. Commands that arrive while a transaction is being written wait for the next one,
which then carries all of them. Each command still gets its own outcome: when the shared
transaction fails on a version conflict, its commands are written one by one, so the conflict
fails only the command that caused it. Nobody is answered before their transaction committed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import IntegrityError

MAX_GROUP = 200  # commands in one transaction


@dataclass
class Pending:
    events: list[Any]
    done: Future[list[Any]] = field(default_factory=Future)


class GroupCommit:
    def __init__(self, save: Callable[..., list[Any]]) -> None:
        """`save(*events)` stores events in one transaction and returns their recordings."""
        self._save = save
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.largest_group = 0

    def save(self, *aggregates: Any) -> list[Any]:
        """Stores the aggregates' new events, with other commands' ones; raises IntegrityError
        when another writer stored the same versions first."""
        events = [e for a in aggregates if a is not None for e in a.collect_events()]
        if not events:
            return []
        item = Pending(events)
        self._start()
        self._queue.put(item)
        return item.done.result()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="group-commit", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            while len(group) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.commit(group)
                    return
                group.append(more)
            self.commit(group)

    def commit(self, group: Sequence[Pending]) -> None:
        """Stores a group in one transaction, or each of its commands alone after a conflict."""
        self.largest_group = max(self.largest_group, len(group))
        claimed: set[tuple[Any, int]] = set()
        together: list[Pending] = []
        for item in group:
            versions = {(e.originator_id, e.originator_version) for e in item.events}
            if versions & claimed:
                # An earlier command of this group writes the same versions: it wins.
                item.done.set_exception(IntegrityError("version already taken in this group"))
            else:
                claimed |= versions
                together.append(item)
        if not together:
            return
        try:
            recordings = self._save(*(e for item in together for e in item.events))
        except IntegrityError:
            for item in together:
                self._commit_alone(item)
        except BaseException as error:  # the store is away: every command in it learns so
            for item in together:
                item.done.set_exception(error)
        else:
            for item in together:
                mine = {id(e) for e in item.events}
                item.done.set_result([r for r in recordings if id(r.domain_event) in mine])

    def _commit_alone(self, item: Pending) -> None:
        try:
            item.done.set_result(self._save(*item.events))
        except BaseException as error:
            item.done.set_exception(error)
