"""`crm serve` as a user runs it: a real process, real HTTP, data that survives a restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from services.settings import Settings
from tests.api.requests import registration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def crm_serve(settings: Settings) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "CRM_DATA_DIR": str(settings.data_dir)}
    if settings.database_url:
        env |= {
            "CRM_DATABASE_URL": settings.database_url,
            "CRM_DATABASE_SCHEMA": settings.database_schema,
        }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "crm serve exited early"
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "crm serve did not become ready"
            time.sleep(0.1)  # polling a starting process; readiness is checked, not assumed
        yield url
    finally:
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells it.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)


def test_crm_serve_keeps_what_it_acknowledged_across_a_restart(settings):
    with crm_serve(settings) as url:
        created = httpx.post(f"{url}/accounts", json=registration())
        assert created.status_code == 201
        location = created.headers["location"]
        screened = httpx.post(f"{url}{location}/screening", json={"outcome": "qualified"})
        assert screened.status_code == 200

    with crm_serve(settings) as url:
        again = httpx.get(f"{url}{location}")
        assert again.status_code == 200
        assert again.json() == screened.json()
        assert httpx.get(f"{url}/schema").status_code == 200
