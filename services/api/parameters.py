"""What a request sends that its route would ignore is refused rather than ignored: a
misspelt filter (`?industy=`) would otherwise answer every account, as if it had matched, and
a body sent where none is read (a DELETE's reason, which goes in `?reason=`) would be lost.

A filter that names one of a few values (`funnel=see`) is not left out by `null`: Litestar
reads `null` as no value for a parameter that may be none and is not text, which would answer
every account as if `funnel=null` had matched.

A whole number in the path or query string is taken in the digits 0-9 alone. Litestar reads
one in the path with Python's int(), which also takes `1_0` (as 10), `+1`, ` 1` and other
scripts' digits (`٢`), and one in the query string as a JSON number, which also takes `1.0`,
`1e1` and `-0`; each route's whole numbers are checked here, before either reads them."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from litestar import Litestar, Request
from litestar.exceptions import ImproperlyConfiguredException
from litestar.handlers import HTTPRouteHandler
from litestar.typing import FieldDefinition

from services.api.documentation import RAW_BODY
from services.api.problems import invalid_field, problem

QUERY = "query_parameters"  # handler opt: the names its route takes, noted at start
NOT_NULL = "not_null"  # handler opt: its query parameters Litestar would read `null` in as none
TAKES_BODY = "takes_body"  # handler opt: it reads a request body, noted at start
WHOLE = "whole_numbers"  # handler opt: its parameters that are whole numbers, noted at start
# The API's whole numbers (versions, positions, page sizes) are never negative.
_DIGITS = re.compile(r"0|[1-9][0-9]*")


def note_what_routes_take(app: Litestar) -> None:
    """Notes on each handler the query parameters Litestar resolves for it (its own and its
    dependencies'), which of them may repeat, which of them and of its path parameters are
    whole numbers, and whether it reads a body."""
    for route in app.routes:
        for parameter in route.path_parameters.values():
            if parameter.type is int:  # read with int() before any check could see the text
                raise ImproperlyConfiguredException(
                    f"{route.path}: declare {{{parameter.name}:str}}; the handler's int "
                    "annotation makes it a whole number, taken in digits only"
                )
        for handler, model in getattr(route, "route_handler_map", {}).values():
            names = frozenset(p.field_alias for p in model.expected_query_params)
            handler.opt[QUERY] = (names, frozenset(model.sequence_query_parameter_names))
            fields = _fields(handler)
            handler.opt[NOT_NULL] = frozenset(
                p.field_alias
                for p in model.expected_query_params
                if _null_is_none(fields[p.field_name])
            )
            handler.opt[WHOLE] = frozenset(
                p.field_alias
                for p in (*model.expected_query_params, *model.expected_path_params)
                if _whole_number(fields[p.field_name])
            )
            handler.opt[TAKES_BODY] = (
                "data" in handler.parsed_fn_signature.parameters or RAW_BODY in handler.opt
            )


def _fields(handler: HTTPRouteHandler) -> dict[str, FieldDefinition]:
    """The parameters of the handler and of its dependencies, by name."""
    fields = {}
    for provide in handler.resolve_dependencies().values():
        fields.update(provide.parsed_fn_signature.parameters)
    return {**fields, **handler.parsed_fn_signature.parameters}


def _null_is_none(field: FieldDefinition) -> bool:
    """Whether Litestar reads the text `null` as no value: for a parameter that may be none and
    is neither text (`null` is then the text) nor a list (refused) nor a whole number (checked
    on its own)."""
    return (
        field.is_optional
        and str not in field.args
        and not field.is_non_string_sequence
        and not _whole_number(field)
    )


def _whole_number(field: FieldDefinition) -> bool:
    return field.annotation is int or (field.is_optional and int in field.args)


def refuse_parameters_not_taken(request: Request[Any, Any, Any]) -> None:
    """Refuses a query parameter the route does not take, or takes once but is given again,
    and a whole number in the path or query string not written in digits."""
    whole = request.route_handler.opt.get(WHOLE, frozenset())
    for name, value in request.scope["path_params"].items():
        if name in whole and (problem := number_problem(name, value)):
            raise invalid_field(*problem, 400, source="path")
    query = request.scope["query_string"]
    if not query:
        return
    names, repeatable = request.route_handler.opt.get(QUERY, (frozenset(), frozenset()))
    not_null = request.route_handler.opt.get(NOT_NULL, frozenset())
    problem = _query_problem(query, names, repeatable, whole, not_null)
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
        raise invalid_field("body", detail, 400, source="body")


def refuse_content_coding(request: Request[Any, Any, Any]) -> None:
    """A body sent compressed is refused for what it is (RFC 9110, 415): read as it arrives,
    it would be refused as malformed JSON or CSV."""
    if not request.route_handler.opt.get(TAKES_BODY, True):
        return
    for name, value in request.scope["headers"]:
        if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            raise problem(
                415,
                "Unsupported content encoding",
                "Send the body uncompressed: no Content-Encoding is taken.",
                kind="unsupported-content-encoding",
            )


@lru_cache(1024)  # as Litestar parses query strings: a page asked for again is not parsed again
def _query_problem(
    query: bytes,
    names: frozenset[str],
    repeatable: frozenset[str],
    whole: frozenset[str],
    not_null: frozenset[str],
) -> tuple[str, str] | None:
    """The first parameter of `query` the route does not take, or takes once but is given
    again, or takes as a whole number but is not one, or is given `null` where that would be
    read as none, and why; None when all are well."""
    seen = set()
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name not in names:
            takes = ", ".join(sorted(names)) or "none"
            return name, f"Unknown query parameter {name!r}; this route takes: {takes}."
        if name in seen and name not in repeatable:
            return name, f"The query parameter {name!r} is given more than once."
        if name in whole and (problem := number_problem(name, value)):
            return problem
        if name in not_null and value == "null":
            return name, f"{name} does not take null: leave {name} out to give none."
        seen.add(name)
    return None


def number_problem(name: str, value: str) -> tuple[str, str] | None:
    if _DIGITS.fullmatch(value):
        return None
    return name, f"{name} must be a whole number in the digits 0-9, without a sign or leading 0."
