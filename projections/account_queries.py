"""Queries over the `accounts` read model: the account list and the BANT leaderboard.

Both page by keyset. The first page is read at the read model's current position, and the
cursor carries that position, so later pages read the same snapshot: no account appears
twice or goes missing while writes go on. `as_of` reads the rows valid at an instant instead,
as the log stood at that same position.

A cursor is signed with a key kept in the read models' database (every API process reading
them shares it): one made up could otherwise ask for the rows at any earlier position, which
is looking into the past, the auditor's part of reading.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, text

from contracts.accounts import STORED_INT_MAX
from domain.text import fold, search_key
from projections import accounts
from projections.database import from_micros, to_micros
from projections.generations import live_generation

ACTIVE_STAGES = ("prioritized", "outreach", "warm_up")
Order = tuple[tuple[str, str], ...]  # the columns a page is sorted by, each ASC or DESC
# Names in their folded form, the account list's order, break the leaderboard's ties.
LEADERBOARD_ORDER: Order = (("score", "DESC"), ("name_key", "ASC"), ("account_id", "ASC"))
LIST_ORDER: Order = (("name_key", "ASC"), ("account_id", "ASC"))


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Filters:
    stages: tuple[str, ...] = ()
    funnel: str | None = None
    industry: str | None = None
    country: str | None = None
    search: str | None = None
    domain: str | None = None  # normalised, as the ledger keeps it

    def fingerprint(self) -> str:
        """What a cursor carries, so that it is refused with other filters than its first
        page's (it would skip or repeat rows)."""
        values = (
            sorted(self.stages),
            self.funnel,
            self.industry and fold(self.industry),
            self.country and self.country.upper(),
            self.search and fold(self.search),
            self.domain,
        )
        return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


@dataclass
class Page:
    rows: list[dict[str, Any]]
    position: int  # the read model's position the page reflects
    next_cursor: str | None = None
    first_rank: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    as_of: datetime | None = None  # the instant the page shows, when not the present


def leaderboard(
    conn: Connection,
    filters: Filters,
    limit: int,
    cursor: str | None = None,
    as_of: datetime | None = None,
    *,
    key: bytes,
) -> Page:
    """Rated accounts by score desc, then name (folded), then id; by default only active
    stages."""
    stages = filters.stages or ACTIVE_STAGES
    return _page(
        conn,
        filters,
        limit,
        cursor,
        as_of,
        key=key,
        where=["score IS NOT NULL", "abm_stage IN :stages"],
        params={"stages": list(stages)},
        order=LEADERBOARD_ORDER,
    )


def account_list(
    conn: Connection,
    filters: Filters,
    limit: int,
    cursor: str | None = None,
    as_of: datetime | None = None,
    *,
    key: bytes,
) -> Page:
    """Accounts by name (case-insensitive), then id."""
    where, params = [], {}
    if filters.stages:
        where.append("abm_stage IN :stages")
        params["stages"] = list(filters.stages)
    return _page(
        conn,
        filters,
        limit,
        cursor,
        as_of,
        key=key,
        where=where,
        params=params,
        order=LIST_ORDER,
    )


