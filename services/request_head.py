"""A bound on the head of a request (its line and headers), which uvicorn's httptools server
does not set: it held and parsed a header of any size, before authentication could refuse
the request, so a client without a key could make it spend seconds and memory on one request.

The count is of the bytes of the reads that leave a head unfinished: a head that arrives whole
in one read (asyncio reads up to 256 KiB at a time) is parsed whatever its size, as part of
that read may be the body. A read that ended a request (its body) and began the next one's
head is not counted either, since only part of it is that head: a client that sends its
requests without waiting for the answers (pipelining) may pass the bound by that one read.
Either way the head held stays within a read of the bound.

A head past the bound is answered 431, and the rest of the request read and dropped until the
client closes the connection (or for LINGER_SECONDS): closed at once, with the client's bytes
still arriving, the connection would be reset, which can lose the answer before it is read.

A request that is not HTTP/1.1 at all (an unknown method, a broken request line, header or
chunked body) is answered 400 in the same way, as a problem like every other refusal, where
uvicorn answered it in plain text.

Time is bounded too, which uvicorn leaves to a proxy: it waited for ever for a connection's
first request, for the rest of a head, and for a body the application reads. So a client
without a key could hold connections, each a file descriptor, until the server had none left.
A head must arrive whole within HEAD_SECONDS of the connection (or of its first byte, on a
connection kept alive), else it is answered 408 (a connection that sent nothing is closed);
a body may pause for at most BODY_PAUSE_SECONDS, else the connection is closed and the
application told the client went away.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from services.api.telemetry import SECURITY_HEADERS

LINGER_SECONDS = 5
HEAD_SECONDS = 20.0  # as a slow mobile link may need; nginx allows 60 between two reads
BODY_PAUSE_SECONDS = 60.0  # nginx's client_body_timeout
# More than a browser or a proxy sends (nginx refuses a header line over 8 KiB by default), and
# than any URL this API takes.
MAX_HEAD_BYTES = 64 * 1024


def _problem(status: int, kind: str, title: str, detail: str) -> bytes:
    """The body of a refusal this protocol answers itself, as the API's problems read."""
    return msgspec.json.encode(
        {"status": status, "type": f"urn:crm:problem:{kind}", "title": title, "detail": detail}
    )


_TOO_LARGE = _problem(
    431,
    "request-header-fields-too-large",
    "Request Header Fields Too Large",
    f"The request line and headers may hold at most {MAX_HEAD_BYTES} bytes.",
)
_NOT_HTTP = _problem(
    400,
    "malformed-request",
    "Malformed request",
    "The request could not be read as HTTP/1.1: its method, request line, a header or its "
    "chunked body is malformed.",
)
_TOO_SLOW = _problem(
    408,
    "request-timeout",
    "Request Timeout",
    f"The request line and headers did not arrive within {HEAD_SECONDS:g} s.",
)


class BoundedHead(HttpToolsProtocol):
    """uvicorn's httptools protocol (`http=` of its Config), with heads bounded in size and
    time, and bodies in how long they may pause."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False  # between a request's first byte and the end of its headers
        self._in_body = False  # between the end of its headers and the end of its body
        self._ended_in_this_read = False
        self._refused = False
        self._head_bytes = 0
        # What the connection waits for from the client, as the seconds allowed (None: nothing,
        # as while the application answers), and since when. A request sets them; a check
        # every few seconds acts on them, as a timer a request would cost every request time.
        self._allowed: float | None = HEAD_SECONDS
        self._since = 0.0
        self._check: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._since = self.loop.time()  # a first request's head is due from the connection
        self._look_again()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._check is not None:
            self._check.cancel()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        if self._allowed is None:  # kept alive: the head's time starts with its first byte
            self._allowed, self._since = HEAD_SECONDS, self.loop.time()

    def on_headers_complete(self) -> None:
        self._in_head, self._in_body = False, True
        self._allowed, self._since = BODY_PAUSE_SECONDS, self.loop.time()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body, self._allowed = False, None
        cycle = self.cycle
        if cycle is not None and cycle.response_complete:
            # Answered before its body ended (a 401 reads none): uvicorn armed its keep-alive
            # timer with the answer, and the body's bytes cancelled it. The connection waits
            # for a next request now, and that wait has a deadline as a new connection's has.
            self._allowed, self._since = HEAD_SECONDS, self.loop.time()
        super().on_message_complete()
        self._ended_in_this_read = True

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._ended_in_this_read = False
        if self._in_body:
            self._since = self.loop.time()  # a pause is counted from the last bytes
        super().data_received(data)
        if not self._in_head or self._ended_in_this_read:
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self.logger.warning("Request head over %d bytes refused.", MAX_HEAD_BYTES)
            self._refuse(431, _TOO_LARGE)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what its parser cannot read (it has logged `msg`)."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:  # only closing the connection can still tell the client
                super().send_400_response(msg)
                return
            # A body that breaks off (bad chunking) while the app reads it: the app is told
            # the client went away, as when it does, and what it answers is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self._refuse(400, _NOT_HTTP)

    def _look_again(self) -> None:
        # A deadline is kept within a quarter of its length: late by at most that.
        every = min(HEAD_SECONDS, BODY_PAUSE_SECONDS) / 4
        self._check = self.loop.call_later(every, self._look)

    def _look(self) -> None:
        if self._refused or self.transport.is_closing():
            return
        allowed = self._allowed
        if allowed is None or self.loop.time() - self._since <= allowed:
            self._look_again()
        elif self._in_head and self.cycle is not None and not self.cycle.response_complete:
            self._look_again()  # sent after a request still being answered: that answer first
        elif self._in_head:
            self.logger.warning("Request head not whole within %g s refused.", HEAD_SECONDS)
            self._refuse(408, _TOO_SLOW)
        else:  # no request yet, or a body that stopped: nothing an answer would reach
            self.transport.close()

    def _refuse(self, status: int, problem: bytes) -> None:
        self._in_head, self._in_body, self._refused = False, False, True
        headers = [
            *self.server_state.default_headers,  # Date, as on every other answer
            (b"content-type", b"application/problem+json"),
            (b"content-length", b"%d" % len(problem)),
            (b"connection", b"close"),
            *SECURITY_HEADERS,
        ]
        head = b"".join(b"%s: %s\r\n" % header for header in headers)
        self.transport.write(STATUS_LINE[status] + head + b"\r\n" + problem)
        self.transport.write_eof()  # the client reads the answer, then the end of it
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
