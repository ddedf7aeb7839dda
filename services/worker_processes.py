"""The projector and the publisher as child processes of `crm serve`, and the API process's
view of them.

In the API's process the projector and the publisher shared one interpreter lock with the
request handlers and the account writer; in processes of their own they leave them that share
(BENCHMARKS.md: W1 in one process). `crm serve` starts each as `crm project` or `crm publish`
with two descriptors:

* a socket, over which the API process tells the child to stop, asks the projector whether it
  runs and the publisher for its state and metrics (for `/ready`, `/status` and `/metrics`).
  A child stops when the socket closes too, so it never outlives the API process, however
  that ends;
* a page of memory shared by the three processes, holding three log positions: the API
  process's last commit, which the account writer stores after each commit and the children
  look at every few milliseconds; how far the projector has brought every read model, which
  a read that waits for its own write looks at; and the position such a read waits for, which
  has the projector take its next batch at once. A store to memory is no system call, so the
  writer keeps the interpreter lock (a pipe write would hand it over, the cost the
  one-statement saves removed).

The API process starts a child again whenever it exits otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

# Each child imports this module, and only what it runs: the projector's has no use for NATS,
# the publisher's none for the read models (each import costs a process megabytes for ever).
if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from services.projector import Projector
    from services.publisher import Publisher, PublisherView

log = logging.getLogger("crm.workers")

POSITION = struct.Struct("q")
COMMITTED, PROJECTED, WANTED = (n * POSITION.size for n in range(3))  # offsets in the page
ASK_SECONDS = 2.0  # how long /ready and /status wait for a child's answer
STOP_SECONDS = 15.0
RESTART_MAX_SECONDS = 30.0


class SharedPositions:
    """The page of memory the API process and its children share."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:  # the API process makes it
            with tempfile.TemporaryFile() as file:  # unlinked: only these processes map it
                file.truncate(mmap.PAGESIZE)
                fd = os.dup(file.fileno())
        self.fd = fd
        self._page = mmap.mmap(fd, mmap.PAGESIZE)
        self._wanting = threading.Lock()

    def committed(self) -> int:
        return POSITION.unpack_from(self._page, COMMITTED)[0]

    def commit(self, position: int) -> None:
        """The account writer committed up to `position` (called in its thread)."""
        POSITION.pack_into(self._page, COMMITTED, position)

    def projected(self) -> int:
        return POSITION.unpack_from(self._page, PROJECTED)[0]

    def project(self, position: int) -> None:
        """Every read model has applied the log up to `position`."""
        POSITION.pack_into(self._page, PROJECTED, position)

    def wanted(self) -> int:
        return POSITION.unpack_from(self._page, WANTED)[0]

    def want(self, position: int) -> None:
        """A read waits for the read models to reach `position`."""
        with self._wanting:  # a later position is never overwritten by an earlier one
            if position > self.wanted():
                POSITION.pack_into(self._page, WANTED, position)