def _page(
    conn: Connection,
    filters: Filters,
    limit: int,
    cursor: str | None,
    as_of: datetime | None,
    *,
    key: bytes,
    where: list[str],
    params: dict[str, Any],
    order: Order,
) -> Page:
    gen = live_generation(conn, accounts.NAME)
    if gen is None:
        return Page(rows=[], position=0)
    state = (
        _decode(cursor, key, order, gen.position)
        if cursor is not None
        else {"p": gen.position, "r": 0, "k": None}
    )
    if as_of is not None:
        if cursor is None:
            state["t"] = to_micros(as_of)
        elif state.get("t") != to_micros(as_of):
            # A cursor's pages all show the instant of its first page.
            raise BadCursor("The cursor was issued for another as_of; send it with the same.")
    if cursor is not None and state.get("f") != filters.fingerprint():
        raise BadCursor("The cursor was issued for other filters; send it with the same.")
    conditions = list(where)
    params = dict(params)
    current = cursor is None and state.get("t") is None  # only the current rows
    if current:
        conditions.append("to_pos IS NULL")
    else:
        params["p"] = state["p"]
        if state.get("t") is not None:
            params["t"] = state["t"]
    if filters.funnel is not None:
        conditions.append("funnel_state = :funnel_state")
        params["funnel_state"] = filters.funnel
    # Industries are free text, matched as screening matches them, folded as names are. Rows
    # written before industry_key was added have none: matched as they were until a rebuild.
    if filters.industry is not None:
        conditions.append("COALESCE(industry_key, lower(industry)) = :industry")
        params["industry"] = fold(filters.industry)
    if filters.country is not None:  # ISO codes are stored in capitals
        conditions.append("country = :country")
        params["country"] = filters.country.upper()
    if filters.domain is not None:
        conditions.append("domain = :domain")
        params["domain"] = filters.domain
    if filters.search:
        folded = fold(filters.search)
        if search_key(filters.search) == folded:
            # Typed without accents: found with or without them. Rows listed before
            # search_key was added have none, and are matched as they were until a rebuild.
            conditions.append(
                "(search_key LIKE :q ESCAPE '\\' OR domain LIKE :q ESCAPE '\\'"
                " OR (search_key IS NULL AND name_key LIKE :q ESCAPE '\\'))"
            )
        else:  # typed with accents: found as typed
            conditions.append("(name_key LIKE :q ESCAPE '\\' OR domain LIKE :q ESCAPE '\\')")
        params["q"] = "%" + _escape_like(folded) + "%"  # without accents, if typed so
    after = []
    if state["k"] is not None:
        after = _after(order)
        params.update({f"k{i}": v for i, v in enumerate(state["k"])})
    t, ordered = accounts.table(gen), f"ORDER BY {', '.join(f'{c} {d}' for c, d in order)}"
    if current:
        sql = f"SELECT * FROM {t} WHERE {' AND '.join(conditions)} {ordered} LIMIT :limit"
    else:
        sql = _valid_page(t, conditions, after, ordered, instant="t" in params)
    statement = text(sql)
    if "stages" in params:
        statement = statement.bindparams(bindparam("stages", expanding=True))
    rows = [dict(r) for r in conn.execute(statement, {**params, "limit": limit + 1}).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = encode_cursor(
            key,
            {
                "p": state["p"],
                "t": state.get("t"),
                "f": filters.fingerprint(),
                "r": state["r"] + len(rows),
                "k": [last[c] for c, _ in order],
            },
            order,
        )
    return Page(
        rows=rows,
        position=state["p"],
        next_cursor=next_cursor,
        first_rank=state["r"] + 1,
        as_of=None if state.get("t") is None else from_micros(state["t"]),
    )


def _valid_page(
    t: str, conditions: list[str], after: list[str], ordered: str, *, instant: bool
) -> str:
    """A page of the rows valid as the log stood at a cursor's first page (`:p`), and with
    `instant` at that instant too (`:t`): a change stamped at or before the instant but
    recorded after that position (a clock behind the reader's, an instant not reached yet)
    would otherwise move rows across the pages.

    As one condition (`from_pos <= :p AND (to_pos IS NULL OR to_pos > :p)`, and `to_at > :t`)
    no index serves it, and every row of the table was read and sorted for each page. Those
    rows are the current ones that were there then, read in order by the index of the page's
    order, and the rows later changes closed: those closed after the instant, a range of the
    `closed_at` index, and those closed after `:p` (a row is closed only when the account's
    next row opens, so their accounts are those with a row opened after `:p`, a range of the
    `span` index), each found by its key.

    The current rows are read once for each way a row can come after the cursor's (`after`):
    under one condition with OR the index was walked from its start to the cursor's row, and
    a page cost what its depth did (13 ms 99,900 rows down on SQLite); each way alone is one
    range of the index."""
    opened = "from_pos <= :p AND from_at <= :t" if instant else "from_pos <= :p"
    rest = " AND ".join([*conditions, _any(after)] if after else conditions) or "1 = 1"
    current = [
        f"SELECT * FROM {t} WHERE to_pos IS NULL AND {opened} AND {way}"
        for way in (" AND ".join([*conditions, w]) for w in after or ["1 = 1"])
    ]
    closed = [
        f"SELECT * FROM {t} WHERE account_id IN (SELECT account_id FROM {t} WHERE from_pos > :p)"
        f" AND {opened} AND to_pos > :p AND {'to_at <= :t AND ' if instant else ''}{rest}"
    ]
    if instant:  # those closed after the instant (the branch before has the others)
        closed.append(
            f"SELECT * FROM {t} WHERE to_pos IS NOT NULL AND to_at > :t AND {opened} AND {rest}"
        )
    branches = [
        f"SELECT * FROM ({sql} {ordered} LIMIT :limit) AS b{i}"
        for i, sql in enumerate([*current, *closed])
    ]
    return f"SELECT * FROM ({' UNION ALL '.join(branches)}) AS valid {ordered} LIMIT :limit"


def _after(order: Order) -> list[str]:
    """The ways a row comes after the last row in a mixed-direction ORDER BY: equal to it in
    the columns of the first runs of one direction and beyond it in the next run, compared as
    a row value (which an index serves as one range)."""
    runs: list[list[int]] = []
    for i, (_, direction) in enumerate(order):
        if runs and order[runs[-1][0]][1] == direction:
            runs[-1].append(i)
        else:
            runs.append([i])
    ways = []
    for j, run in enumerate(runs):
        equal = [f"{order[i][0]} = :k{i}" for earlier in runs[:j] for i in earlier]
        columns = ", ".join(order[i][0] for i in run)
        keys = ", ".join(f":k{i}" for i in run)
        if len(run) > 1:
            columns, keys = f"({columns})", f"({keys})"
        beyond = f"{columns} {'<' if order[run[0]][1] == 'DESC' else '>'} {keys}"
        ways.append("(" + " AND ".join([*equal, beyond]) + ")")
    return ways


def _any(ways: list[str]) -> str:
    return "(" + " OR ".join(ways) + ")"


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


KEY_DDL = "CREATE TABLE IF NOT EXISTS rm_cursor_key (id INTEGER PRIMARY KEY, secret TEXT NOT NULL)"


def ensure_cursor_key(conn: Connection) -> None:
    """Makes the key cursors are signed with, once for every process reading these tables."""
    conn.execute(text(KEY_DDL))
    conn.execute(
        text("INSERT INTO rm_cursor_key (id, secret) VALUES (1, :s) ON CONFLICT (id) DO NOTHING"),
        {"s": secrets.token_hex(32)},
    )


def cursor_key(conn: Connection) -> bytes:
    return bytes.fromhex(conn.execute(text("SELECT secret FROM rm_cursor_key")).scalar_one())


# How the order's keys are written, signed with each cursor: one issued by a release that
# keyed names otherwise (folded, accents and all, which sorted Ähre after Zeta) would skip or
# repeat rows.
KEYS_WRITTEN = "names by sort_key"


def _signature(key: bytes, payload: str, order: Order) -> str:
    # The order is signed with the cursor: one issued for another (by an earlier release, whose
    # leaderboard broke ties by name as written) would skip or repeat rows.
    message = f"{payload}.{','.join(f'{c} {d}' for c, d in order)}.{KEYS_WRITTEN}"
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def encode_cursor(key: bytes, state: dict[str, Any], order: Order) -> str:
    # UTF-8, not \u escapes: a name of 200 characters of any script fits a cursor's length.
    raw = json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )
    payload = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"{payload}.{_signature(key, payload, order)}"


