"""Instants as requests and commands give them (RFC 3339 text with an offset), and as the
service writes them: in UTC, with `Z`, as its JSON answers do."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec

# RFC 3339's date-time, its seconds optional (as the service has always taken them), its
# offset optional here only so that a time without one is named as such. Python's ISO parser
# also takes week dates, ordinal dates, the basic format and a comma before the fraction, which
# other readers of the same text would not.
_RFC_3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:\d{2})?)?",
    re.ASCII,
)


class NoOffset(ValueError):
    """An instant written without its offset: which instant it means depends on a clock."""


class OutOfRange(ValueError):
    """An instant written right that falls outside years 1 to 9999 once in UTC."""

    said = "beyond the instants this service can hold (years 1 to 9999, in UTC)"


def parse_instant(text: str) -> datetime:
    """The instant `text` names, in UTC; ValueError when it names none (NoOffset when it lacks
    its offset). RFC 3339 lets `T` and `Z` be written in lower case, which Python's ISO parser
    refuses; a space for `T` and a time without its seconds are taken, as RFC 3339's own
    examples and most clients write them."""
    if not _RFC_3339.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 instant")
    try:
        at = datetime.fromisoformat(text.upper())
    except OverflowError:  # year 1 at an offset east of UTC
        raise OutOfRange(text) from None
    if at.tzinfo is None:
        raise NoOffset(text)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise OutOfRange(text) from None


def written(at: datetime) -> str:
    """`at` as the service writes an instant: RFC 3339 in UTC with `Z`, as msgspec writes it
    in a JSON answer (Python's `isoformat` writes `+00:00`)."""
    return msgspec.json.encode(at.astimezone(UTC))[1:-1].decode()
