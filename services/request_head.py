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
"""

from __future__ import annotations

from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from services.api.telemetry import SECURITY_HEADERS

LINGER_SECONDS = 5
# More than a browser or a proxy sends (nginx refuses a header line over 8 KiB by default), and
# than any URL this API takes.
MAX_HEAD_BYTES = 64 * 1024

_TOO_LARGE = msgspec.json.encode(
    {
        "status": 431,
        "type": "urn:crm:problem:request-header-fields-too-large",
        "title": "Request Header Fields Too Large",
        "detail": f"The request line and headers may hold at most {MAX_HEAD_BYTES} bytes.",
    }
)
_NOT_HTTP = msgspec.json.encode(
    {
        "status": 400,
        "type": "urn:crm:problem:malformed-request",
        "title": "Malformed request",
        "detail": "The request could not be read as HTTP/1.1: its method, request line, a "
        "header or its chunked body is malformed.",
    }
)


class BoundedHead(HttpToolsProtocol):
    """uvicorn's httptools protocol (`http=` of its Config), with heads bounded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False  # between a request's first byte and the end of its headers
        self._ended_in_this_read = False
        self._refused = False
        self._head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._ended_in_this_read = True

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._ended_in_this_read = False
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

    def _refuse(self, status: int, problem: bytes) -> None:
        self._in_head, self._refused = False, True
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
