"""`crm serve` as a user runs it: a real process, real HTTP, data that survives a restart."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import httpx
import nats
import pytest

from services.cli import _listen
from services.nats_server import DEFAULT_PORT, EmbeddedNats, StoreInUse, free_port
from services.settings import SettingError, Settings
from tests.api.requests import registration
from tests.processes import CrmServe, run_crm


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


def test_the_asyncapi_document_of_crm_serve_names_its_embedded_broker(settings):
    with crm_serve(settings) as url:
        servers = httpx.get(f"{url}/asyncapi.json").json()["servers"]
        (server,) = servers.values()

        async def stream_subjects() -> list[str]:
            connection = await nats.connect(f"nats://{server['host']}", connect_timeout=5)
            try:
                return (await connection.jetstream().stream_info("CRM")).config.subjects
            finally:
                await connection.close()

        # A subscriber that reads the document finds the stream where it says.
        assert asyncio.run(stream_subjects()) == ["crm.accounts.>"]


@pytest.mark.parametrize("store", ["sqlite"])
def test_the_request_log_names_the_connections_address_not_one_a_header_claims(settings):
    server = CrmServe(settings).wait_ready()
    try:
        answer = httpx.get(
            f"{server.url}/accounts",
            headers={"X-Forwarded-For": "203.0.113.9", "X-Request-ID": "xff"},
        )
    finally:
        server.stop()

    assert answer.status_code == 200
    (line,) = [line for line in server.log_lines() if line.get("request_id") == "xff"]
    assert line["client"] == "127.0.0.1"


def test_the_port_crm_serve_checked_is_held_until_uvicorn_serves_on_it():
    # Held and listening from the check on: another server binding as uvicorn does (with
    # SO_REUSEADDR) cannot take it while crm serve starts its workers.
    held = _listen("127.0.0.1", 0, "crm serve")
    assert isinstance(held, socket.socket)
    with held:
        port = held.getsockname()[1]
        with pytest.raises(SettingError, match="Address already in use"):
            _listen("127.0.0.1", port, "crm serve")


def test_a_second_crm_serve_on_the_same_data_directory_is_refused(settings):
    # Its embedded broker would write the first one's JetStream store, and corrupt it.
    with crm_serve(settings):
        second = CrmServe(settings)
        status = second.process.wait(timeout=60)
        said = second.log_path.read_text()

    assert status == 2, said
    assert f"CRM_DATA_DIR {settings.data_dir}: another embedded nats-server" in said
    assert "Traceback" not in said


def test_the_store_of_an_embedded_broker_is_free_again_once_it_stopped(tmp_path):
    first = EmbeddedNats(tmp_path / "nats")
    first.start()
    try:
        with pytest.raises(StoreInUse):
            EmbeddedNats(tmp_path / "nats").start()
    finally:
        first.stop()

    again = EmbeddedNats(tmp_path / "nats")
    again.start()
    again.stop()


@contextmanager
def default_port_taken() -> Iterator[None]:
    """Port 4222 taken: by another nats-server on this machine, else by this socket."""
    with socket.socket() as holder:
        with suppress(OSError):
            holder.bind(("127.0.0.1", DEFAULT_PORT))
            holder.listen()
        yield


def test_an_embedded_broker_listens_again_where_it_did_when_4222_is_taken(tmp_path):
    # Given port 4222 taken (by another nats-server here, else by this test)
    with default_port_taken():
        first = EmbeddedNats(tmp_path / "nats")
        first.start()
        first.stop()

        # When it starts again on the same store
        again = EmbeddedNats(tmp_path / "nats")
        again.start()
        again.stop()

    # Then subscribers find it at the URL it printed before
    assert first.port != DEFAULT_PORT
    assert again.url == first.url


async def test_a_subscriber_connected_when_the_embedded_broker_stops_finds_it_again(tmp_path):
    # Given port 4222 taken, and a subscriber connected to the embedded broker
    with default_port_taken():
        first = EmbeddedNats(tmp_path / "nats")
        first.start()
        reconnected = asyncio.Event()

        async def on_reconnect() -> None:
            reconnected.set()

        subscriber = await nats.connect(
            first.url, reconnected_cb=on_reconnect, reconnect_time_wait=0.1
        )
        try:
            # When the broker stops (its side of the connection now waits out TIME-WAIT on
            # its port) and starts again on the same store
            first.stop()
            again = EmbeddedNats(tmp_path / "nats")
            again.start()
            try:
                # Then it listens where it did, and the subscriber is connected again
                assert again.url == first.url
                await asyncio.wait_for(reconnected.wait(), 10)
            finally:
                again.stop()
        finally:
            await subscriber.close()


def test_the_embedded_broker_refuses_more_than_one_replica(settings):
    done = run_crm(settings, "serve", "--port", str(free_port()), CRM_NATS_REPLICAS="3")

    assert done.returncode == 2, done.stderr
    assert "CRM_NATS_REPLICAS 3: the embedded nats-server is one node" in done.stderr


@pytest.mark.parametrize("in_the_way", ["nats", "nats/jetstream"])
def test_an_embedded_broker_that_cannot_store_its_streams_stops_crm_serve_saying_where(
    settings, in_the_way
):
    # A regular file where the broker's store or its JetStream directory would be: as a
    # directory that cannot be written, it keeps the broker from starting.
    settings.data_dir.joinpath(in_the_way).parent.mkdir(parents=True, exist_ok=True)
    settings.data_dir.joinpath(in_the_way).write_text("")

    done = run_crm(settings, "serve", "--port", str(free_port()))

    assert done.returncode == 2, done.stderr  # a setting to fix, not a database to wait for
    *_, line = done.stderr.splitlines()  # crm serve may first say it is in development mode
    assert line.startswith(
        f"CRM_DATA_DIR {settings.data_dir}: the embedded nats-server cannot store its streams "
        f"in {settings.data_dir / 'nats'}: "
    )
    assert "Traceback" not in done.stderr
    assert "CRM listening" not in done.stdout


def _answer_to(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        try:
            raw.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole head was sent
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize("store", ["sqlite"])  # the HTTP server's own limit; no store involved
def test_a_request_whose_line_and_headers_pass_64_kib_is_refused_with_431(settings):
    """Nobody needs a key to send headers: with no limit, a client could make the server hold
    and parse a head of any size (100 MB took it 12 s), and many such clients its memory."""
    server = CrmServe(settings).wait_ready()
    try:
        huge = _answer_to(
            server.port,
            b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 4_000_000 + b"\r\n\r\n",
        )
        # Each head refused is over 256 KiB, the most one read takes: a head that arrives
        # whole in one read is parsed whatever its size (services/request_head.py).
        many = _answer_to(
            server.port,
            b"GET /health HTTP/1.1\r\nHost: localhost\r\n" + b"X-A: b\r\n" * 40_000 + b"\r\n",
        )
        long_url = _answer_to(
            server.port,
            b"GET /health?" + b"a=1&" * 250_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        fine = _answer_to(
            server.port,
            b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: "
            + b"a" * 32_000
            + b"\r\n\r\n",
        )
    finally:
        assert server.stop() in (0, -signal.SIGTERM)

    for refused in (huge, many, long_url):
        status, _, rest = refused.partition(b"\r\n")
        assert status == b"HTTP/1.1 431 Request Header Fields Too Large", refused[:200]
        assert b"content-type: application/problem+json" in rest
        assert b'"status":431' in rest
    assert fine.startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("store", ["sqlite"])  # the HTTP server's own answer; no store involved
def test_a_request_that_is_not_http_is_refused_as_a_problem(settings):
    """uvicorn answered these in plain text, unlike every other refusal the API makes."""
    server = CrmServe(settings).wait_ready()
    try:
        answers = [
            _answer_to(server.port, head)
            for head in (
                b"BREW /health HTTP/1.1\r\nHost: localhost\r\n\r\n",  # a method HTTP does not have
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # TLS spoken to plain HTTP
                b"GET /health HTTP/1.1\r\nHost x\r\n\r\n",  # a header without its colon
                b"POST /accounts HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",  # no chunk size
            )
        ]
        after = _answer_to(server.port, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
    finally:
        assert server.stop() in (0, -signal.SIGTERM)

    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request"), answer[:200]
        assert b"content-type: application/problem+json" in head
        assert b"connection: close" in head
        problem = json.loads(body)
        assert problem["status"] == 400
        assert problem["type"] == "urn:crm:problem:malformed-request"
    assert after.startswith(b"HTTP/1.1 200 OK")  # the server goes on serving
