"""One active worker of a kind (projector, publisher) per store, however many are started.

Each worker takes a named lock before it works and stands by while another holds it. The lock
belongs to the process, not to a lease: on PostgreSQL it is a session advisory lock on a
connection of its own, on SQLite an exclusive `flock` on a file beside the data file. Either is
released by the operating system or the server the moment its holder dies, so a standby takes
over within its retry interval, and nothing has to expire first.

The active worker checks five times a second that it still holds the lock (a PostgreSQL
connection can be cut, a lock file removed); when it does not, it stops working and stands by
again. A background job takes a lock of its own the same way, and checks it before each chunk
of rows or accounts it stores.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from services.settings import Settings
from services.sockets import readable

log = logging.getLogger("crm.leadership")

RETRY_SECONDS = 1.0
CHECK_SECONDS = 0.2
# A PostgreSQL lock can outlive its holder's knowledge of it: when the server cuts the holder's
# connection, the lock is free at once, but the holder learns it only at its next check. So a
# new holder waits out a few checks before it works, and the two never overlap.
TAKEOVER_GRACE_SECONDS = 3 * CHECK_SECONDS


def lock_key(schema: str, name: str) -> int:
    """A signed 64-bit advisory-lock key, distinct per schema and worker kind."""
    digest = hashlib.blake2b(f"crm:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Leadership:
    """The lock for one kind of worker; `acquire` blocks until it is ours (or we stop)."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.name = name
        self._url = settings.database_url
        self._key = lock_key(settings.database_schema, name)
        self._path = settings.data_dir / f"{name}.lock"
        self._held: Any = None  # the connection or the open file that holds the lock
        self.standing_by = False  # the lock was asked for and another process holds it

    @property
    def active(self) -> bool:
        return self._held is not None

    def acquire(self, stopping: Callable[[], bool], retry: float = RETRY_SECONDS) -> bool:
        """Waits for the lock; False if `stopping()` turned true first."""
        announced = False
        while not stopping():
            try:
                self.standing_by = not self.try_acquire()
                if not self.standing_by:
                    if not self.settle(stopping):
                        return False
                    log.info("%s: active", self.name)
                    return True
            except Exception as exc:  # the store is down: stand by and try again
                self.standing_by = False  # not for another process: for the store
                log.warning("%s: cannot take the lock: %s", self.name, type(exc).__name__)
            if not announced:
                log.info("%s: standing by while another process is active", self.name)
                announced = True
            _pause(stopping, retry)
        return False

    def settle(self, stopping: Callable[[], bool]) -> bool:
        """Once the lock is taken, on PostgreSQL, waits out the checks of a holder that lost it
        without knowing yet; False (the lock given back) if `stopping()` turned true first."""
        if self._url is not None:
            _pause(stopping, TAKEOVER_GRACE_SECONDS)
            if stopping():
                self.release()
                return False
        return True

    def held(self) -> bool:
        """Whether the lock is still ours (False once its connection is gone)."""
        if self._held is None:
            return False
        if self._url is None:
            # A flock lasts as long as its open file, but is the one the others ask for only
            # while the file is still at its path: removed, the next to ask makes a new one.
            try:
                at_path, ours = os.stat(self._path), os.fstat(self._held.fileno())
                if (at_path.st_dev, at_path.st_ino) == (ours.st_dev, ours.st_ino):
                    return True
            except OSError:  # removed
                pass
            self.release()
            return False
        try:
            # Until its socket is readable the session, and so the lock, stands: no round trip
            # is needed to know it, as a job asks before each chunk. Anything the server did
            # say is read, and the session asked once.
            if not readable(self._held.fileno()):
                return True
            self._held.execute("SELECT 1").fetchone()
            return True
        except Exception:
            self.release()
            return False

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        try:
            held.close()  # closing the connection or the file releases the lock
        except Exception:  # already broken: nothing left to release
            pass

    def discard(self) -> None:
        """Removes the lock's file (on SQLite) once its name will not be asked for again, as a
        job's when it has ended; a process that opened it before then takes a lock on the
        removed file, alone, and finds the job ended."""
        if self._url is None:
            self._path.unlink(missing_ok=True)

    def try_acquire(self) -> bool:
        """Takes the lock if it is free, without waiting."""
        if self._url is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            file = open(self._path, "a+")  # noqa: SIM115 (held open for as long as we lead)
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.close()
                return False
            file.seek(0)
            file.truncate()
            file.write(f"{os.getpid()}\n")
            file.flush()
            self._held = file
            return True
        import psycopg

        conn = psycopg.connect(
            self._url,
            autocommit=True,
            connect_timeout=2,
            application_name=f"crm-{self.name}",
            # A holder whose machine vanishes must not keep the lock: the server drops it.
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        if row and row[0]:
            self._held = conn
            return True
        conn.close()
        return False


def _pause(stopping: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stopping() and time.monotonic() < deadline:
        time.sleep(0.05)  # `stopping` may be an asyncio event's: it cannot be waited on here


def lead_in_thread(
    leadership: Leadership, stop: threading.Event, work: Callable[[threading.Event], None]
) -> None:
    """Runs `work(until)` whenever the lock is ours; `until` is set on stop or when it is lost."""
    while leadership.acquire(stop.is_set):
        until = threading.Event()

        def watch(until: threading.Event = until) -> None:
            while not until.is_set():
                if stop.wait(CHECK_SECONDS) or not leadership.held():
                    if not stop.is_set():
                        log.warning("%s: lost the lock; standing by", leadership.name)
                    until.set()

        watcher = threading.Thread(target=watch, name=f"{leadership.name}-lock", daemon=True)
        watcher.start()
        try:
            work(until)
        finally:
            until.set()
            watcher.join()
            leadership.release()


async def lead_in_loop(
    leadership: Leadership,
    stop: asyncio.Event,
    work: Callable[[asyncio.Event], Awaitable[None]],
) -> None:
    """The same for a coroutine: `work(until)` runs while the lock is ours."""
    while await asyncio.to_thread(leadership.acquire, stop.is_set):
        until = asyncio.Event()

        async def watch(until: asyncio.Event = until) -> None:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), CHECK_SECONDS)
                except TimeoutError:
                    pass
                if not stop.is_set() and not await asyncio.to_thread(leadership.held):
                    log.warning("%s: lost the lock; standing by", leadership.name)
                    break
            until.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await work(until)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            leadership.release()
