"""Bulk import of target lists from CSV: register new companies, update known ones by domain.

Every row is checked before anything is stored; each bad row is reported with its line,
column and reason and is not imported. A row is stored in one transaction (or not at all), a
row that changes nothing stores nothing, and so a re-import, or a re-run after an import was
cut short, adds nothing twice. Only what a row states can change a known company: a column
the file does not have, or an empty cell of an optional column, leaves the stored value alone.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from uuid import UUID

import msgspec

from contracts.accounts import (
    LINE_PATTERN,
    STORED_INT_MAX,
    TEXT_RULES,
    RegisterAccount,
    has_visible,
)
from domain.account import Firmographics, account_id_for
from domain.errors import InvalidValue, LedgerError
from domain.ledger import BULK_WINDOW, AccountLedger, CommandMeta
from domain.web_domain import normalise_domain
from services.api.problems import field_from_msgspec
from services.exporting import unneutralise

FIELDS = (
    "name",
    "domain",
    "industry",
    "headcount",
    "annual_revenue",
    "revenue_currency",
    "country",
    "region",
    "growth_rate",
    "source",
)
REQUIRED = tuple(f for f in FIELDS if f != "region")
# Header names users' spreadsheets commonly carry, mapped onto the fields.
ALIASES = {
    "company": "name",
    "company name": "name",
    "account": "name",
    "website": "domain",
    "web domain": "domain",
    "url": "domain",
    "sector": "industry",
    "employees": "headcount",
    "employee count": "headcount",
    "revenue": "annual_revenue",
    "annual revenue": "annual_revenue",
    "currency": "revenue_currency",
    "growth": "growth_rate",
    "growth rate": "growth_rate",
    "state": "region",
    "channel": "source",
    "lead source": "source",
    # as CRMs export them (Salesforce, HubSpot)
    "account name": "name",
    "company domain": "domain",
    "company domain name": "domain",
    "domain name": "domain",
    "number of employees": "headcount",
    "country code": "country",
}
# Sites where many companies each have a page, named by its path: the host of such a page
# (`linkedin.com/company/acme`) would make every company listed on the site one account, each
# row updating the one before it.
SHARED_SITES = frozenset(
    {
        "linkedin.com",
        "lnkd.in",
        "xing.com",
        "facebook.com",
        "fb.com",
        "instagram.com",
        "twitter.com",
        "x.com",
        "youtube.com",
        "youtu.be",
        "tiktok.com",
        "pinterest.com",
        "github.com",
        "gitlab.com",
        "medium.com",
        "crunchbase.com",
        "sites.google.com",
        "google.com",
        "goo.gl",
        "bit.ly",
        "t.co",
        "linktr.ee",
        "wikipedia.org",
        "northdata.com",
        "kompass.com",
    }
)
_INTEGERS = {"headcount", "annual_revenue"}
_FLOATS = {"growth_rate"}
_SEPARATORS = {",": "comma", ";": "semicolon"}
# What groups the digits of a whole number (`1,200`; `1.200` where the comma is the decimal
# mark and so a semicolon separates the cells); a decimal mark is not a whole number's.
_DIGIT_GROUPS = {",": ",", ";": "."}
# Or by a space, a no-break space (`1 200`, as French sheets write it) or an apostrophe
# (`1'200`, Swiss), whatever the separator: one mark in a number.
_ANY_FILE_GROUPS = " \u00a0\u202f'\u2019"
# ASCII digits only (Python's int() also takes `1_000` and other scripts' digits).
_WHOLE = {
    mark: re.compile(
        rf"[-+]?(?:[0-9]+|[0-9]{{1,3}}(?P<mark>[{re.escape(mark + _ANY_FILE_GROUPS)}])[0-9]{{3}}"
        r"(?:(?P=mark)[0-9]{3})*)"
    )
    for mark in _DIGIT_GROUPS.values()
}
# `12.5%`, or `12,5 %` with a space, or the no-break space a French sheet writes before `%`.
_DECIMAL = re.compile(r"[-+]?[0-9]+(?:[.,][0-9]+)?(?:[ \u00a0\u202f]?%)?")
_FIRST_LINE = re.compile(r"[^\r\n]*")
# `sep=;`, padded with more of it by a program that read the line as a row and wrote it back.
_SEP_LINE = re.compile(r"sep=(.)(?:\1)*\s*", re.IGNORECASE)
# How files that are no text begin, and what they are: a workbook sent as it was saved.
_MAGIC = {
    b"PK\x03\x04": "a ZIP archive (an Excel .xlsx or OpenDocument .ods workbook is one)",
    b"\xd0\xcf\x11\xe0": "an Excel 97-2003 workbook (.xls)",
    b"\x1f\x8b": "compressed with gzip",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
}
# Every cell the CRM reads follows the API's rule for one-line text: no control characters
# (PostgreSQL cannot store NUL; a stored one stopped the read models for good), no
# bidirectional overrides, and a visible character. Checked before the cell is trimmed, so a
# line break at its end counts too.
_ONE_LINE = re.compile(LINE_PATTERN)
_SURROGATE = re.compile("[\ud800-\udfff]")  # what a charset leaves of bytes it cannot read


class GoodRow(NamedTuple):
    line: int
    details: Firmographics
    given: frozenset[str]  # the fields the row states; the others stay as stored


@dataclass(frozen=True)
class RowError:
    line: int
    column: str
    reason: str


# The errors a report lists, the first ones in the file: a file of nothing but bad rows would
# otherwise keep millions, in memory and in the job's result, an event kept for good.
LISTED_ERRORS = 1000
LISTED_CHANGES = 1000  # of a dry run: the rows that would register or update a company
# Rows stored together, in the writer's shared transactions, between two reports of progress
# (where a job may stop): as many as the ledger hands its writer at once.
CHUNK_ROWS = BULK_WINDOW
SHOWN_CHARACTERS = 60  # of a cell an error quotes
HEADER_SHOWN = 12  # titles of a header line a refusal quotes
EXPORT_ID = "account_id"  # the title of the account's id in the exports


@dataclass(frozen=True)
class RowChange:
    """What a row would do, in a dry run: register a company, or change these fields of it
    (each from its stored value to the row's)."""

    line: int
    account_id: UUID
    domain: str
    outcome: str  # registered or updated
    fields: dict[str, tuple[Any, Any]]


@dataclass
class ImportReport:
    rows: int = 0
    registered: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)  # the first LISTED_ERRORS
    error_count: int = 0  # all of them
    rejected: int = 0  # the rows they are on
    refused: str | None = None  # why the whole file was refused, if it was
    account_ids: list[UUID] = field(default_factory=list)
    changes: list[RowChange] = field(default_factory=list)  # a dry run's first LISTED_CHANGES

    def reject(self, row_errors: list[RowError]) -> None:
        """Counts one bad row, and lists its errors while there is room."""
        self.rejected += 1
        self.error_count += len(row_errors)
        self.errors.extend(row_errors[: max(LISTED_ERRORS - len(self.errors), 0)])


