"""Exports of the account list and the BANT leaderboard, as a spreadsheet would open them.

A CSV cell is opened by a spreadsheet, which runs a cell that looks like a formula; so a text
cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is written with a `'`
before it (OWASP's advice against CSV injection), and shows as the text it is. Columns whose
bytes are checked (the hashed fields of the audit export) are written exactly. JSON Lines is
not for spreadsheets and is written as it is.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import tempfile
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import suppress
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from contracts.instants import written
from projections.account_queries import Filters, Page, account_list, leaderboard
from projections.database import ReadModelDatabase, from_micros

Kind = Literal["accounts", "leaderboard"]
Format = Literal["csv", "jsonl"]
PAGE = 1000
# What a spreadsheet takes for the start of a formula (or of a cell it then trims to one).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A text that a spreadsheet would run as a formula, with a `'` before it; and one that
    begins with a `'` (which a spreadsheet hides, and `unneutralise` takes off), with another."""
    if isinstance(value, str) and value.startswith((*FORMULA_STARTS, "'")):
        return "'" + value
    return value


def unneutralise(cell: str) -> str:
    """A cell `neutralise` wrote, as it was: an export read back (an import) holds the text,
    not the quote."""
    if cell.startswith("'") and cell[1:].startswith((*FORMULA_STARTS, "'")):
        return cell[1:]
    return cell


COLUMNS: dict[str, tuple[str, ...]] = {
    "accounts": (
        "account_id",
        "name",
        "domain",
        "industry",
        "country",
        "region",
        "headcount",
        "annual_revenue",
        "revenue_currency",
        "growth_rate",
        "source",
        "abm_stage",
        "funnel_state",
        "score",
        "registered_at",
    ),
    "leaderboard": (
        "rank",
        "account_id",
        "name",
        "score",
        "budget",
        "authority",
        "need",
        "timing",
        "abm_stage",
        "funnel_state",
        "industry",
        "country",
        "scored_at",
    ),
}


def rows(database: ReadModelDatabase, kind: Kind) -> Iterator[dict[str, Any]]:
    """Every row, page by page from one snapshot of the read model."""
    query = account_list if kind == "accounts" else leaderboard
    cursor = None
    key = secrets.token_bytes(16)  # its cursors never leave it
    while True:
        with database.read() as conn:
            page: Page = query(conn, Filters(), PAGE, cursor, key=key)
        for offset, row in enumerate(page.rows):
            yield _row(kind, row, page.first_rank + offset)
        cursor = page.next_cursor
        if cursor is None:
            return


def _row(kind: Kind, row: dict[str, Any], rank: int) -> dict[str, Any]:
    out = {c: row.get(c) for c in COLUMNS[kind] if c != "rank"}
    for instant in ("registered_at", "scored_at"):
        if out.get(instant) is not None:
            out[instant] = written(from_micros(out[instant]))
    return {"rank": rank, **out} if kind == "leaderboard" else out


# Excel reads a CSV file it opens with a double-click as UTF-8 only when it begins with this
# mark (otherwise as the system's code page: `Société` shows as `SociÃ©tÃ©`); programs that read
# CSV mostly take it for part of the first column's title, so it is asked for, not written by
# default. The import reads a file with it.
BYTE_ORDER_MARK = "\ufeff"


def render(
    database: ReadModelDatabase, kind: Kind, fmt: Format, bom: bool = False
) -> Iterator[str]:
    """The export as text chunks; a CSV one begins with a byte order mark when `bom`."""
    if bom and fmt == "csv":
        yield BYTE_ORDER_MARK
    yield from as_text(rows(database, kind), fmt, COLUMNS[kind])


CHUNK_CHARACTERS = 64_000  # of an export's text, sent or written at once


def as_text(
    records: Iterable[dict[str, Any]],
    fmt: Format,
    columns: Sequence[str],
    exact: Collection[str] = (),
) -> Iterator[str]:
    """Records as text chunks: CSV with a header row, or one JSON object per line.

    In CSV a nested value (a list or a mapping) is written as JSON in its cell, and a text
    that a spreadsheet would run as a formula gets a `'` before it, unless its column is one
    of `exact`; numbers are numbers and are written as they are.
    """
    if fmt == "jsonl":
        # Lines gathered into chunks, as the CSV's rows are: a chunk a line made a large export
        # a message (and a write) a line, several times slower than the same rows in CSV.
        lines: list[str] = []
        size = 0
        for record in records:
            lines.append(line := json.dumps(record, ensure_ascii=False) + "\n")
            size += len(line)
            if size > CHUNK_CHARACTERS:
                yield "".join(lines)
                lines, size = [], 0
        if lines:
            yield "".join(lines)
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\r\n")
    writer.writeheader()
    for record in records:
        writer.writerow(
            {
                # A number is written as one, a negative one too, which a spreadsheet reads as
                # a number, not a formula.
                k: _cell(v) if k in exact or isinstance(v, int | float) else neutralise(_cell(v))
                for k, v in record.items()
            }
        )
        if buffer.tell() > CHUNK_CHARACTERS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        # As a spreadsheet and an import read a number: 0.00001, where Python writes 1e-05.
        return format(Decimal(repr(value)), "f")
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value


def write_whole(path: Path, chunks: Iterable[str]) -> str | None:
    """Writes `chunks` to `path`; returns why it could not (the system's words), or None.

    Written beside the file and moved in place when complete, so a failed export leaves no
    file behind, and an earlier file at `path` stays as it was until the new one is whole. The
    file beside it is a new one of a name nobody could guess (a link made in its place would
    send the export elsewhere), readable by this user alone: it holds personal data."""
    partial = None
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        partial = Path(name)
        with open(handle, "w", encoding="utf-8", newline="") as out:
            for chunk in chunks:
                out.write(chunk)
        partial.replace(path)
    except OSError as error:  # a path that cannot be written, a full disk
        return error.strerror or str(error)
    finally:
        if partial is not None:
            with suppress(OSError):  # moved in place already
                partial.unlink()
    return None
