"""Reads of a versioned record (an account, a period's objectives) answer 304 Not Modified to
an If-None-Match that names the version they would send (RFC 9110, 13.1.2): a frontend that
keeps a record asks again without its body coming back while it has not changed. An If-Match
that names another version is answered 412, as a command's is (RFC 9110, 13.1.1)."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec

from domain.errors import VersionMismatch
from domain.ledger import ANY_VERSION
from services.api.command_meta import expected_version, sent_twice
from services.api.problems import etag

# An entity tag of a list, weak (W/"3") or strong ("3"); compared weakly, as If-None-Match is.
_ENTITY_TAG = re.compile(r'(?:W/)?"([^"]*)"')

NOT_MODIFIED = ResponseSpec(
    None,
    description="If-None-Match named the version it would send (or `*`): no body, the "
    "version in ETag.",
    generate_examples=False,
)


STALE_VERSION = "If-Match names another version than the one answered; ETag names that one."
BAD_IF_MATCH = 'If-Match is not a version such as "3", or is sent more than once.'


def versioned_answer(
    request: Request[Any, Any, Any], view: Any, version: int, subject: str = "The account is"
) -> Response[Any]:
    """`view` with its version as ETag, or 304 with the ETag alone when the request's
    If-None-Match names that version; VersionMismatch (412) when its If-Match names another.
    `subject`: what the 412 says is at that version."""
    sent = request.headers.getall("if-match", [])
    if len(sent) > 1:
        raise sent_twice("If-Match")
    expected = expected_version(sent[0] if sent else None)
    if expected not in (None, ANY_VERSION, version):  # `*`: the record exists
        raise VersionMismatch(expected, version, subject)
    tag = etag(version)
    headers = {"ETag": tag}
    if _names(request.headers.getall("if-none-match", []), tag):
        return Response(None, status_code=304, headers=headers)
    return Response(view, headers=headers)


def _names(fields: list[str], tag: str) -> bool:
    """Whether the If-None-Match fields name `tag`, or are `*` (any version at all)."""
    given = ",".join(fields).strip()
    return given == "*" or tag[1:-1] in _ENTITY_TAG.findall(given)
