"""What a request sends that its route would ignore is refused rather than ignored: a
misspelt filter (`?industy=`) would otherwise answer every account, as if it had matched, and
a body sent where none is read (a DELETE's reason, which goes in `?reason=`) would be lost."""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from litestar import Litestar, Request

from services.api.documentation import RAW_BODY
from services.api.problems import invalid_field

QUERY = "query_parameters"  # handler opt: the names its route takes, noted at start
TAKES_BODY = "takes_body"  # handler opt: it reads a request body, noted at start


def note_what_routes_take(app: Litestar) -> None:
    """Notes on each handler the query parameters Litestar resolves for it (its own and its
    dependencies'), which of them may repeat, and whether it reads a body."""
    for route in app.routes:
        for handler, model in getattr(route, "route_handler_map", {}).values():
            names = frozenset(p.field_alias for p in model.expected_query_params)
            handler.opt[QUERY] = (names, frozenset(model.sequence_query_parameter_names))
            handler.opt[TAKES_BODY] = (
                "data" in handler.parsed_fn_signature.parameters or RAW_BODY in handler.opt
            )


def refuse_unknown_query_parameters(request: Request[Any, Any, Any]) -> None:
    query = request.scope["query_string"]
    if not query:
        return
    names, repeatable = request.route_handler.opt.get(QUERY, (frozenset(), frozenset()))
    problem = _query_problem(query, names, repeatable)
    if problem is not None:
        raise invalid_field(*problem, 400)


async def refuse_unread_body(request: Request[Any, Any, Any]) -> None:
    if request.route_handler.opt.get(TAKES_BODY, True):
        return
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            sent = value.strip() != b"0"
            break
        if name == b"transfer-encoding":  # chunked: a client or proxy that streams sends no
            sent = bool(await request.body())  # length, even for an empty body
            break
    else:
        return
    if sent:
        detail = "This request takes no body: what it takes goes in its path and query string."
        raise invalid_field("body", detail, 400)


@lru_cache(1024)  # as Litestar parses query strings: a page asked for again is not parsed again
def _query_problem(
    query: bytes, names: frozenset[str], repeatable: frozenset[str]
) -> tuple[str, str] | None:
    """The first parameter of `query` the route does not take, or takes once but is given
    again, and why; None when the route takes them all."""
    seen = set()
    for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name not in names:
            takes = ", ".join(sorted(names)) or "none"
            return name, f"Unknown query parameter {name!r}; this route takes: {takes}."
        if name in seen and name not in repeatable:
            return name, f"The query parameter {name!r} is given more than once."
        seen.add(name)
    return None
