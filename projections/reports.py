"""Stage and funnel reports over the `transitions` read model, and the stage report's
objectives over the `objectives` one.

For a window [start, end) and an instant `as_of` (what was known then): how many accounts are
in each state, how many entered and left each state per day, month or year, the conversion
from each state to the next, the win rate, and the time spent in each state.
"""

from __future__ import annotations

import itertools
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, text

from domain.objectives import Target
from domain.text import fold
from projections import objectives, transitions
from projections.database import from_micros, to_micros
from projections.generations import live_generation

Period = Literal["day", "month", "year"]
STAGE_ORDER = ("identified", "prioritized", "outreach", "warm_up", "won")
STAGES = (*STAGE_ORDER, "lost", "excluded")
OUTCOMES = ("won", "lost")
FUNNEL_ORDER = ("see", "think", "do", "care")
ALL = "all"


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    as_of: datetime
    period: Period
    group_by: Literal["industry", "country"] | None = None


def period_of(instant: datetime, period: Period) -> str:
    # The ISO form writes a year in four digits, where strftime writes 0999 as 999: a name
    # no objective is set under.
    return instant.date().isoformat()[: {"day": 10, "month": 7, "year": 4}[period]]


def report(
    conn: Connection, kind: str, window: Window, targets_set_at: datetime | None = None
) -> dict[str, Any]:
    """`kind` is `stage` or `funnel`; the figures per group (or for `all`), and for the stage
    report the `targets` of the periods the window touches, as set at `targets_set_at` (else
    as they stand), with the accounts of all groups that entered each state in each of those
    periods, over the whole period, as `actuals`."""
    gen = live_generation(conn, transitions.NAME)
    order, states = (
        (STAGE_ORDER, STAGES) if kind == transitions.STAGE else (FUNNEL_ORDER, FUNNEL_ORDER)
    )
    rows = (
        []
        if gen is None
        else conn.execute(
            text(
                f"SELECT account_id, at, from_state, to_state, industry, country "
                f"FROM {transitions.table(gen)} WHERE kind = :kind AND at <= :as_of "
                f"ORDER BY account_id, position"
            ),
            {"kind": kind, "as_of": to_micros(window.as_of)},
        ).all()
    )
    by_group: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        # Industries are free text: grouped and named folded, as names are sorted.
        group = ALL if window.group_by is None else getattr(row, window.group_by)
        if window.group_by == "industry":
            group = fold(group)
        by_group[group].append(row)
    by_account = _by_account(rows)
    targets: dict[str, dict[str, Target]] = {}
    position = gen.position if gen else 0
    if kind == transitions.STAGE and (set_gen := live_generation(conn, objectives.NAME)):
        first = period_of(window.start, window.period)
        last = period_of(window.end - timedelta(microseconds=1), window.period)
        targets = objectives.targets_between(conn, set_gen, first, last, targets_set_at)
        position = min(position, set_gen.position)
    return {
        "position": position,
        "groups": [
            {"group": group, **_figures(group_rows, window, order, states, kind)}
            for group, group_rows in sorted(by_group.items())
        ],
        "targets": targets,
        "actuals": _entered_per_period(by_account, set(targets), window.period),
    }


def _by_account(rows: list[Any]) -> dict[str, list[Any]]:
    by_account: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_account[row.account_id].append(row)
    return by_account


def _entered(by_account: dict[str, list[Any]], start: int, end: int) -> dict[str, int]:
    """How many accounts entered each state in [start, end); a deal counts only while it stood
    at the end (a deal recorded in error and cleared is no deal), each account once."""
    entered: dict[str, int] = defaultdict(int)
    for moves in by_account.values():
        for state in {m.to_state for m in moves if start <= m.at < end}:
            if _counts(moves, state, end):
                entered[state] += 1
    return dict(entered)


def _counts(moves: list[Any], state: str, end: int) -> bool:
    """Whether entering `state` counts in a period ending at `end`: a deal only if it stood."""
    return state not in OUTCOMES or _stood(moves, state, end)


def _entered_per_period(
    by_account: dict[str, list[Any]], names: set[str], period: Period
) -> dict[str, dict[str, int]]:
    """`_entered` for each of the periods named (all of `period`'s size), in one pass over the
    moves rather than one a period."""
    if not names:
        return {}
    start, end = period_bounds(min(names))[0], period_bounds(max(names))[1]
    entered: dict[str, dict[str, int]] = {name: defaultdict(int) for name in names}
    for moves in by_account.values():
        states = {
            (name, m.to_state)
            for m in moves
            if start <= m.at < end and (name := period_of(from_micros(m.at), period)) in names
        }
        for name, state in states:
            if _counts(moves, state, period_bounds(name)[1]):
                entered[name][state] += 1
    return {name: dict(counts) for name, counts in entered.items()}


