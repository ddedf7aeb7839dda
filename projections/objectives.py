"""The `objectives` read model: every target set for a period, with the instant it was set.

The stage report reads the targets of all the periods its window touches in one query, as they
stood at an instant, however many periods that is. A period's targets are events of one
aggregate whose id does not name the period, so the period each aggregate was opened for is
kept beside them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, text

from domain.objectives import Objectives, Target
from projections.batch import Entry
from projections.database import insert_rows, to_micros
from projections.generations import Generation

NAME = "objectives"

COLUMNS = ("position", "period", "metric", "acceptable", "optimal", "best", "at")
# The events it applies.
READS = (Objectives.Opened, Objectives.TargetSet)


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
            at BIGINT NOT NULL
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
    t, _ = tables(gen)
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
    target_sets = [(p, o, e) for p, o, e in batch if isinstance(e, Objectives.TargetSet)]
    if not target_sets:
        return
    # Read after the insert: the period of objectives opened in this batch or an earlier one.
    query = text(
        f"SELECT objectives_id, period FROM {periods_table} WHERE objectives_id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    ids = sorted({o for _, o, _ in target_sets})
    period = {o: name for o, name in conn.execute(query, {"ids": ids})}
    rows = [
        (p, period[o], e.metric, e.acceptable, e.optimal, e.best, to_micros(e.timestamp))
        for p, o, e in target_sets
    ]
    insert_rows(conn, targets_table, COLUMNS, rows)


def targets_between(
    conn: Connection, gen: Generation, first: str, last: str, set_at: datetime | None
) -> dict[str, dict[str, Target]]:
    """The targets of the periods from `first` to `last`, all of one size (days, months or
    years), by period in their order and by metric, as they stood at `set_at` (else as they
    stand)."""
    targets_table, _ = tables(gen)
    # Names of one size sort as the periods do; a month's days sort among the months.
    query = (
        f"SELECT period, metric, acceptable, optimal, best FROM {targets_table} "
        f"WHERE period BETWEEN :first AND :last AND LENGTH(period) = :size"
    )
    params: dict[str, str | int] = {"first": first, "last": last, "size": len(first)}
    if set_at is not None:
        query += " AND at <= :set_at"
        params["set_at"] = to_micros(set_at)
    found: dict[str, dict[str, Target]] = {}
    for period, metric, *levels in conn.execute(text(query + " ORDER BY period, position"), params):
        found.setdefault(period, {})[metric] = Target(metric, *levels)  # the last set stands
    return found
