"""`crm serve` as a real process on a free loopback port, for tests that restart or kill it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.nats_server import free_port
from services.settings import Settings

ROOT = Path(__file__).parent.parent


class CrmServe:
    def __init__(self, settings: Settings, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, "CRM_DATA_DIR": str(settings.data_dir), **env}
        if settings.database_url:
            environment |= {
                "CRM_DATABASE_URL": settings.database_url,
                "CRM_DATABASE_SCHEMA": settings.database_schema,
            }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "--port", str(self.port)],
            env=environment,
            cwd=ROOT,
        )

    def wait_ready(self, seconds: float = 30) -> CrmServe:
        deadline = time.monotonic() + seconds
        while True:
            assert self.process.poll() is None, "crm serve exited early"
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "crm serve did not become ready"
            time.sleep(0.1)  # polling a starting process; readiness is checked, not assumed

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=15)

    def stop(self) -> int:
        """SIGTERM, then the exit status (uvicorn re-raises the signal after its shutdown)."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=30)
