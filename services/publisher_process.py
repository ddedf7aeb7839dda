"""The publisher as a child process of `crm serve`, and the API process's view of it.

In the API's process the publisher shared one interpreter lock with the request handlers and
the account writer; in a process of its own it leaves them that share (BENCHMARKS.md: W1 in
one process). `crm serve` starts it as `crm publish` with two descriptors:

* a socket, over which the API process asks for the publisher's state and metrics (for
  `/ready`, `/status` and `/metrics`) and tells it to stop. The child stops when the socket
  closes too, so it never outlives the API process, however that ends;
* a shared page holding the log position of the API process's last commit, which the account
  writer stores after each commit and the child looks at every few milliseconds: a store to
  memory is no system call, so the writer keeps the interpreter lock (a pipe write would hand
  it over, the cost the one-statement saves removed).

The API process starts the child again whenever it exits otherwise.
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
from collections.abc import Iterator
from multiprocessing.connection import Connection

from prometheus_client.core import Metric

from services.publisher import PUBLISHER_METRICS, Publisher, PublisherView

log = logging.getLogger("crm.publisher")

POSITION = struct.Struct("q")
FOLLOW_SECONDS = 0.02  # how often the child looks for commits: the lag it adds at most
ASK_SECONDS = 2.0  # how long /status waits for the child's answer
STOP_SECONDS = 15.0
RESTART_MAX_SECONDS = 30.0
UNAVAILABLE = PublisherView("unavailable", False, 0, 0, 0, None, None, None)


class PublisherProcess:
    """Starts, supervises and stops the child, and answers for it in the API process."""

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self.process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        with tempfile.TemporaryFile() as file:  # unlinked: only the two processes map it
            file.truncate(mmap.PAGESIZE)
            self._page_fd = os.dup(file.fileno())
        self._page = mmap.mmap(self._page_fd, mmap.PAGESIZE)
        self._asking = threading.Lock()
        self._asked = 0
        self._started_at = 0.0

    def start(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            fds = (theirs.fileno(), self._page_fd)
            for_serve = ",".join(map(str, fds))
            process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "publish", "--for-serve", for_serve],
                env={**os.environ, "CRM_NATS_URL": self.nats_url},
                pass_fds=fds,
            )
        with self._asking:  # not while a question is on the way
            if self._conn is not None:
                self._conn.close()  # a dead child's
            self.process, self._conn = process, Connection(ours.detach())
        self._started_at = time.monotonic()

    def saved(self, position: int) -> None:
        """The account writer committed up to `position` (called in its thread)."""
        POSITION.pack_into(self._page, 0, position)

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
                "the publisher process exited with %s; starting it again in %.0f s",
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

    # Answering for the child -----------------------------------------------------------------

    def view(self) -> PublisherView:
        answer = self._ask()
        return UNAVAILABLE if answer is None else answer[0]

    def collect(self) -> Iterator[Metric]:
        """Prometheus: the child's publisher metrics, in the API process's /metrics."""
        answer = self._ask()
        return iter(() if answer is None else answer[1])

    def describe(self) -> list[Metric]:
        return []  # what collect() gives depends on the child: not checked at registration

    def _ask(self) -> tuple[PublisherView, list[Metric]] | None:
        with self._asking:  # one question at a time on the socket
            if self._conn is None or self.process is None or self.process.poll() is not None:
                return None
            self._asked += 1
            try:
                self._conn.send(self._asked)
                while self._conn.poll(ASK_SECONDS):
                    number, view, metrics = self._conn.recv()
                    if number == self._asked:  # not a late answer to an earlier question
                        return view, metrics
            except (OSError, EOFError):  # the child is exiting; the supervisor starts it again
                pass
            return None


# In the child ----------------------------------------------------------------------------------


def serve_parent(fds: str, publisher: Publisher, stop: asyncio.Event) -> None:
    """Runs in the child's event loop: answers the API process and follows its commits in two
    threads, and sets `stop` when the API process says so or is gone."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # the API process stops its child
        signal.signal(signum, signal.SIG_IGN)
    conn_fd, page_fd = (int(fd) for fd in fds.split(","))
    conn = Connection(conn_fd)
    page = mmap.mmap(page_fd, mmap.PAGESIZE)
    loop = asyncio.get_running_loop()
    done = threading.Event()

    def answer() -> None:
        try:
            while (number := conn.recv()) is not None:
                metrics = [family for metric in PUBLISHER_METRICS for family in metric.collect()]
                conn.send((number, publisher.view(), metrics))
        except (EOFError, OSError):  # the API process is gone
            pass
        finally:
            done.set()
            loop.call_soon_threadsafe(stop.set)

    def follow() -> None:
        seen = POSITION.unpack_from(page)[0]
        while not done.wait(FOLLOW_SECONDS):
            if (position := POSITION.unpack_from(page)[0]) != seen:
                seen = position
                publisher.wake_up(position)

    threading.Thread(target=answer, name="answer-crm-serve", daemon=True).start()
    threading.Thread(target=follow, name="follow-commits", daemon=True).start()