class FileRefused(ValueError):
    pass


class UnknownCharset(ValueError):
    pass


def text_codec(charset: str) -> str:
    """Python's codec of a charset's name (`windows-1252` is `cp1252`); UnknownCharset when
    Python has none of that name that reads bytes as text (`base64` turns bytes into bytes)."""
    try:
        codec = codecs.lookup(charset).name
        # A codec that takes no `surrogateescape` (idna) could not report a row's bad bytes.
        # (Tried on a text of its own making: a byte alone is no UTF-16.)
        "a".encode(codec).decode(codec, "surrogateescape")
    except (LookupError, ValueError):
        raise UnknownCharset(charset) from None
    return codec


def column_mapping(header: list[str], delimiter: str = ",") -> dict[int, str]:
    """Which field each column holds; raises FileRefused when a required one is missing or
    two columns hold the same field (which of them a row means is anyone's guess)."""
    mapping: dict[int, str] = {}
    for index, title in enumerate(header):
        key = _key(title)
        name = key.replace(" ", "_") if key.replace(" ", "_") in FIELDS else ALIASES.get(key)
        if name is not None:
            mapping[index] = name
    problems = []
    for name in FIELDS:
        titles = [repr(_title(header[i])) for i, f in mapping.items() if f == name]
        if len(titles) > 1:
            columns = f"{', '.join(titles[:-1])} and {titles[-1]}"
            problems.append(
                f"columns {columns} {'both' if len(titles) == 2 else 'all'} map to the field"
                f" {name}: keep one of them"
            )
    if missing := [f for f in REQUIRED if f not in mapping.values()]:
        # What was read instead: titles of another language, a title row above the header,
        # or one title holding them all (another separator) say what to change.
        found = ", ".join(shown(_title(t)) for t in header[:HEADER_SHOWN]) or "no title"
        more = f" and {len(header) - HEADER_SHOWN} more" if len(header) > HEADER_SHOWN else ""
        problems.append(
            f"missing column(s): {', '.join(missing)} (the header line, read as"
            f" {_SEPARATORS[delimiter]}-separated, has {found}{more})"
        )
    if problems:
        raise FileRefused("; ".join(problems))
    return mapping


