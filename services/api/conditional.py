"""Reads of a versioned record (an account, a period's objectives) answer 304 Not Modified to
an If-None-Match that names the version they would send (RFC 9110, 13.1.2): a frontend that
keeps a record asks again without its body coming back while it has not changed."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec

from services.api.problems import etag

# An entity tag of a list, weak (W/"3") or strong ("3"); compared weakly, as If-None-Match is.
_ENTITY_TAG = re.compile(r'(?:W/)?"([^"]*)"')

NOT_MODIFIED = ResponseSpec(
    None,
    description="If-None-Match named the version it would send (or `*`): no body, the "
    "version in ETag.",
    generate_examples=False,
)


def versioned_answer(request: Request[Any, Any, Any], view: Any, version: int) -> Response[Any]:
    """`view` with its version as ETag, or 304 with the ETag alone when the request's
    If-None-Match names that version."""
    tag = etag(version)
    headers = {"ETag": tag}
    if _names(request.headers.getall("if-none-match", []), tag):
        return Response(None, status_code=304, headers=headers)
    return Response(view, headers=headers)


def _names(fields: list[str], tag: str) -> bool:
    """Whether the If-None-Match fields name `tag`, or are `*` (any version at all)."""
    given = ",".join(fields).strip()
    return given == "*" or tag[1:-1] in _ENTITY_TAG.findall(given)
