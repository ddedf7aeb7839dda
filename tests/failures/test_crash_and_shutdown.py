"""`crm serve` killed with SIGKILL while many clients write, and stopped with SIGTERM while a
request is in flight: nothing acknowledged is lost, nothing refused is stored, nothing is
half-stored, and a stop lets the request finish."""

from __future__ import annotations

import os
import signal
import socket
import threading
import uuid

import httpx
import psutil

from tests.api.requests import registration
from tests.processes import CrmServe

WRITERS = 12
ACCOUNTS = 12
ACKNOWLEDGED_BEFORE_KILL = 150


def _rating(n: int) -> dict[str, int]:
    return {"budget": 1 + n % 5, "authority": 1 + (n // 5) % 5, "need": 3, "timing": 2}


class Writers:
    """Clients that re-rate accounts until the server goes; each request has its own id."""

    def __init__(self, url: str, accounts: list[str]) -> None:
        self.url = url
        self.accounts = accounts
        self.acknowledged: set[str] = set()
        self.refused: set[str] = set()
        self.enough = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._write, args=(i,), daemon=True) for i in range(WRITERS)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)

    def _write(self, writer: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for n in range(100_000):
                account = self.accounts[(writer + n) % len(self.accounts)]
                request_id = uuid.uuid4().hex
                headers = {"X-Request-ID": request_id}
                if n % 7 == 0:
                    headers["If-Match"] = '"100000"'  # a version it is not at: refused
                try:
                    answer = client.put(
                        f"/accounts/{account}/bant", json=_rating(n), headers=headers
                    )
                except httpx.TransportError:
                    return  # the server is gone; this request's fate is unknown
                with self.lock:
                    if answer.status_code < 300:
                        self.acknowledged.add(request_id)
                    elif answer.status_code in (409, 412, 422):
                        self.refused.add(request_id)
                    if len(self.acknowledged) >= ACKNOWLEDGED_BEFORE_KILL:
                        self.enough.set()


def test_a_killed_server_keeps_every_acknowledged_command_and_no_refused_one(settings):
    server = CrmServe(settings).wait_ready()
    accounts = []
    for i in range(ACCOUNTS):
        created = httpx.post(f"{server.url}/accounts", json=registration(domain=f"k{i}.com"))
        accounts.append(created.json()["id"])
        httpx.post(f"{server.url}/accounts/{accounts[-1]}/screening", json={"outcome": "qualified"})
    writers = Writers(server.url, accounts)
    writers.start()
    assert writers.enough.wait(120), "the writers were not acknowledged in time"

    server.kill()  # SIGKILL, while the writers are still writing
    writers.join()
    server = CrmServe(settings).wait_ready()
    try:
        stored: dict[str, list[dict]] = {}
        for account in accounts:
            history = httpx.get(
                f"{server.url}/accounts/{account}/history", params={"limit": 1000}
            ).json()["items"]
            for event in history:
                stored.setdefault(event["request_id"], []).append(event)
            audit = httpx.get(f"{server.url}/accounts/{account}/audit").json()
            assert audit["verified"], audit
            rated = [e for e in history if e["type"] == "bant_scored"]
            moved = [e for e in history if e["type"] == "stage_changed"]
            # The first rating prioritises the account: both events, or neither, were stored.
            assert [e["request_id"] for e in moved] == [rated[0]["request_id"]]
    finally:
        server.stop()

    assert writers.acknowledged <= stored.keys(), "an acknowledged command was lost"
    assert not writers.refused & stored.keys(), "a refused command was stored"
    assert len(writers.acknowledged) >= ACKNOWLEDGED_BEFORE_KILL


def test_sigterm_lets_the_request_in_flight_finish_and_stops_the_workers(settings):
    server = CrmServe(settings, CRM_READ_WAIT_SECONDS="3").wait_ready()
    children = psutil.Process(server.process.pid).children()
    assert sorted(_role(p) for p in children) == ["nats-server", "project", "publish"]

    # A read that waits (up to 3 s) for a position the projector, stopped, does not reach: in
    # flight on purpose.
    projector = next(p for p in children if _role(p) == "project")
    projector.suspend()
    written = httpx.post(f"{server.url}/accounts", json=registration())
    position = written.headers["crm-position"]
    waiting = socket.create_connection(("127.0.0.1", server.port))
    waiting.sendall(
        f"GET /accounts?min_position={position} HTTP/1.1\r\n".encode()
        + b"Host: localhost\r\nConnection: close\r\n\r\n"
    )
    # Connections are accepted and read in order: once a later request is answered, the
    # waiting one has been read and is being handled.
    assert httpx.get(f"{server.url}/health").status_code == 200
    server.process.send_signal(signal.SIGTERM)
    projector.resume()  # so that it can stop when crm serve stops it

    answer = _read_all(waiting)
    status = server.process.wait(timeout=30)

    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert status == 0, server.log_tail()  # a shutdown asked for and done, not a failure
    assert psutil.wait_procs(children, timeout=15)[1] == [], "a child outlived crm serve"


def test_a_killed_server_takes_its_embedded_broker_projector_and_publisher_with_it(settings):
    server = CrmServe(settings).wait_ready()
    children = psutil.Process(server.process.pid).children()
    assert sorted(_role(p) for p in children) == ["nats-server", "project", "publish"]

    server.kill()

    assert psutil.wait_procs(children, timeout=15)[1] == [], "a child was orphaned"


def test_ctrl_c_stops_crm_serve_and_its_children_once_without_restarting_the_broker(settings):
    # As a terminal's Ctrl-C (or a supervisor signalling the group): SIGINT to the whole group.
    server = CrmServe(settings, own_session=True, CRM_LOG_FORMAT="json").wait_ready()
    children = psutil.Process(server.process.pid).children()
    assert sorted(_role(p) for p in children) == ["nats-server", "project", "publish"]
    # Every child is out of the group: only crm serve stops them, the broker after the
    # publisher's last batch; and a child still starting, not yet ignoring the signal, is spared.
    assert os.getpgid(server.process.pid) not in {os.getpgid(p.pid) for p in children}

    os.killpg(server.process.pid, signal.SIGINT)
    status = server.process.wait(timeout=30)

    assert status == 0, server.log_tail()
    assert psutil.wait_procs(children, timeout=15)[1] == [], "a child outlived crm serve"
    complaints = [line for line in server.log_lines() if line.get("level") != "info"]
    assert complaints == [], complaints
    assert "Traceback" not in server.log_tail()


def _role(process: psutil.Process) -> str:
    """nats-server, or the `crm` command a Python child runs."""
    if process.name() == "nats-server":
        return "nats-server"
    return process.cmdline()[process.cmdline().index("services.cli") + 1]


def _read_all(connection: socket.socket) -> bytes:
    connection.settimeout(30)
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    connection.close()
    return b"".join(chunks)