def _title(title: str) -> str:
    return title.strip()


def _key(title: str) -> str:
    """A column's title as matched: `Annual_Revenue ` is `annual revenue`."""
    return " ".join(_title(title).casefold().replace("_", " ").split())


def _other_account(cell: str, title: str, row: GoodRow) -> list[RowError]:
    """The row's error when its `account_id` (the first column of the exports) names another
    account than its domain does: the domain was edited in an export, which would otherwise
    register that domain as a new company beside the account the row came from. A value that
    is no UUID is another system's id, and not the CRM's to judge."""
    try:
        named = UUID(unneutralise(cell.strip()).strip())
    except ValueError:
        return []
    if named == account_id_for(row.details.domain):  # normalised as the ledger keys it
        return []
    return [
        RowError(
            row.line,
            _title(title),
            f"names another account than the domain {row.details.domain!r} does: an account's"
            " web domain is not changed (empty the account_id cell to register the domain as"
            " a new company)",
        )
    ]


def _text(data: bytes, charset: str) -> str:
    codec = text_codec(charset)
    wide = codec.startswith(("utf-16", "utf-32"))
    if codec.startswith("utf-8"):
        if _utf_16(data):
            # What a spreadsheet saves as "Unicode text": read as UTF-8 its header names no
            # column.
            raise FileRefused("the file is UTF-16, not UTF-8: save it as CSV in UTF-8")
    elif wide and not _utf_16(data):
        # Its header, ASCII titles, would have a NUL beside each character.
        raise FileRefused(f"the file is not {charset}: send it as UTF-8, or name its charset")
    elif not wide and _utf_8(data):
        raise FileRefused(
            f"the file is UTF-8, not {charset}: its accents read as UTF-8, and in {charset}"
            " each would be stored as other characters (é as Ã©); send it as UTF-8"
        )
    try:
        # Bytes the charset has no character for become lone surrogates: their rows are
        # rejected, the others read.
        text = data.decode(codec, errors="surrogateescape")
    except UnicodeDecodeError as exc:  # a codec that refuses rather than escapes (unicode_escape)
        raise FileRefused(f"the file is not {charset} text: {exc.reason}") from None
    # A byte-order mark goes before the first cell is read: left there, it would keep a
    # quote that opens the cell (`"name"`) from being read as one.
    return text.removeprefix("\ufeff")


def _not_text(data: bytes) -> str | None:
    """What a file that is not text is, by how it begins; None for text."""
    return next((kind for magic, kind in _MAGIC.items() if data.startswith(magic)), None)


