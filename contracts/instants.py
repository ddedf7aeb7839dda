"""Instants as requests and commands give them (RFC 3339 text with an offset), and as the
service writes them: in UTC, with `Z`, as its JSON answers do."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec


class NoOffset(ValueError):
    """An instant written without its offset: which instant it means depends on a clock."""


def parse_instant(text: str) -> datetime:
    """The instant `text` names, in UTC; ValueError when it names none (NoOffset when it lacks
    its offset). RFC 3339 lets `T` and `Z` be written in lower case, which Python's ISO parser
    refuses, and Python's ISO parser takes more than RFC 3339 (a space for `T`, no seconds)."""
    try:
        at = datetime.fromisoformat(text.upper())
    except OverflowError as error:  # year 1 at an offset east of UTC
        raise ValueError(str(error)) from None
    if at.tzinfo is None:
        raise NoOffset(text)
    try:
        return at.astimezone(UTC)
    except OverflowError as error:
        raise ValueError(str(error)) from None


def written(at: datetime) -> str:
    """`at` as the service writes an instant: RFC 3339 in UTC with `Z`, as msgspec writes it
    in a JSON answer (Python's `isoformat` writes `+00:00`)."""
    return msgspec.json.encode(at.astimezone(UTC))[1:-1].decode()
