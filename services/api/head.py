"""HEAD on every GET route, as HTTP asks of a general-purpose server (RFC 9110, 9.3.2), and an
`Allow` header that names every method a path takes.

Litestar routes HEAD only to handlers declared for it, so a HEAD to a GET route was a 405:
monitors, link checkers and caches that ask for the headers alone were refused. Here a HEAD
is answered by its path's GET handler, with the status and headers a GET would get (its
Content-Length and ETag too) and no body. Authentication, roles and rate limits see the GET
it is run as; the request's log line and metrics say HEAD.

Litestar's answer to OPTIONS could also leave methods out: where a path's handlers come from
more than one place, it named only some of them (`OPTIONS, PATCH` for an account, which also
answers GET).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.types import Message, Receive, Scope, Send

HEAD_STATE = "head"  # in the scope's state: the request came as a HEAD
END: Message = {"type": "http.response.body", "body": b"", "more_body": False}


class HeadAsGet(Litestar):
    _allowed: dict[str, bytes] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await super().__call__(scope, receive, send)
            return
        # A copy: the server keeps its own scope, by which it too sends a HEAD no body.
        as_get: Any = {**scope, "method": "GET"}
        as_get.setdefault("state", {})[HEAD_STATE] = True
        started = finished = False

        async def send_headers_only(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
                await send(message)
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
                await send(END)

        async def receive_until_answered() -> Message:
            # Once the headers are out the client has all it asked for: a streamed answer (an
            # export) hears a disconnect and stops, rather than making a body no one gets.
            if started:
                return {"type": "http.disconnect"}
            return await receive()

        await super().__call__(as_get, receive_until_answered, send_headers_only)
        if started and not finished:  # a streamed answer stopped by the disconnect
            await send(END)

    def allowed(self, path_template: str) -> bytes | None:
        """The `Allow` value of a route's path: every method of its handlers, HEAD beside GET."""
        if self._allowed is None:
            methods: dict[str, set[str]] = defaultdict(set)
            for route in self.routes:
                if isinstance(route, HTTPRoute):
                    methods[route.path_format] |= set(route.methods)
            self._allowed = {path: _allow(names) for path, names in methods.items()}
        return self._allowed.get(path_template)


def _allow(methods: Iterable[str]) -> bytes:
    """An `Allow` value: the methods, with HEAD wherever GET is."""
    names = {method.strip() for method in methods}
    if "GET" in names:
        names.add("HEAD")
    return ", ".join(sorted(names)).encode()


def method_of(scope: Scope) -> str:
    """The method the client sent (HEAD runs as GET)."""
    return "HEAD" if scope.get("state", {}).get(HEAD_STATE) else scope["method"]


def complete_allow(scope: Scope, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers of an OPTIONS answer or a 405, with an `Allow` naming every method the path
    takes (a 405 found no route, and gets HEAD added beside GET)."""
    app, template = scope.get("app"), scope.get("path_template")
    complete = app.allowed(template) if isinstance(app, HeadAsGet) and template else None
    answer = []
    for name, value in headers:
        if name.lower() == b"allow":
            value = complete or _allow(value.decode("latin-1").split(","))
        answer.append((name, value))
    return answer