def _utf_8(data: bytes) -> bool:
    """Text beyond ASCII that reads as UTF-8: a file in a charset of one byte a character
    (windows-1252) almost never does, since UTF-8 needs its bytes above 127 in set patterns,
    whereas a UTF-8 file, such as a CRM export a spreadsheet opened and saved again, does."""
    if data.isascii():
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _utf_16(data: bytes) -> bool:
    """A byte-order mark of UTF-16, or a header of ASCII titles in UTF-16 (a NUL beside each)."""
    head = data[:64]
    return data.startswith((b"\xff\xfe", b"\xfe\xff")) or (
        len(head) >= 8 and (not any(head[0::2]) or not any(head[1::2]))
    )


def parse(
    data: bytes, charset: str | None, reject: Callable[[list[RowError]], None]
) -> list[GoodRow]:
    """Good rows (with their line numbers); each bad one's errors go to `reject`. The file is
    read in `charset` (UnknownCharset if Python has no such codec), UTF-8 when None."""
    if kind := _not_text(data):
        raise FileRefused(f"the file is {kind}, not CSV text: save it as CSV and send that")
    if charset is None or data.startswith(codecs.BOM_UTF8):
        # A file that says it is UTF-8 (Excel's "CSV UTF-8") is, whatever the upload was
        # labelled, as a browser reads a page: read in windows-1252, every accent would be
        # stored as two other characters (é as Ã©).
        charset = "UTF-8"
    text = _text(data, charset)
    delimiter, header_line = _delimiter(text)
    records = _records(text, delimiter, header_line)
    try:
        _, header = next(records)
    except StopIteration:
        raise FileRefused("the file is empty") from None
    mapping = column_mapping(header, delimiter)
    titles = {i: _title(header[i]) for i in mapping}
    id_column = next((i for i, t in enumerate(header) if _title(t) == EXPORT_ID), None)
    good: list[GoodRow] = []
    first_line: dict[str, int] = {}
    for line, cells in records:
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            # A cell beyond the header: the row's cells are not where its header says (an
            # unquoted comma in a name shifts every cell after it, and leaves an empty last
            # value beyond the header), so none of them is trusted.
            reject(
                [
                    RowError(
                        line,
                        "row",
                        f"{len(cells)} cells but the header has {len(header)} columns"
                        f" (is a {_SEPARATORS[delimiter]} in a value not quoted?)",
                    )
                ]
            )
            continue
        row, row_errors = _row(cells, mapping, titles, line, _DIGIT_GROUPS[delimiter], charset)
        if row is not None and id_column is not None and id_column < len(cells):
            row_errors += _other_account(cells[id_column], header[id_column], row)
        if row is not None and row.details.domain in first_line:
            row_errors.append(
                RowError(
                    line,
                    titles[_index(mapping, "domain")],
                    f"duplicate of line {first_line[row.details.domain]}",
                )
            )
        if row_errors:
            reject(row_errors)
        elif row is not None:
            first_line[row.details.domain] = line
            good.append(row)
    return good


class _Lines:
    """The file's lines for `csv.reader`, noting when the reader asks for one past the last."""

    def __init__(self, text: str) -> None:
        self._lines = iter(io.StringIO(text, newline=""))
        self.ran_out = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        try:
            return next(self._lines)
        except StopIteration:
            self.ran_out = True
            raise


def _delimiter(text: str) -> tuple[str, int]:
    """The separator of the cells, and the line the header is on: `;` when the header line has
    a semicolon and no comma (spreadsheets save CSV so where the comma is the decimal mark, as
    in much of Europe), else `,`; or the one a first line `sep=;` names, as Excel reads it,
    with the header on the next line."""
    first = _FIRST_LINE.match(text)[0]  # type: ignore[index]  # matches any text
    if named := _SEP_LINE.fullmatch(first):
        if named[1] not in _SEPARATORS:
            raise FileRefused(
                f"line 1 names the separator {named[1]!r}: the import reads cells separated"
                " by commas or semicolons"
            )
        return named[1], 2
    return (";" if ";" in first and "," not in first else ","), 1