class WorkerProcess:
    """Starts, supervises and stops one child, `crm <command>`."""

    def __init__(
        self, command: str, positions: SharedPositions, env: dict[str, str] | None = None
    ) -> None:
        self.command = command
        self.positions = positions
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._asking = threading.Lock()
        self._asked = 0
        self._started_at = 0.0

    def start(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            fds = (theirs.fileno(), self.positions.fd)
            for_serve = ",".join(map(str, fds))
            process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", self.command, "--for-serve", for_serve],
                env={**os.environ, **self.env},
                pass_fds=fds,
                # A group of its own, as the broker's: Ctrl-C (or a supervisor's signal to
                # crm serve's group) reaching a child still starting, before it ignores such
                # signals, would stop it, and crm serve would start it again while shutting
                # down. crm serve stops it over the socket.
                process_group=0,
            )
        with self._asking:  # not while a question is on the way
            if self._conn is not None:
                self._conn.close()  # a dead child's
            self.process, self._conn = process, Connection(ours.detach())
        self._started_at = time.monotonic()

    async def supervise(self, stop: asyncio.Event, every: float = 1.0) -> None:
        """Starts the child again whenever it exits before `stop`, waiting longer after each
        exit that came soon after its start (a broker too old to serve, say)."""
        delay = every
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set() or self.process is None or self.process.poll() is None:
                continue
            ran = time.monotonic() - self._started_at
            delay = every if ran > RESTART_MAX_SECONDS else min(delay * 2, RESTART_MAX_SECONDS)
            log.warning(
                "the %s process exited with %s; starting it again in %.0f s",
                self.command,
                self.process.returncode,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if not stop.is_set():
                self.start()

    def stop(self) -> None:
        """Asks the child to stop and waits for it (it finishes the batch in flight)."""
        with self._asking:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send(None)
                self._conn.close()
                self._conn = None
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def state(self) -> str:
        """ok while the child answers; unavailable while it is dead, starting or hung."""
        return "unavailable" if self._ask() is None else "ok"

    def _ask(self) -> tuple | None:
        """The child's answer to a question, or None if it gives none in time."""
        with self._asking:  # one question at a time on the socket
            if self._conn is None or self.process is None or self.process.poll() is not None:
                return None
            self._asked += 1
            try:
                self._conn.send(self._asked)
                while self._conn.poll(ASK_SECONDS):
                    number, *answer = self._conn.recv()
                    if number == self._asked:  # not a late answer to an earlier question
                        return tuple(answer)
            except (OSError, EOFError):  # the child is exiting; the supervisor starts it again
                pass
            return None


class PublisherProcess(WorkerProcess):
    """The publisher's child, and its state and metrics in the API process.

    While the child does not answer (killed, starting again), the API process still reports
    the backlog: from the position the child last said was in the stream (none, before its
    first answer) to the log's head, so an alert on it sees the outage."""

    def __init__(self, nats_url: str, positions: SharedPositions, head: Callable[[], int]) -> None:
        super().__init__("publish", positions, {"CRM_NATS_URL": nats_url})
        self._head = head  # the event log's last position, read from the store
        self._last: tuple[PublisherView, list[Metric]] | None = None  # the child's last answer

    def view(self) -> PublisherView:
        from services.publisher import PublisherView

        answer = self._answer()
        if answer is not None:
            return answer[0]
        last = self._last[0] if self._last is not None else None
        published = last.published_position if last is not None else 0
        head = self._head_or(last.head_position if last is not None else 0)
        backlog = max(head - published, 0)
        return PublisherView("unavailable", False, published, head, backlog, None, None, None)

    def collect(self) -> Iterator[Metric]:
        """Prometheus: the child's publisher metrics, in the API process's /metrics; while it
        does not answer, its last counts, the backlog counted here, and no publisher active."""
        from services.publisher import ACTIVE, BACKLOG, away_publisher_gauges

        answer = self._answer()
        if answer is not None:
            return iter(answer[1])
        last = [] if self._last is None else self._last[1]
        counts = [family for family in last if family.name not in (BACKLOG[0], ACTIVE[0])]
        return iter(counts + away_publisher_gauges(self.view().backlog))

    def describe(self) -> list[Metric]:
        return []  # what collect() gives depends on the child: not checked at registration

    def _answer(self) -> tuple[PublisherView, list[Metric]] | None:
        answer = self._ask()
        if answer is None:
            return None
        self._last = (answer[0], answer[1])
        return self._last

    def _head_or(self, fallback: int) -> int:
        try:
            return max(self._head(), fallback)
        except Exception:  # the store does not answer either: the last head known
            log.warning("the event log's head could not be read for the publisher's backlog")
            return max(self.positions.committed(), fallback)


# In the child ----------------------------------------------------------------------------------


def serve_parent(
    fds: str,
    on_commit: Callable[[int], None],
    stop: Callable[[], None],
    every: float,
    answer: Callable[[], tuple] | None = None,
    on_wanted: Callable[[], None] | None = None,
) -> SharedPositions:
    """Runs in the child: calls `on_commit` with each new position the API process commits
    and `on_wanted` while a read waits for a position not yet projected (looking every `every`
    seconds), answers its questions with `answer()`, and calls `stop` when the API process
    says so or is gone. Returns the shared positions."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # the API process stops its child
        signal.signal(signum, signal.SIG_IGN)
    conn_fd, page_fd = (int(fd) for fd in fds.split(","))
    conn = Connection(conn_fd)
    positions = SharedPositions(page_fd)
    done = threading.Event()

    def listen() -> None:
        try:
            while (number := conn.recv()) is not None:
                conn.send((number, *(answer() if answer else ())))
        except (EOFError, OSError):  # the API process is gone
            pass
        finally:
            done.set()
            stop()

    threading.Thread(target=listen, name="listen-crm-serve", daemon=True).start()
    threading.Thread(
        target=follow,
        args=(positions, done, every, on_commit, on_wanted),
        name="follow-commits",
        daemon=True,
    ).start()
    return positions


def follow(
    positions: SharedPositions,
    done: threading.Event,
    every: float,
    on_commit: Callable[[int], None],
    on_wanted: Callable[[], None] | None = None,
) -> None:
    """Looks at the shared positions every `every` seconds until `done`: see serve_parent.

    A read that waits hurries the projector when it begins to wait and again after each batch
    that did not answer it, not at every look: a position the log has not reached (a mistaken
    `min_position`) would have the projector read the log every few milliseconds for ever."""
    seen = positions.committed()
    hurried = (0, 0)  # the positions wanted and projected at the last hurry
    while not done.wait(every):
        if (position := positions.committed()) != seen:
            seen = position
            on_commit(position)
        if on_wanted is not None:
            waiting = (positions.wanted(), positions.projected())
            if waiting[0] > waiting[1] and waiting != hurried:
                hurried = waiting
                on_wanted()


def serve_publisher(fds: str, publisher: Publisher, stop: asyncio.Event) -> None:
    """The publisher's side, in its event loop."""
    from services.publisher import PUBLISHER_METRICS

    loop = asyncio.get_running_loop()

    def state() -> tuple:
        metrics = [family for metric in PUBLISHER_METRICS for family in metric.collect()]
        return publisher.view(), metrics

    # Every 20 ms: the lag it adds at most, well within what subscribers are promised.
    serve_parent(fds, publisher.wake_up, lambda: loop.call_soon_threadsafe(stop.set), 0.02, state)


def serve_projector(fds: str, projector: Projector, stop: threading.Event) -> None:
    """The projector's side: woken by each commit and hurried by each read that waits, it
    reports how far every read model is after each batch."""
    # Every 2 ms: what a read that waits for its own write waits at most beyond a batch.
    positions = serve_parent(fds, projector.wake, stop.set, 0.002, on_wanted=projector.hurry)
    projector.on_progress.append(positions.project)
