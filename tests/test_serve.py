"""`crm serve` as a user runs it: a real process, real HTTP, data that survives a restart."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from services.cli import _listen
from services.settings import SettingError, Settings
from tests.api.requests import registration
from tests.processes import CrmServe


@contextmanager
def crm_serve(settings: Settings) -> Iterator[str]:
    server = CrmServe(settings)
    try:
        yield server.wait_ready().url
    finally:
        assert server.stop() in (0, -signal.SIGTERM)


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


def test_the_port_crm_serve_checked_is_held_until_uvicorn_serves_on_it():
    # Held and listening from the check on: another server binding as uvicorn does (with
    # SO_REUSEADDR) cannot take it while crm serve starts its workers.
    held = _listen("127.0.0.1", 0, "crm serve")
    assert isinstance(held, socket.socket)
    with held:
        port = held.getsockname()[1]
        with pytest.raises(SettingError, match="Address already in use"):
            _listen("127.0.0.1", port, "crm serve")
