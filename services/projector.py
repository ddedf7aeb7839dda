"""Keeps the read models up to date by following the event store's notification log.

Each batch is read from the log first and then applied in one transaction that also records
the read model's new position; the transaction re-reads that position under a lock, so two
projectors (or a projector and a rebuild) never apply the same event twice.
On PostgreSQL the projector wakes on the store's LISTEN/NOTIFY channel; on SQLite it polls.
As `crm serve`'s child it is also woken by every commit of the API process, and reports how
far it is through memory the two share (services/worker_processes.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

from eventsourcing.utils import get_topic
from sqlalchemy import Connection, text

from domain.errors import EventUnreadable
from domain.ledger import AccountLedger
from projections import READ_MODEL_NAMES, accounts, jobs, objectives, transitions
from projections.account_queries import ensure_cursor_key
from projections.batch import Entry
from projections.database import ReadModelDatabase
from projections.generations import (
    Generation,
    add_generation,
    ensure_registry,
    forget,
    live_generation,
    make_live,
    record_position,
    wait_for_reads,
)
from services.leadership import lock_key
from services.store import database_unavailable, first_line

log = logging.getLogger("crm.projector")

READ_MODELS: dict[str, ModuleType] = {
    model.NAME: model for model in (accounts, transitions, objectives, jobs)
}
assert tuple(READ_MODELS) == READ_MODEL_NAMES, "projections/__init__.py names other read models"
POLL_SECONDS = 0.2
PACE_SECONDS = 0.05  # a batch at most this often (see _follow)
REPORT_SECONDS = 0.002  # how often, while reads wait, a child's report is looked at
REBUILD_BATCH = 5000  # events a rebuild applies per transaction
SETUP_LOCK = lock_key("any", "read-model-setup")


class Projector:
    def __init__(
        self,
        ledger: AccountLedger,
        database: ReadModelDatabase,
        batch_size: int = 1000,
        read_models: dict[str, ModuleType] | None = None,
        listen_url: str | None = None,
    ) -> None:
        self.ledger = ledger
        self.listen_url = listen_url  # PostgreSQL: wake on the event table's NOTIFY
        self.database = database
        self.batch_size = batch_size
        self.rebuild_batch_size = max(batch_size, REBUILD_BATCH)
        self.read_models = read_models or READ_MODELS
        # Only events the read models being applied read are decoded: the rest (contacts,
        # outreach, other aggregates' events) are passed on as None, which costs a rebuild
        # nothing. Rebuilt or caught up alone, the jobs read model decodes no account event.
        self._topics = {
            name: frozenset(get_topic(kind) for kind in model.READS)
            for name, model in self.read_models.items()
        }
        self._every_topic = frozenset().union(*self._topics.values())
        # An unreadable event of these topics holds the read models up until it is put right
        # (the audit names it): a read model without it would be wrong. Read models that say
        # so pass over theirs (projections/jobs.py).
        self._strict_topics = frozenset().union(
            *(
                self._topics[name]
                for name, model in self.read_models.items()
                if not getattr(model, "PASSES_UNREADABLE", False)
            )
        )
        self._progress = threading.Condition()
        self._wake = threading.Event()
        ledger.on_saved.append(self.wake)
        # Told, after each batch, the position every read model has reached.
        self.on_progress: list[Callable[[int], None]] = []
        # A projector in another process: where it says every read model is, and how to tell
        # it that a read waits for a position (see wait_for).
        self.reported: Callable[[], int] | None = None
        self.wanted: Callable[[int], None] | None = None
        self._hurry = threading.Event()
        self._gens: dict[str, Generation] | None = None  # where _step left the read models
        self._waiting = 0  # reads waiting in wait_for
        self._watching = False  # a thread looks at `reported` for them

    def wake(self, _position: int = 0) -> None:
        """Something was committed: look for it now rather than at the next poll."""
        self._wake.set()

    def hurry(self, _position: int = 0) -> None:
        """A read waits for a write: take the next batch without waiting out the pace."""
        self._hurry.set()
        self._wake.set()

    # Set-up and catching up ----------------------------------------------------------------

    def setup(self) -> None:
        """Creates the registry and a first live generation of every read model, or adds what
        the live ones lack."""
        with self.database.write() as conn:
            if conn.dialect.name == "postgresql":
                # API replicas and projectors start together: one creates, the others wait.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SETUP_LOCK})
            ensure_registry(conn)
            ensure_cursor_key(conn)
            for name, model in self.read_models.items():
                if (gen := live_generation(conn, name)) is None:
                    model.create_tables(conn, add_generation(conn, name, live=True))
                else:  # what a later release reads by is added once to the live tables
                    model.complete_tables(conn, gen)

    def catch_up(self) -> int:
        """Applies every event recorded so far to every read model; returns how many events
        the read models applied, together."""
        total = 0
        while applied := self._step():
            total += applied
        return total

    def _step(self) -> int:
        """Reads the next batch after the read model furthest behind, and applies it, in one
        transaction, to every read model at that position: they share the reading and the
        decoding of each event. Under steady writes the one behind catches up with the others,
        then they go on together.

        Where the read models are is known from the step before, whose transaction moved them;
        each is checked under its lock before a batch is applied to it, and if another projector
        or a rebuild moved one meanwhile, they are read afresh for the next step."""
        gens = self._gens or self._live_generations()
        behind = min(gen.position for gen in gens.values())
        # Read models behind the others (one a release adds, filled from the first event) catch
        # up in a rebuild's batches, decoding only the events they read: the others wait for
        # them meanwhile, about 5 s a million events where it took 11 (BENCHMARKS.md).
        catching_up = [name for name, gen in gens.items() if gen.position == behind]
        if len(catching_up) == len(gens):
            batch = self._read(behind)
        else:
            batch = self._read(behind, self.rebuild_batch_size, catching_up)
        if not batch:
            return 0
        applied = []
        with self.database.write() as conn:
            for name, gen in gens.items():
                if gen.position != behind:
                    continue
                if live_generation(conn, name, lock=True) != gen:
                    continue  # another projector or a rebuild moved it on: read again
                self._apply(conn, gen, batch)
                applied.append(name)
        end = batch[-1][0]
        moved = {
            name: Generation(name, gen.generation, end) if name in applied else gen
            for name, gen in gens.items()
        }
        # Kept only if every read model at `behind` was applied; else all are read again.
        at_behind = sum(gen.position == behind for gen in gens.values())
        self._gens = moved if len(applied) == at_behind else None
        with self._progress:
            self._progress.notify_all()
        reached = min(gen.position for gen in moved.values())
        for callback in self.on_progress:
            callback(reached)
        if not applied:
            return 1  # nothing applied, but the positions moved: look again
        log.info(
            "applied %d events up to %d to %s",
            len(batch),
            batch[-1][0],
            ", ".join(applied),
            extra={
                "fields": {
                    "read_models": applied,
                    "events": len(batch),
                    "position": batch[-1][0],
                }
            },
        )
        return len(batch) * len(applied)

    def _live_generations(self) -> dict[str, Generation]:
        with self.database.read() as conn:
            gens = {name: live_generation(conn, name) for name in self.read_models}
        missing = [name for name, gen in gens.items() if gen is None]
        if missing:
            raise RuntimeError(f"read model {missing[0]} has no live generation; run setup first")
        return {name: gen for name, gen in gens.items() if gen is not None}

    def _read(
        self, after: int, limit: int | None = None, names: Iterable[str] | None = None
    ) -> list[Entry]:
        """The next batch for the read models named (by default all); events none of them
        applies count as read (their event is None)."""
        limit = limit or self.batch_size
        notifications = self.ledger.recorder.select_notifications(after + 1, limit)
        if len(notifications) == limit:
            # A full batch may end inside a command (a rating, then the stage move it made):
            # its aggregate's events at the end wait for the next batch, else the read models
            # would show, at this batch's position, a state the account never had.
            last = notifications[-1].originator_id
            cut = len(notifications)
            while cut and notifications[cut - 1].originator_id == last:
                cut -= 1
            notifications = notifications[:cut] or notifications  # one aggregate's alone: all
        mapper = self.ledger.mapper
        topics = (
            self._every_topic
            if names is None
            else frozenset().union(*(self._topics[name] for name in names))
        )
        batch: list[Entry] = []
        for n in notifications:
            event = None
            if n.topic in topics:
                try:
                    event = mapper.to_domain_event(n)
                except EventUnreadable as error:
                    if n.topic in self._strict_topics:
                        raise
                    log.warning("passed over an unreadable %s event: %s", n.topic, error)
            batch.append((n.id, str(n.originator_id), event))
        return batch

    def _apply(self, conn: Connection, gen: Generation, batch: list[Entry]) -> None:
        self.read_models[gen.name].apply(conn, gen, batch)
        record_position(conn, gen, batch[-1][0])

    # Running ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Catches up, then follows new events until `stop` is set; survives store outages."""
        failing = False
        while not stop.is_set():
            try:
                self.setup()
                with self._waiter() as waiter:
                    while not stop.is_set():
                        self._follow(stop)
                        if failing:  # caught up past what failed, not merely set up again
                            log.info("projector running again")
                            failing = False
                        waiter.wait()
            except Exception as error:
                if failing:  # the same outage: one line a second, not a traceback
                    log.warning("projector still failing: %s", type(error).__name__)
                elif database_unavailable(error):  # it comes back by itself: no page at night
                    said = first_line(error)
                    log.warning(
                        "projector lost the database (%s); starting again in a second", said
                    )
                else:
                    log.exception("projector failed; starting again in a second")
                failing = True
                stop.wait(1.0)

    def _follow(self, stop: threading.Event) -> None:
        """Applies every event recorded so far, a batch at most every PACE_SECONDS unless a
        read waits for one. Under steady writes a batch taken the moment the last one is done
        holds a few events and costs as much as one of many (reading the positions, a
        transaction): waiting out the rest of the pace lets the next one gather. A batch of a
        backlog takes longer than the pace, so catching up is not slowed; nor is the first
        event after a quiet spell, nor a read that waits for its own write."""
        while not stop.is_set():
            began = time.monotonic()
            self._hurry.clear()  # the reads waiting now may be answered by this batch
            if not self._step():
                return
            if (rest := PACE_SECONDS - (time.monotonic() - began)) > 0:
                self._hurry.wait(rest)

    def _waiter(self) -> _Polling:
        channel = getattr(self.ledger.recorder, "channel_name", None)
        if self.listen_url and channel:
            return _Listening(self._wake, self.listen_url, channel)
        return _Polling(self._wake)

    # Read-your-writes --------------------------------------------------------------------

    def position(self, name: str) -> int:
        with self.database.read() as conn:
            gen = live_generation(conn, name)
        return gen.position if gen else 0

    def wait_for(self, name: str, position: int, timeout: float) -> int:
        """Waits up to `timeout` seconds for `name` to reach `position`; returns where it is."""
        deadline = time.monotonic() + timeout
        current = self.position(name)
        if current < position:
            (self.wanted or self.hurry)(position)
        while current < position:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._await_progress(position, min(left, 0.05))
            current = self.position(name)
        return current

    def _await_progress(self, position: int, seconds: float) -> None:
        """Waits up to `seconds` for a batch: of this process's projector, or one a projector
        in a child process reports. (A projector elsewhere, active while that child stands by,
        is found by the caller's query of the database.)"""
        with self._progress:
            if self.reported is not None:
                if (reported := self.reported()) >= position:
                    return  # the batch has landed: the caller finds it in the database
                if not self._watching:
                    self._watching = True
                    threading.Thread(
                        target=self._watch_reports, args=(reported,), name="projector-reports"
                    ).start()
            self._waiting += 1
            try:
                self._progress.wait(seconds)
            finally:
                self._waiting -= 1

    def _watch_reports(self, seen: int) -> None:
        """While reads wait, looks at the child's report and wakes them when it moves from
        `seen`: one thread for all of them, and only while there are any. A look at shared
        memory costs no system call, so it can be taken every two milliseconds."""
        assert self.reported is not None
        while True:
            time.sleep(REPORT_SECONDS)
            with self._progress:
                if not self._waiting:
                    self._watching = False
                    return
                if (now := self.reported()) != seen:
                    seen = now
                    self._progress.notify_all()

    # Rebuilding -------------------------------------------------------------------------------

    def rebuild(self, *names: str, progress: Callable[[int, int], None] | None = None) -> int:
        """Replays the read models named (all of them by default) from the first event into
        new tables, then makes them live; returns how many events were replayed.

        The log is read and decoded once for all of them, a batch ahead of the one applied;
        each batch is applied to every new generation in one transaction, into tables whose
        query indexes are built after the bulk load. The live tables keep serving until the new
        ones have caught up; the switch happens in one transaction that first applies whatever
        was recorded meanwhile, and the replaced tables are dropped after it, once the reads
        begun on them have ended.
        """
        names = names or tuple(self.read_models)
        self.setup()
        with self.database.write() as conn:
            new = {name: add_generation(conn, name, live=False) for name in names}
            for name, gen in new.items():
                self.read_models[name].create_tables(conn, gen, query_indexes=False)
        position = applied = 0
        # Bigger batches than the live projector's: nobody waits on a rebuild's transactions.
        # The next batch is read while this one is applied: each side waits on its database
        # for part of its time, which the other then uses.
        with ThreadPoolExecutor(1, thread_name_prefix="rebuild-read") as reader:
            upcoming = reader.submit(self._read, position, self.rebuild_batch_size, names)
            while batch := upcoming.result():
                position = batch[-1][0]
                upcoming = reader.submit(self._read, position, self.rebuild_batch_size, names)
                with self.database.write() as conn:
                    for gen in new.values():
                        self._apply(conn, gen, batch)
                applied += len(batch)
                if progress:
                    progress(applied, self.ledger.recorder.max_notification_id() or 0)
        with self.database.write() as conn:
            for name, gen in new.items():
                self.read_models[name].complete_tables(conn, gen)
        with self.database.write() as conn:
            for name in names:
                live_generation(conn, name, lock=True)  # holds off the live projector meanwhile
            while batch := self._read(position, None, names):
                for gen in new.values():
                    self._apply(conn, gen, batch)
                position = batch[-1][0]
                applied += len(batch)
            replaced = {}
            for name, gen in new.items():
                current = Generation(name, gen.generation, position)
                replaced[name] = make_live(conn, current)
                self.read_models[name].analyze(conn, current)  # statistics after a bulk load
        # The replaced tables go once no read is on them: a read that found them in the
        # registry before the switch would otherwise fail on tables that no longer exist.
        with self.database.write() as conn:
            wait_for_reads(conn)
            for name, numbers in replaced.items():
                for number in numbers:
                    self.read_models[name].drop_tables(conn, Generation(name, number, 0))
                    forget(conn, name, number)
        if progress:
            progress(applied, applied)
        return applied


class _Polling:
    """Waits for this process's next save, or a short while for other processes' ones."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake

    def __enter__(self) -> _Polling:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def wait(self) -> None:
        self.wake.wait(POLL_SECONDS)
        self.wake.clear()


class _Listening(_Polling):
    """Also wakes on PostgreSQL's NOTIFY, which the event store sends on every insert."""

    def __init__(self, wake: threading.Event, url: str, channel: str) -> None:
        super().__init__(wake)
        self.url = url
        self.channel = channel

    def __enter__(self) -> _Listening:
        import psycopg
        from psycopg import sql

        self.conn = psycopg.connect(self.url, autocommit=True)
        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        return self

    def __exit__(self, *_: object) -> None:
        self.conn.close()

    def wait(self) -> None:
        if self.wake.is_set():
            self.wake.clear()
            return
        for _ in self.conn.notifies(timeout=POLL_SECONDS, stop_after=1):
            pass
