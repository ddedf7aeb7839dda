"""`crm` commands as real processes, for tests that restart or kill them.

Each process writes its standard error (its JSON log lines) to a file the test can read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from services.nats_server import free_port
from services.settings import Settings

ROOT = Path(__file__).parent.parent


def crm_environment(settings: Settings, **env: str) -> dict[str, str]:
    environment = {**os.environ, "CRM_DATA_DIR": str(settings.data_dir), **env}
    if settings.database_url:
        environment |= {
            "CRM_DATABASE_URL": settings.database_url,
            "CRM_DATABASE_SCHEMA": settings.database_schema,
        }
    return environment


def run_crm(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`crm <args>` run to its end in a process of its own, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=crm_environment(settings, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


class CrmProcess:
    """`python -m services.cli <args>`, its log lines in `log_path`."""

    started: list[CrmProcess] = []  # killed after each test if still running (kill_leftovers)

    def __init__(
        self,
        settings: Settings,
        *args: str,
        log_path: Path | None = None,
        own_session: bool = False,  # a process group of its own, to signal as a terminal does
        **env: str,
    ):
        default = Path(settings.data_dir).parent / f"crm-{time.monotonic_ns()}.log"
        self.log_path = log_path or default
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *args],
                env=crm_environment(settings, **env),
                cwd=ROOT,
                stderr=log,
                start_new_session=own_session,
            )
        CrmProcess.started.append(self)

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (other lines, such as a banner, are skipped)."""
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    pass  # a line cut short by a kill
        return lines

    def logged(self, message: str) -> bool:
        return any(line.get("message") == message for line in self.log_lines())

    def wait_logged(self, message: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not self.logged(message):
            assert self.process.poll() is None, f"exited early:\n{self.log_path.read_text()}"
            assert time.monotonic() < deadline, f"never logged {message!r}"
            time.sleep(0.05)  # polling a log file another process writes

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=15)

    @classmethod
    def kill_leftovers(cls) -> None:
        """Kills what a test left running, an assertion failing before its `stop()`: a server
        left so would use CPU and ports for the rest of the run (its children go with it)."""
        while cls.started:
            if (crm := cls.started.pop()).process.poll() is None:
                crm.kill()

    def stop(self) -> int:
        """SIGTERM, then the exit status (0 once `crm serve` has shut down; -SIGTERM for a
        process killed before it handles the signal)."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=30)


class CrmServe(CrmProcess):
    def __init__(
        self, settings: Settings, *args: str, own_session: bool = False, **env: str
    ) -> None:
        self._args = (settings, args, own_session, env)
        self._start()

    def _start(self) -> None:
        settings, args, own_session, env = self._args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            settings, "serve", "--port", str(self.port), *args, own_session=own_session, **env
        )

    def wait_ready(self, seconds: float = 30) -> CrmServe:
        deadline = time.monotonic() + seconds
        said = "nothing"
        while True:
            if self.process.poll() is not None:
                taken = f"cannot listen on 127.0.0.1:{self.port}" in self.log_tail()
                if taken and time.monotonic() < deadline:
                    # Another socket took the free port before the server bound it.
                    self._start()
                    continue
                raise AssertionError(f"crm serve exited early:\n{self.log_tail()}")
            try:
                answer = httpx.get(f"{self.url}/ready", timeout=1)
                if answer.status_code == 200:
                    return self
                said = answer.text
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (
                f"not ready in time; /ready said {said}:\n{self.log_tail(but='/ready')}"
            )
            time.sleep(0.1)  # polling a starting process; readiness is checked, not assumed

    def log_tail(self, lines: int = 30, but: str | None = None) -> str:
        """The last lines of the log, but those that name `but` (the polls of a wait)."""
        kept = [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if but is None or but not in line
        ]
        return "\n".join(kept[-lines:])


def children_named(pid: int, name: str) -> list[tuple[int, list[str]]]:
    """The child processes of `pid` running `name`, with their command lines."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue  # a process that ended meanwhile
        if int(fields[1]) == pid and Path(cmdline[0]).name == name:
            found.append((int(stat.parent.name), cmdline))
    return found


def crm_child(pid: int, command: str) -> int:
    """The pid of `crm serve`'s child running `crm <command>`."""
    python = Path(sys.executable).name
    (found,) = [p for p, cmdline in children_named(pid, python) if command in cmdline]
    return found