def _records(text: str, delimiter: str, first_line: int = 1) -> Iterator[tuple[int, list[str]]]:
    """Each record's cells with the line it starts on, from `first_line` on. A quote that is
    never closed refuses the file: every line after it would be read as one cell, so no later
    row can be trusted."""
    lines = _Lines(text)
    for _ in range(first_line - 1):
        next(lines, None)
    reader = csv.reader(lines, delimiter=delimiter)
    while True:
        start = reader.line_num + first_line
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error:  # the one error csv raises on text: a cell over its size limit
            raise FileRefused(
                f"line {start}: a cell is longer than {csv.field_size_limit()} characters"
                " (is a quote opened there never closed?)"
            ) from None
        if lines.ran_out:  # the file ended inside a quoted cell, the last one read
            opened = start + sum(_line_breaks(c) for c in cells[:-1])
            raise FileRefused(
                f'line {opened}: the quote (") that opens a cell is never closed, so the rest'
                " of the file would be read as that one cell"
            )
        yield start, cells


def _line_breaks(cell: str) -> int:
    return cell.count("\n") + cell.count("\r") - cell.count("\r\n")


def _index(mapping: dict[int, str], name: str) -> int:
    return next(i for i, f in mapping.items() if f == name)


def _host(value: str) -> str:
    """The host of a web address (`https://www.acme.com/about` → `www.acme.com`); anything
    else as it is, for `normalise_domain` to judge. ValueError for a page on a site that many
    companies share (a profile on linkedin.com), whose host names none of them."""
    has_scheme = "://" in value
    if not has_scheme and "/" not in value:
        return value
    try:
        parts = urlsplit(value if has_scheme else "//" + value)
        host = parts.hostname
    except ValueError:  # e.g. a malformed IPv6 literal or port
        return value
    if (has_scheme and parts.scheme.lower() not in ("http", "https")) or not host:
        return value
    if parts.path.strip("/") and (shared := _shared_site(host)):
        raise ValueError(
            f"a company's own web address: it is a page on {shared}, a site many companies"
            " share (give the company's domain)"
        )
    return host


def _shared_site(host: str) -> str | None:
    """The site of SHARED_SITES that `host` is, or a part of (`de.linkedin.com`), if any."""
    try:  # as the domain would be kept: a fullwidth ｌｉｎｋｅｄｉｎ.com is linkedin.com
        host = normalise_domain(host)
    except InvalidValue:
        pass
    labels = host.rstrip(".").lower().split(".")
    for start in range(len(labels) - 1):
        if (site := ".".join(labels[start:])) in SHARED_SITES:
            return site
    return None


def _row(
    cells: list[str],
    mapping: dict[int, str],
    titles: dict[int, str],
    line: int,
    groups: str,
    charset: str,
) -> tuple[GoodRow | None, list[RowError]]:
    values: dict[str, Any] = {}
    errors: list[RowError] = []
    for index, name in mapping.items():
        cell = cells[index] if index < len(cells) else ""
        raw = unneutralise(cell.strip()).strip()
        column = titles[index]
        # Bytes the charset has no character for were escaped as lone surrogates; a charset
        # such as UTF-7 also decodes some bytes to other lone surrogates. No store takes one.
        if not raw.isascii() and _SURROGATE.search(raw):
            errors.append(RowError(line, column, f"not valid {charset} text{_hint(charset)}"))
            continue
        if raw and not (_ONE_LINE.search(cell) and has_visible(cell)):
            errors.append(RowError(line, column, f"not {TEXT_RULES[LINE_PATTERN]}"))
            continue
        if raw == "":
            if name in REQUIRED:
                errors.append(RowError(line, column, "empty"))
            continue
        try:
            values[name] = (
                _whole(raw, groups)
                if name in _INTEGERS
                else _decimal(raw)
                if name in _FLOATS
                else _host(raw)
                if name == "domain"
                else raw.upper()  # `de` and `eur`, as spreadsheets are typed, are codes too
                if name in _CODES and raw.isascii() and raw.isalpha()
                else raw
            )
        except ValueError as error:
            errors.append(RowError(line, column, f"{shown(raw)} is not {error}"))
    if errors:
        # The values that were read are checked too, so that a row is corrected in one go.
        errors += _refused(values, cells, mapping, titles, line)
        order = {title: index for index, title in titles.items()}
        return None, sorted(errors, key=lambda e: order.get(e.column, -1))
    try:
        body = msgspec.convert(values, RegisterAccount)
        domain = normalise_domain(body.domain)
    except msgspec.ValidationError as exc:
        # msgspec names the first bad field only: each is checked alone, so that a row is
        # corrected in one go.
        found = _refused(values, cells, mapping, titles, line)
        if not found:
            name = field_from_msgspec(str(exc)) or "row"
            column = titles.get(_index(mapping, name), name) if name in mapping.values() else name
            found = [RowError(line, column, str(exc).split(" - at ")[0])]
        return None, found
    except InvalidValue:
        return None, [_not_a_domain(cells, mapping, titles, line)]
    # A file's rows are all held until it is stored (50 MB of them in an upload): the values
    # that repeat from row to row (an industry, a country) are held once, as is each set of
    # columns the rows state, which alone was half of a parsed row's memory.
    details = Firmographics(
        name=body.name,
        domain=domain,
        industry=sys.intern(body.industry),
        headcount=body.headcount,
        annual_revenue=body.annual_revenue,
        revenue_currency=sys.intern(body.revenue_currency),
        country=sys.intern(body.country),
        region=None if body.region is None else sys.intern(body.region),
        growth_rate=body.growth_rate,
        source=sys.intern(body.source),
    )
    return GoodRow(line, details, _stated(tuple(values))), []