def _state(cursor: str) -> Any:
    """What a cursor says, unchecked; ValueError when it says nothing."""
    payload = cursor.partition(".")[0]
    try:
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, RecursionError) as exc:  # a made-up one may nest without end
        raise ValueError(str(exc)) from None


def signed_state(cursor: str, key: bytes, order: Order) -> Any:
    """What a cursor says, when this service signed it for `order`; else BadCursor."""
    if cursor == "":  # what a client may send for a null next_cursor: the last page was read
        raise BadCursor("The cursor is empty; the page without a next_cursor was the last.")
    payload, _, signature = cursor.partition(".")
    if not (cursor.isascii() and hmac.compare_digest(signature, _signature(key, payload, order))):
        raise BadCursor("The cursor is not one this service issued.")
    try:
        return _state(cursor)
    except ValueError as exc:
        raise BadCursor("The cursor is not one this service issued.") from exc


def _decode(cursor: str, key: bytes, order: Order, position: int) -> dict[str, Any]:
    """A cursor's state, when this service signed it, and still fits the read model: never a
    position it has not reached, nor values the database cannot take."""
    state = signed_state(cursor, key, order)
    if not (
        isinstance(state, dict)
        and _whole(state.get("p"), position)
        and _whole(state.get("r"), STORED_INT_MAX)
        and (state.get("t") is None or _whole(state.get("t"), *_INSTANTS))
        and isinstance(state.get("k"), list)
        and len(state["k"]) == len(order)
        and all(_key_value(c, v) for (c, _), v in zip(order, state["k"], strict=True))
    ):
        raise BadCursor("The cursor is not one this service issued.")
    return state


def looks_back(cursor: str | None) -> bool:
    """Whether a cursor pages through a past instant (an `as_of` read), which only an auditor
    may do; a cursor that does not decode is refused by the query itself."""
    try:
        state = _state(cursor) if cursor else None
    except ValueError:
        return False
    return isinstance(state, dict) and state.get("t") is not None


def _whole(value: Any, most: int, least: int = 0) -> bool:
    return type(value) is int and least <= value <= most


def _key_value(column: str, value: Any) -> bool:
    if value is None:
        return True
    if column in _INTEGER_KEYS:
        return _whole(value, STORED_INT_MAX, -STORED_INT_MAX)
    # Text the database can take: JSON may hold a lone surrogate, which has no UTF-8, and NUL,
    # which PostgreSQL's text refuses; no stored name or id holds either.
    return isinstance(value, str) and "\x00" not in value and _utf8(value)


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


_INTEGER_KEYS = {"score"}  # the other sort keys are text columns
# The instants a page may show: those a datetime can hold, as microseconds since 1970.
_INSTANTS = (
    to_micros(datetime.max.replace(tzinfo=UTC)),
    to_micros(datetime.min.replace(tzinfo=UTC)),
)


def account_ids_in_stages(conn: Connection, stages: tuple[str, ...]) -> list[str]:
    """Ids of the accounts currently in one of `stages`, by name."""
    gen = live_generation(conn, accounts.NAME)
    if gen is None:
        return []
    statement = text(
        f"SELECT account_id FROM {accounts.table(gen)} "
        "WHERE to_pos IS NULL AND abm_stage IN :stages ORDER BY name_key, account_id"
    ).bindparams(bindparam("stages", expanding=True))
    return [row[0] for row in conn.execute(statement, {"stages": list(stages)})]
