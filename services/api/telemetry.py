"""What every request leaves for operators and tracing: a request id (which the events it
causes record, and the answer echoes), the security headers, Prometheus metrics by route, and
one log line.

The request metrics keep the names and labels of Litestar's Prometheus middleware
(`crm_requests_total`, `crm_request_duration_seconds` by method, route template and status),
but are counted here: that middleware built a Request object and looked up four labelled series
for every request, which cost a command more than its domain logic. Here the series of each
route, method and status are looked up once and kept.
"""

from __future__ import annotations

import logging
import random
import re
import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram

from services.api.head import complete_allow, method_of
from services.logs import log_fields

log = logging.getLogger("crm.requests")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()  # as ASGI servers pass header names
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

# What a browser must not do with a CRM's answers: sniff types, frame them, leak the URL, or
# keep personal data in a cache (shared or its own; no answer is revalidated, so none is kept).
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]

REQUESTS = Counter(
    "crm_requests", "HTTP requests, by route template and status", ["method", "path", "status_code"]
)
DURATION = Histogram(
    "crm_request_duration_seconds",
    "Time to the answer's first byte, by route template and status",
    ["method", "path", "status_code"],
)
COMMANDS = Counter("crm_commands", "Commands accepted, by command", ["command"])
_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_commands: dict[str, Any] = {}


def request_id(scope: Scope) -> str:
    """Keeps a sane client-sent request id (for tracing across services), else makes one."""
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_KEY:
            sent = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(sent):
                return sent
            break
    # 128 random bits from the interpreter's generator (seeded from the OS, again after a
    # fork): unique enough to trace by, and no system call, which on this thread costs a
    # hand-over of the interpreter lock to the account writer and back.
    return f"{random.getrandbits(128):032x}"


class RequestContext:
    """The outermost middleware of every route: gives the request its id and notes when it
    began, before authentication can refuse it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.setdefault("state", {})  # type: ignore[typeddict-item]
        state.setdefault("request_id", request_id(scope))
        state.setdefault("started", time.perf_counter())
        await self.app(scope, receive, send)


async def on_response_start(message: Message, scope: Scope) -> None:
    """A `before_send` hook, so it sees every answer (errors and unknown paths too): echoes
    the request id, adds the security headers, counts the request and an accepted command,
    and writes the request's log line. A coroutine: Litestar runs a plain function hook in a
    worker thread, for every message."""
    if message["type"] != "http.response.start" or scope["type"] != "http":
        return
    state = scope.setdefault("state", {})  # type: ignore[typeddict-item]
    rid = state.get("request_id") or state.setdefault("request_id", request_id(scope))
    status = message["status"]
    method = method_of(scope)
    headers = message.get("headers", ())
    if status == 405 or method == "OPTIONS":
        headers = complete_allow(scope, list(headers))
    message["headers"] = [*headers, (b"x-request-id", rid.encode()), *SECURITY_HEADERS]
    started = state.get("started")
    elapsed = time.perf_counter() - started if started else None
    handler = scope.get("route_handler")
    route = scope.get("path_template") or None
    if handler is not None and route is not None:
        _count(method, route, status, elapsed)
        if method not in SAFE_METHODS and status < 400:
            name = handler.handler_name
            counter = _commands.get(name) or _commands.setdefault(name, COMMANDS.labels(name))
            counter.inc()
    path = scope["path"]
    log_fields(
        log,
        logging.INFO,
        f"{method} {path} {status}",
        {
            "request_id": rid,
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2) if elapsed is not None else None,
            "key": getattr(scope.get("user"), "name", None),
            # Who sent it (behind a proxy, the proxy): a run of 401s is traced to an address.
            "client": (scope.get("client") or (None,))[0],
        },
    )


def _count(method: str, route: str, status: int, elapsed: float | None) -> None:
    key = (method, route, status)
    series = _series.get(key)
    if series is None:
        labels = (method, route, str(status))
        series = _series.setdefault(key, (REQUESTS.labels(*labels), DURATION.labels(*labels)))
    series[0].inc()
    if elapsed is not None:
        series[1].observe(elapsed)
