"""The `accounts` read model: every account's listed state, kept as a timeline.

Each row holds the state of one account from one event (`from_pos`, `from_at`) until the next
change (`to_pos`, `to_at`, NULL while current). Current rows serve the account list and the BANT
leaderboard; the closed ones answer `as_of` (an instant) and keep paging consistent (a
position) while writes go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, TextClause, bindparam, inspect, text

from domain.account import Account
from domain.text import fold, search_key, sort_key
from projections.batch import Entry, stored_accounts
from projections.database import insert_rows, placeholder, to_micros
from projections.generations import Generation

NAME = "accounts"

COLUMNS = (
    "account_id",
    "from_pos",
    "to_pos",
    "from_at",
    "to_at",
    "name",
    "name_key",
    "search_key",
    "domain",
    "industry",
    "industry_key",
    "country",
    "region",
    "growth_rate",
    "source",
    "headcount",
    "annual_revenue",
    "revenue_currency",
    "abm_stage",
    "funnel_state",
    "budget",
    "authority",
    "need",
    "timing",
    "score",
    "scored_at",
    "registered_at",
)


def table(gen: Generation) -> str:
    return gen.table("rows")


def create_tables(conn: Connection, gen: Generation, *, query_indexes: bool = True) -> None:
    """The table, with the indexes the queries read by unless a rebuild adds them after its
    bulk load (building an index once is far quicker than keeping it up row by row)."""
    t = table(gen)
    conn.execute(
        text(f"""
        CREATE TABLE IF NOT EXISTS {t} (
            account_id TEXT NOT NULL,
            from_pos BIGINT NOT NULL,
            to_pos BIGINT,
            from_at BIGINT NOT NULL,
            to_at BIGINT,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL,
            search_key TEXT,
            domain TEXT NOT NULL,
            industry TEXT NOT NULL,
            industry_key TEXT NOT NULL,
            country TEXT NOT NULL,
            region TEXT,
            growth_rate DOUBLE PRECISION,
            source TEXT,
            headcount INTEGER NOT NULL,
            annual_revenue BIGINT NOT NULL,
            revenue_currency TEXT NOT NULL,
            abm_stage TEXT NOT NULL,
            funnel_state TEXT NOT NULL,
            budget INTEGER,
            authority INTEGER,
            need INTEGER,
            timing INTEGER,
            score INTEGER,
            scored_at BIGINT,
            registered_at BIGINT NOT NULL,
            PRIMARY KEY (account_id, from_pos)
        )""")
    )
    if query_indexes:
        complete_tables(conn, gen)


def complete_tables(conn: Connection, gen: Generation) -> None:
    """Adds what the queries read by: the indexes (the projector finds an account's rows by
    the primary key), and on tables an earlier release made, the columns it lacked."""
    t = table(gen)
    columns = {c["name"] for c in inspect(conn).get_columns(t)}
    # Their rows match an industry, and a search, as they did (by the folded name, accents
    # and all), until `crm rebuild accounts` keys them; their growth rate and source are null
    # until then.
    for column, kind in (
        ("industry_key", "TEXT"),
        ("search_key", "TEXT"),
        ("growth_rate", "DOUBLE PRECISION"),
        ("source", "TEXT"),
    ):
        if column not in columns:
            conn.execute(text(f"ALTER TABLE {t} ADD COLUMN {column} {kind}"))
    # The leaderboard's order before its ties went by name_key: no query reads by it.
    conn.execute(text(f"DROP INDEX IF EXISTS {t}_score"))
    for index, columns in (
        ("open", "(account_id) WHERE to_pos IS NULL"),
        ("ranking", "(score DESC, name_key ASC, account_id ASC) WHERE to_pos IS NULL"),
        ("by_name", "(name_key ASC, account_id ASC) WHERE to_pos IS NULL"),
        ("by_domain", "(domain) WHERE to_pos IS NULL"),
        ("span", "(from_pos, to_pos)"),
        ("closed_at", "(to_at, from_at, from_pos) WHERE to_pos IS NOT NULL"),
    ):
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {t}_{index} ON {t} {columns}"))


def analyze(conn: Connection, gen: Generation) -> None:
    conn.execute(text(f"ANALYZE {table(gen)}"))


def drop_tables(conn: Connection, gen: Generation) -> None:
    conn.execute(text(f"DROP TABLE IF EXISTS {table(gen)}"))


@dataclass
class _Open:
    """The current row of one account while a batch is applied."""

    row: dict[str, Any]
    stored: bool  # already in the table (so it is updated or closed, not inserted)


def apply(conn: Connection, gen: Generation, batch: list[Entry]) -> None:
    """Applies the batch's events in order; one command's events share one row.

    Every row is written once per batch, when it is closed or at the end; the writes go to the
    database together (one INSERT and one UPDATE statement, each with many rows), since no row
    is read back within the batch.
    """
    t = table(gen)
    open_rows: dict[str, _Open] = {}
    stored = _load_open(
        conn,
        t,
        stored_accounts(batch, CHANGING_ROWS),
    )
    writes = _Writes()
    for position, account_id, event in batch:
        if not isinstance(event, Account.Event):
            continue
        at = to_micros(event.timestamp)
        if isinstance(event, Account.Registered):
            row = _registered_row(event, account_id, position, at)
            open_rows[account_id] = _Open(row, stored=False)
            continue
        changes = _changes(event, at)
        if not changes:
            continue
        current = open_rows.get(account_id) or stored.get(account_id)
        if current is None:
            continue  # an account registered before this generation's first event cannot exist
        if current.row["from_at"] == at:
            current.row.update(changes)  # the same command: one row for its events
        else:
            writes.add(current, close_at=(position, at))
            row = {
                **current.row,
                **changes,
                "from_pos": position,
                "from_at": at,
                "to_pos": None,
                "to_at": None,
            }
            current = _Open(row, stored=False)
        open_rows[account_id] = current
    for current in open_rows.values():
        writes.add(current)
    writes.flush(conn, t)


def _registered_row(
    event: Account.Registered, account_id: str, position: int, at: int
) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "from_pos": position,
        "to_pos": None,
        "from_at": at,
        "to_at": None,
        "name": event.name,
        "name_key": sort_key(event.name),
        "search_key": search_key(event.name),
        "domain": event.domain,
        "industry": event.industry,
        "industry_key": fold(event.industry),
        "country": event.country,
        "region": event.region,
        "growth_rate": event.growth_rate,
        "source": event.source,
        "headcount": event.headcount,
        "annual_revenue": event.annual_revenue,
        "revenue_currency": event.revenue_currency,
        "abm_stage": "identified",
        "funnel_state": "see",
        "budget": None,
        "authority": None,
        "need": None,
        "timing": None,
        "score": None,
        "scored_at": None,
        "registered_at": at,
    }


# The events `_changes` reads: of accounts already in the table, only these need their row.
CHANGING_ROWS = (
    Account.BantScored,
    Account.FirmographicsUpdated,
    Account.StageChanged,
    Account.FunnelStateChanged,
)
READS = (Account.Registered, *CHANGING_ROWS)  # the events this read model applies


def _changes(event: Any, at: int) -> dict[str, Any]:
    if isinstance(event, Account.BantScored):
        return {
            "budget": event.budget,
            "authority": event.authority,
            "need": event.need,
            "timing": event.timing,
            "score": event.budget * event.authority * event.need * event.timing,
            "scored_at": at,
        }
    if isinstance(event, Account.FirmographicsUpdated):
        changes = {k: v for k, v in event.changes.items() if k in COLUMNS}
        if "industry" in changes:
            changes["industry_key"] = fold(changes["industry"])
        if "name" in changes:
            changes["name_key"] = sort_key(changes["name"])
            changes["search_key"] = search_key(changes["name"])
        return changes
    if isinstance(event, Account.StageChanged):
        return {"abm_stage": event.to_stage}
    if isinstance(event, Account.FunnelStateChanged):
        return {"funnel_state": event.to_state}
    return {}


def _load_open(conn: Connection, t: str, account_ids: set[str]) -> dict[str, _Open]:
    """The current rows of these accounts, read together rather than one query each."""
    ids = sorted(account_ids)
    found = {}
    for start in range(0, len(ids), LOAD_CHUNK):
        chunk = ids[start : start + LOAD_CHUNK]
        for row in conn.execute(_select_open(t), {"ids": chunk}).mappings():
            found[row["account_id"]] = _Open(dict(row), stored=True)
    return found


class _Writes:
    def __init__(self) -> None:
        self.inserts: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []

    def add(self, current: _Open, close_at: tuple[int, int] | None = None) -> None:
        row = current.row
        if close_at is not None:
            row = {**row, "to_pos": close_at[0], "to_at": close_at[1]}
        (self.updates if current.stored else self.inserts).append(row)

    def flush(self, conn: Connection, t: str) -> None:
        insert_rows(conn, t, COLUMNS, [_inserted(r) for r in self.inserts])
        if self.updates:
            conn.exec_driver_sql(_update(t, placeholder(conn)), [_updated(r) for r in self.updates])


LOAD_CHUNK = 500  # accounts a query reads, well under SQLite's limit of bound parameters


@cache
def _select_open(t: str) -> TextClause:
    return text(
        f"SELECT {', '.join(COLUMNS)} FROM {t} WHERE account_id IN :ids AND to_pos IS NULL"
    ).bindparams(bindparam("ids", expanding=True))


_UPDATED = tuple(c for c in COLUMNS if c not in ("account_id", "from_pos"))
# A row's values in the order of the statements' placeholders.
_inserted = itemgetter(*COLUMNS)
_updated = itemgetter(*_UPDATED, "account_id", "from_pos")


@cache
def _update(t: str, mark: str) -> str:
    assignments = ", ".join(f"{c} = {mark}" for c in _UPDATED)
    return f"UPDATE {t} SET {assignments} WHERE account_id = {mark} AND from_pos = {mark}"
