"""A client without a key cannot hold the server's connections by being slow: the head of a
request has a deadline, and a body may pause only so long (services/request_head.py). Run on
uvicorn with the CRM's protocol, its deadlines shortened, and an application that reads the
body and answers slowly, as a report may."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn

from services import request_head
from services.request_head import BoundedHead

DEADLINE = 0.5  # seconds, for the head and for a pause in a body
told: list[str] = []  # what the application learnt of each request
telling = threading.Condition()


def tell(what: str) -> None:
    with telling:
        told.append(what)
        telling.notify_all()


def told_at_least(count: int) -> list[str]:
    """What the application was told, once it was told `count` things (the server's thread
    may learn of a closed connection after the client has seen it closed)."""
    with telling:
        assert telling.wait_for(lambda: len(told) >= count, timeout=10 * DEADLINE), told
        return list(told)


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/early":  # answered before its body is read, as a 401 is
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            tell("disconnected")
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await asyncio.sleep(3 * DEADLINE)  # answering takes longer than any deadline
    tell(f"answered {len(body)}")
    answer = b"%d" % len(body)
    headers = [(b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def port(monkeypatch) -> Iterator[int]:
    monkeypatch.setattr(request_head, "HEAD_SECONDS", DEADLINE)
    monkeypatch.setattr(request_head, "BODY_PAUSE_SECONDS", DEADLINE)
    told.clear()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=BoundedHead, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]})
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            threading.Event().wait(0.01)  # polling uvicorn's flag: it offers no event
        yield listening.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        listening.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10 * DEADLINE)


def read_all(conn: socket.socket) -> bytes:
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
    return answer


def test_a_connection_that_sends_nothing_is_closed(port):
    with connect(port) as idle:
        assert read_all(idle) == b""  # closed by the server, not by the 5 s socket timeout


def test_a_head_that_does_not_arrive_whole_in_time_is_answered_408(port):
    with connect(port) as slow:
        slow.sendall(b"GET /reports HTTP/1.1\r\nHost: x\r\n")  # and the rest never comes

        head, _, body = read_all(slow).partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"content-type: application/problem+json" in head
    assert json.loads(body)["type"] == "urn:crm:problem:request-timeout"
    assert told == []


def test_a_body_that_stops_closes_the_connection_and_the_application_is_told(port):
    with connect(port) as slow:
        slow.sendall(
            b"POST /imports HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"a" * 10
        )

        assert read_all(slow) == b""

    assert told_at_least(1) == ["disconnected"]


def test_requests_sent_in_time_are_answered_however_long_the_answer_takes(port):
    with connect(port) as client:
        for body in (b"", b"x" * 70_000):  # the second on the connection kept alive
            client.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            answer = client.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK"), answer
            assert answer.endswith(b"%d" % len(body))

    assert told_at_least(2) == ["answered 0", "answered 70000"]


def test_a_connection_answered_before_its_body_came_is_closed_once_idle(port):
    with connect(port) as client:
        client.sendall(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        assert client.recv(65536).startswith(b"HTTP/1.1 401")
        client.sendall(b"a" * 10)  # the body, after the answer, then nothing

        assert read_all(client) == b""  # closed, not held open for ever


def test_a_late_head_sent_after_a_request_being_answered_lets_that_answer_through(port):
    with connect(port) as client:
        client.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\n"  # and the rest of this head never comes
        )

        answers = read_all(client)

    assert answers.startswith(b"HTTP/1.1 200 OK"), answers
    assert told_at_least(1) == ["answered 0"]
