"""The `objectives` read model: every target set for a period, with the instant it was set,
and every removal of one (a row marked `removed`).

The stage report reads the targets of all the periods its window touches in one query, as they
stood at an instant, however many periods that is; the list of objectives (`GET /objectives`)
reads the periods a page at a time. A period's targets are events of one aggregate whose id
does not name the period, so the period each aggregate was opened for is kept beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, inspect, text

from domain.objectives import Objectives, Target
from projections.account_queries import BadCursor, Page, encode_cursor, signed_state
from projections.batch import Entry
from projections.database import from_micros, insert_rows, to_micros
from projections.generations import Generation, live_generation

NAME = "objectives"

COLUMNS = ("position", "period", "metric", "acceptable", "optimal", "best", "at", "removed")
# The events it applies.
READS = (Objectives.Opened, Objectives.TargetSet, Objectives.TargetRemoved)
CHANGES = (Objectives.TargetSet, Objectives.TargetRemoved)
# The length of a period's name of each size: 2026, 2026-03, 2026-03-15.
SIZES = {"year": 4, "month": 7, "day": 10}
ORDER = (("period", "ASC"),)  # the list's: a year, then its months, each before its days


def tables(gen: Generation) -> tuple[str, str]:
    """The targets, and the period of each objectives aggregate."""
    return gen.table("targets"), gen.table("periods")


def create_tables(conn: Connection, gen: Generation, *, query_indexes: bool = True) -> None:
    targets_table, periods_table = tables(gen)
    conn.execute(
        text(f"""
        CREATE TABLE IF NOT EXISTS {targets_table} (
            position BIGINT PRIMARY KEY,
            period TEXT NOT NULL,
            metric TEXT NOT NULL,
            acceptable BIGINT NOT NULL,
            optimal BIGINT NOT NULL,
            best BIGINT NOT NULL,
            at BIGINT NOT NULL,
            removed INTEGER NOT NULL DEFAULT 0
        )""")
    )
    conn.execute(
        text(f"""
        CREATE TABLE IF NOT EXISTS {periods_table} (
            objectives_id TEXT PRIMARY KEY,
            period TEXT NOT NULL
        )""")
    )
    if query_indexes:
        complete_tables(conn, gen)


def complete_tables(conn: Connection, gen: Generation) -> None:
    """Adds the index the queries read by, and to a table an earlier release made, the
    `removed` column (none of its rows is a removal)."""
    t, _ = tables(gen)
    if "removed" not in {c["name"] for c in inspect(conn).get_columns(t)}:
        conn.execute(text(f"ALTER TABLE {t} ADD COLUMN removed INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text(f"CREATE INDEX IF NOT EXISTS {t}_period ON {t} (period)"))


def analyze(conn: Connection, gen: Generation) -> None:
    for table in tables(gen):
        conn.execute(text(f"ANALYZE {table}"))


def drop_tables(conn: Connection, gen: Generation) -> None:
    for table in tables(gen):
        conn.execute(text(f"DROP TABLE IF EXISTS {table}"))


def apply(conn: Connection, gen: Generation, batch: list[Entry]) -> None:
    targets_table, periods_table = tables(gen)
    opened = [(o, e.period) for _, o, e in batch if isinstance(e, Objectives.Opened)]
    insert_rows(conn, periods_table, ("objectives_id", "period"), opened)
    changes = [(p, o, e) for p, o, e in batch if isinstance(e, CHANGES)]
    if not changes:
        return
    # Read after the insert: the period of objectives opened in this batch or an earlier one.
    query = text(
        f"SELECT objectives_id, period FROM {periods_table} WHERE objectives_id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    ids = sorted({o for _, o, _ in changes})
    period = {o: name for o, name in conn.execute(query, {"ids": ids})}
    rows = [
        (p, period[o], e.metric, *_levels(e), to_micros(e.timestamp), int(_removal(e)))
        for p, o, e in changes
    ]
    insert_rows(conn, targets_table, COLUMNS, rows)


def _removal(event: Any) -> bool:
    return isinstance(event, Objectives.TargetRemoved)


def _levels(event: Any) -> tuple[int, int, int]:
    """A target's levels; zeros on a removal's row, which has none."""
    if _removal(event):
        return 0, 0, 0
    return event.acceptable, event.optimal, event.best


def _stood(targets: dict[str, Target], metric: str, levels: list[int], removed: int) -> None:
    """Applies a row to `targets`, a period's targets by metric: the last row of a metric
    stands, a removal's taking its target away."""
    if removed:
        targets.pop(metric, None)
    else:
        targets[metric] = Target(metric, *levels)