def _stood(moves: list[Any], outcome: str, end: int) -> bool:
    """Whether the account was in `outcome` just before `end`."""
    before = [m for m in moves if m.at < end]
    return bool(before) and before[-1].to_state == outcome


def _figures(
    rows: list[Any], window: Window, order: tuple[str, ...], states: tuple[str, ...], kind: str
) -> dict[str, Any]:
    start, end = to_micros(window.start), to_micros(window.end)
    current: dict[str, int] = dict.fromkeys(states, 0)
    periods: dict[str, dict[str, dict[str, int]]] = {}
    entered_in_window: dict[str, set[str]] = defaultdict(set)
    durations: dict[str, list[float]] = defaultdict(list)
    by_account = _by_account(rows)
    for moves in by_account.values():
        current[moves[-1].to_state] = current.get(moves[-1].to_state, 0) + 1
        for i, move in enumerate(moves):
            if start <= move.at < end:
                entered_in_window[move.to_state].add(move.account_id)
                bucket = periods.setdefault(
                    period_of(from_micros(move.at), window.period),
                    {"entered": dict.fromkeys(states, 0), "left": dict.fromkeys(states, 0)},
                )
                bucket["entered"][move.to_state] = bucket["entered"].get(move.to_state, 0) + 1
                if move.from_state is not None:
                    bucket["left"][move.from_state] = bucket["left"].get(move.from_state, 0) + 1
            if i > 0 and start <= move.at < end:
                entered = moves[i - 1]
                durations[entered.to_state].append((move.at - entered.at) / 1_000_000)

    conversion = []
    for here, following in itertools.pairwise(order):
        cohort = entered_in_window[here]
        converted = sum(1 for a in cohort if _entered_after(by_account[a], here, following, start))
        conversion.append(
            {
                "from": here,
                "to": following,
                "entered": len(cohort),
                "converted": converted,
                "rate": round(converted / len(cohort), 4) if cohort else None,
            }
        )
    figures: dict[str, Any] = {
        "current": current,
        "periods": [{"period": p, **periods[p]} for p in sorted(periods)],
        "conversion": conversion,
        "time_in_state": {state: _spread(durations[state]) for state in states if durations[state]},
    }
    if kind == transitions.STAGE:
        closed = _entered(by_account, start, end)
        won, lost = closed.get("won", 0), closed.get("lost", 0)
        figures["win_rate"] = {
            "won": won,
            "lost": lost,
            "rate": round(won / (won + lost), 4) if won + lost else None,
        }
    return figures


def _entered_after(moves: list[Any], here: str, following: str, start: int) -> bool:
    """Whether the account entered `following` after it first entered `here` in the window."""
    entered_here = min(m.at for m in moves if m.to_state == here and m.at >= start)
    return any(m.to_state == following and m.at >= entered_here for m in moves)


def _spread(seconds: list[float]) -> dict[str, Any]:
    ordered = sorted(seconds)
    return {
        "visits": len(ordered),
        "median_seconds": statistics.median(ordered),
        "p90_seconds": ordered[math.ceil(0.9 * len(ordered)) - 1],
    }


def period_bounds(name: str) -> tuple[int, int]:
    """A year (2026), month (2026-03) or day (2026-03-15) as [start, end) in microseconds."""
    parts = [int(p) for p in name.split("-")]
    granularity: Period = ("year", "month", "day")[len(parts) - 1]
    start = datetime(*(parts + [1, 1])[:3], tzinfo=UTC)
    try:
        end = to_micros(_next_period(start, granularity))
    except (ValueError, OverflowError):  # the end of year 9999: the end of time
        end = sys.maxsize
    return to_micros(start), end


def _next_period(instant: datetime, period: Period) -> datetime:
    if period == "day":
        return (instant + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        year, month = (
            (instant.year + 1, 1) if instant.month == 12 else (instant.year, instant.month + 1)
        )
        return instant.replace(
            year=year, month=month, day=1, hour=0, minute=0, second=0, microsecond=0
        )
    return instant.replace(
        year=instant.year + 1, month=1, day=1, hour=0, minute=0, second=0, microsecond=0
    )
