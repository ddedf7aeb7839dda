"""Query parameters a route does not take, or takes once, are refused rather than ignored:
a misspelt filter (`?industy=`) would otherwise answer every account, as if it had matched."""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from litestar import Litestar, Request

from services.api.problems import invalid_field

QUERY = "query_parameters"  # handler opt: the names its route takes, noted at start


def note_query_parameters(app: Litestar) -> None:
    """Notes on each handler the query parameters Litestar resolves for it (its own and its
    dependencies'), and which of them may repeat."""
    for route in app.routes:
        for handler, model in getattr(route, "route_handler_map", {}).values():
            names = frozenset(p.field_alias for p in model.expected_query_params)
            handler.opt[QUERY] = (names, frozenset(model.sequence_query_parameter_names))


def refuse_unknown_query_parameters(request: Request[Any, Any, Any]) -> None:
    query = request.scope["query_string"]
    if not query:
        return
    names, repeatable = request.route_handler.opt.get(QUERY, (frozenset(), frozenset()))
    problem = _query_problem(query, names, repeatable)
    if problem is not None:
        raise invalid_field(*problem, 400)


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