def targets_between(
    conn: Connection, gen: Generation, first: str, last: str, set_at: datetime | None
) -> dict[str, dict[str, Target]]:
    """The targets of the periods from `first` to `last`, all of one size (days, months or
    years), by period in their order and by metric, as they stood at `set_at` (else as they
    stand)."""
    targets_table, _ = tables(gen)
    # Names of one size sort as the periods do; a month's days sort among the months.
    query = (
        f"SELECT period, metric, removed, acceptable, optimal, best FROM {targets_table} "
        f"WHERE period BETWEEN :first AND :last AND LENGTH(period) = :size"
    )
    params: dict[str, str | int] = {"first": first, "last": last, "size": len(first)}
    if set_at is not None:
        query += " AND at <= :set_at"
        params["set_at"] = to_micros(set_at)
    found: dict[str, dict[str, Target]] = {}
    for period, metric, removed, *levels in conn.execute(
        text(query + " ORDER BY period, position"), params
    ):
        _stood(found.setdefault(period, {}), metric, levels, removed)
    return {period: targets for period, targets in found.items() if targets}


@dataclass(frozen=True)
class PeriodFilters:
    size: Literal["year", "month", "day"] | None = None
    within: str | None = None  # a period: it and the periods inside it


def objectives_page(
    conn: Connection,
    filters: PeriodFilters,
    limit: int,
    cursor: str | None = None,
    as_of: datetime | None = None,
    *,
    key: bytes,
) -> Page:
    """The periods that have objectives, in the order of their names (2026, 2026-01,
    2026-01-15, 2026-02, …), each with its `version` and its targets as they stand, or as
    they stood at `as_of`; a cursor goes on after the last period of its page, with the same
    filters and at the same instant."""
    gen = live_generation(conn, NAME)
    if gen is None:
        return Page(rows=[], position=0)
    targets_table, periods_table = tables(gen)
    conditions, params = ["1 = 1"], {"limit": limit + 1}
    at = None if as_of is None else to_micros(as_of)
    if cursor is not None:
        after, at = _after(cursor, key, filters, at)
        conditions.append("period > :after")
        params["after"] = after
    if filters.size is not None:
        conditions.append("LENGTH(period) = :size")
        params["size"] = SIZES[filters.size]
    if filters.within is not None:
        # Only digits and hyphens: nothing in a period's name is a LIKE wildcard.
        conditions.append("(period = :within OR period LIKE :inside)")
        params |= {"within": filters.within, "inside": f"{filters.within}-%"}
    listed_from = periods_table
    if at is not None:
        # A period's objectives are opened with their first targets, in one command: it had
        # objectives at an instant when a target row was set by then.
        conditions.append("at <= :at")
        params["at"] = at
        listed_from = targets_table
    query = (
        f"SELECT DISTINCT period FROM {listed_from} WHERE {' AND '.join(conditions)} "
        f"ORDER BY period LIMIT :limit"
    )
    periods = [period for (period,) in conn.execute(text(query), params)]
    next_cursor = None
    if len(periods) > limit:
        periods = periods[:limit]
        state: dict[str, Any] = {"a": periods[-1], "f": [filters.size, filters.within]}
        if at is not None:
            state["t"] = at
        next_cursor = encode_cursor(key, state, ORDER)
    rows: dict[str, dict[str, Any]] = {
        period: {"period": period, "version": 1, "targets": {}} for period in periods
    }
    if periods:
        targets = (
            f"SELECT period, metric, removed, acceptable, optimal, best FROM {targets_table} "
            "WHERE period IN :periods"
        )
        if at is not None:
            targets += " AND at <= :at"
        statement = text(targets + " ORDER BY position").bindparams(
            bindparam("periods", expanding=True)
        )
        for period, metric, removed, *levels in conn.execute(
            statement, {"periods": periods, "at": at}
        ):
            row = rows[period]
            row["version"] += 1  # its events: the opening, then each target set or removed
            _stood(row["targets"], metric, levels, removed)
    return Page(
        rows=list(rows.values()),
        position=gen.position,
        next_cursor=next_cursor,
        as_of=None if at is None else from_micros(at),
    )


def _after(
    cursor: str, key: bytes, filters: PeriodFilters, at: int | None
) -> tuple[str, int | None]:
    """The last period of the cursor's page, and the instant its pages show (`at`, else the
    cursor's own)."""
    state = signed_state(cursor, key, ORDER)
    # Signed, so a period the list showed: a store may hold one written before periods were
    # checked as strictly as now, and paging goes on past it.
    if not (isinstance(state, dict) and isinstance(state.get("a"), str) and "f" in state):
        raise BadCursor("The cursor is not one this service issued.")
    if state["f"] != [filters.size, filters.within]:
        raise BadCursor("The cursor was issued for other filters; send it with the same.")
    if at is not None and state.get("t") != at:
        # A cursor's pages all show the instant of its first page.
        raise BadCursor("The cursor was issued for another as_of; send it with the same.")
    return state["a"], state.get("t")