@lru_cache(maxsize=256)
def _stated(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(names)


_FIELD_TYPES = {f.encode_name: f.type for f in msgspec.structs.fields(RegisterAccount)}
_CODES = {"country": "an ISO 3166-1 country code", "revenue_currency": "an ISO 4217 currency code"}


def shown(cell: str) -> str:
    """A cell quoted in an error, cut short: a long one would be kept whole in every result."""
    if len(cell) <= SHOWN_CHARACTERS:
        return repr(cell)
    return f"{cell[:SHOWN_CHARACTERS]!r}… ({len(cell)} characters)"


def _refused(
    values: dict[str, Any],
    cells: list[str],
    mapping: dict[int, str],
    titles: dict[int, str],
    line: int,
) -> list[RowError]:
    """The values of a row that the API would refuse, each with its column and why."""
    found = []
    for name, value in values.items():
        index = _index(mapping, name)
        if reason := _refusal(name, value, unneutralise(cells[index].strip()).strip()):
            found.append(RowError(line, titles[index], reason))
        elif name == "domain" and not _is_web_domain(value):
            found.append(_not_a_domain(cells, mapping, titles, line))
    return found


def _is_web_domain(value: str) -> bool:
    try:
        normalise_domain(value)
    except InvalidValue:
        return False
    return True


def _not_a_domain(
    cells: list[str], mapping: dict[int, str], titles: dict[int, str], line: int
) -> RowError:
    index = _index(mapping, "domain")
    return RowError(
        line,
        titles[index],
        f"{shown(cells[index].strip())} is not a web domain such as 'acme.com' "
        "or a web address such as 'https://www.acme.com/'",
    )


def _refusal(name: str, value: Any, typed: str) -> str | None:
    """Why a field's value (`typed` in its cell) is refused, as the API would refuse it; None
    when it is taken."""
    try:
        msgspec.convert(value, _FIELD_TYPES[name])
    except msgspec.ValidationError as exc:
        if name in _CODES:  # msgspec says "Invalid enum value"; the cell is quoted as typed
            return f"{shown(typed)} is not {_CODES[name]}"
        return str(exc)
    return None


def _whole(raw: str, groups: str) -> int:
    """A whole number, its digits grouped by threes with `groups` or not at all: a cell whose
    groups are not threes (`12,5`, `1.2`) means something else, and is not read as a number."""
    if not (whole := _WHOLE[groups].fullmatch(raw)):
        raise ValueError("a whole number" if _DECIMAL.fullmatch(raw) else "a number")
    digits = raw.replace(whole["mark"], "") if whole["mark"] else raw
    sign, digits = "-" if raw[0] == "-" else "", digits.lstrip("+-").lstrip("0")
    if len(digits) > _MOST_DIGITS:
        # No field holds it; and Python's int() refuses a text of over 4,300 digits.
        raise ValueError("a number any field can hold")
    return int(sign + (digits or "0"))


_MOST_DIGITS = len(str(STORED_INT_MAX))


def _hint(charset: str) -> str:
    """What a cell that is not UTF-8 most likely is."""
    if not codecs.lookup(charset).name.startswith("utf-8"):
        return ""
    return " (a file Excel on Windows saves as CSV is windows-1252: name that charset)"


def _decimal(raw: str) -> float:
    """A number with `.` or `,` as its decimal mark and perhaps a `%` (not `nan` or `inf`)."""
    if not _DECIMAL.fullmatch(raw):
        raise ValueError("a number")
    return float(raw.rstrip("%").rstrip(" \u00a0\u202f").replace(",", "."))


def import_rows(
    ledger: AccountLedger,
    data: bytes,
    meta: CommandMeta,
    strict: bool = False,
    progress: Callable[[int, int], None] | None = None,
    charset: str | None = None,
    counted: Callable[[str, UUID], str] | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Parses the whole file first, then stores the good rows, CHUNK_ROWS at a time in shared
    transactions (in strict mode none when a row is bad; a row the store refuses leaves the
    others). `progress` learns the rows done after each of those chunks, and may stop the
    import there by raising. `counted` says what a stored row counts as, given its outcome and
    account (a resumed job counts what its first run stored). A dry run stores nothing: it
    counts what each row would do as the store stands, and lists the changes."""
    report = ImportReport()
    try:
        good = parse(data, charset, report.reject)
    except FileRefused as exc:
        report.refused = str(exc)
        return report
    report.rows = len(good) + report.rejected
    if strict and report.rejected:
        report.refused = f"{report.rejected} bad row(s) and --strict: nothing was imported"
        return report
    done, total = 0, len(good)
    if progress:
        progress(done, total)  # the file is read: its rows are counted before any is stored
    for start in range(0, len(good), CHUNK_ROWS):
        chunk = good[start : start + CHUNK_ROWS]
        outcomes = (
            _preview(ledger, chunk, report) if dry_run else _store(ledger, chunk, meta, report)
        )
        for stored in outcomes:
            if stored is None:  # the store refused the row: a bad row now, not one to import
                total -= 1
            else:
                outcome = counted(*stored) if counted else stored[0]
                setattr(report, outcome, getattr(report, outcome) + 1)
                done += 1
        if progress:
            progress(done, total)
    return report


def _preview(
    ledger: AccountLedger, rows: list[GoodRow], report: ImportReport
) -> Iterator[tuple[str, UUID] | None]:
    """Each row's outcome and account as `_store` would have them, storing nothing; the rows
    that would change a company are listed in `report.changes`, while there is room."""
    for line, details, given in rows:
        try:
            outcome, account_id, changed = ledger.import_preview(details, given)
        except LedgerError as exc:  # an account whose stored events cannot be read
            report.reject([RowError(line, "row", exc.detail)])
            yield None
            continue
        if outcome != "unchanged" and len(report.changes) < LISTED_CHANGES:
            report.changes.append(RowChange(line, account_id, details.domain, outcome, changed))
        yield outcome, account_id


def _store(
    ledger: AccountLedger,
    rows: list[GoodRow],
    meta: CommandMeta,
    report: ImportReport,
) -> Iterator[tuple[str, UUID] | None]:
    """Stores the rows; each one's outcome and account, or None for a row the store refused
    (reported as a bad row)."""
    stored = ledger.import_accounts([(details, given) for _, details, given in rows], meta)
    for (line, _, _), outcome in zip(rows, stored, strict=True):
        if isinstance(outcome, LedgerError):
            report.reject([RowError(line, "row", outcome.detail)])
            yield None
            continue
        report.account_ids.append(outcome[1])
        yield outcome
