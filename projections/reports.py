"""Stage and funnel reports over the `transitions` read model, and the stage report's
objectives over the `objectives` one.

For a window [start, end) (or [start, as_of] when it runs to `as_of`) and an instant `as_of`
(what was known then, up to and including `as_of`): how many accounts are in each state, how
many entered and left each state per day, month or year, the conversion from each state to the
next, the win rate, and the time spent in each state.
"""

from __future__ import annotations

import itertools
import math
import sys
from array import array
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, Literal

from sqlalchemy import Connection, text

from domain.objectives import Target
from domain.text import fold
from projections import objectives, transitions
from projections.database import from_micros, to_micros
from projections.generations import Generation, live_generation

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
    # Whether the window ends at `as_of` and takes in what was recorded at that instant, as
    # `current` does (no `to` was given): else it is open at `end`.
    through_as_of: bool = False


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
    periods, over the whole period, as `actuals`.

    The moves are read account by account, in one pass, and only the tallies are kept: a
    report over a million accounts' history holds one account's moves at a time, not all."""
    gen = live_generation(conn, transitions.NAME)
    targets: dict[str, dict[str, Target]] = {}
    position = gen.position if gen else 0
    if kind == transitions.STAGE and (set_gen := live_generation(conn, objectives.NAME)):
        first = period_of(window.start, window.period)
        last = period_of(
            window.end - timedelta(microseconds=0 if window.through_as_of else 1), window.period
        )
        targets = objectives.targets_between(conn, set_gen, first, last, targets_set_at)
        position = min(position, set_gen.position)
    tally = _Tally(kind, window, set(targets))
    if gen is not None:
        rows = moves(conn, gen, kind, window.as_of)
        for _, account in itertools.groupby(rows, key=itemgetter(0)):
            read = list(account)
            history = [(at, old, new) for _, at, old, new, _, _ in read]
            industry, country = read[-1][4:]
            if window.group_by is None:
                group = ALL
            else:  # Industries are free text: grouped and named folded, as names are sorted.
                group = fold(industry) if window.group_by == "industry" else country
            tally.add(group, history)
    return {
        "position": position,
        "groups": tally.groups(),
        "targets": targets,
        "actuals": tally.actuals,
    }


def moves(conn: Connection, gen: Generation, kind: str, as_of: datetime) -> Iterator[Any]:
    """Every move of `kind` up to `as_of` (account id, at, from state, to state, industry,
    country), account by account in log order, fetched a few thousand at a time."""
    result = conn.execute(
        text(
            f"SELECT account_id, at, from_state, to_state, industry, country "
            f"FROM {transitions.table(gen)} WHERE kind = :kind AND at <= :as_of "
            f"ORDER BY account_id, position"
        ).execution_options(stream_results=True),
        {"kind": kind, "as_of": to_micros(as_of)},
    )
    return itertools.chain.from_iterable(result.partitions(ROWS_A_FETCH))


ROWS_A_FETCH = 5_000
DAY = 86_400_000_000  # microseconds
Move = tuple[int, str | None, str]  # at, from state, to state; an account's in log order


class _Tally:
    """What a report counts, added up one account at a time."""

    def __init__(self, kind: str, window: Window, targets: set[str]) -> None:
        self.kind = kind
        self.order, self.states = (
            (STAGE_ORDER, STAGES) if kind == transitions.STAGE else (FUNNEL_ORDER, FUNNEL_ORDER)
        )
        # Where each state of the way lies; `lost` and `excluded` lie on none.
        self._rank: dict[str | None, int] = {state: i for i, state in enumerate(self.order)}
        # Each state but the last, with the states beyond it: entering any of them converts.
        self._steps = [(here, self.order[i + 1 :]) for i, here in enumerate(self.order[:-1])]
        # A report as of a deal's instant shows it won in `current`: in the periods and the
        # win rate too, when the window runs to `as_of`.
        self.start = to_micros(window.start)
        self.end = to_micros(window.end) + (1 if window.through_as_of else 0)
        self.period = window.period
        self._names: dict[int, str] = {}  # a period's name by day, made once a day
        # Without a grouping, the one group is there with no account as well: a dashboard
        # reads its zeros rather than finding no group at all.
        self._groups: dict[str, _Group] = {} if window.group_by else {ALL: _Group(self.states)}
        # Each period with a target: the accounts of all groups that entered each state in it.
        self.actuals: dict[str, dict[str, int]] = {name: {} for name in targets}
        self._ends = {name: period_bounds(name)[1] for name in targets}
        self._span = (
            (period_bounds(min(targets))[0], period_bounds(max(targets))[1]) if targets else None
        )

    def period_of(self, at: int) -> str:
        day = at // DAY
        name = self._names.get(day)
        if name is None:
            name = self._names[day] = period_of(from_micros(day * DAY), self.period)
        return name

    def add(self, group_name: str, moves: list[Move]) -> None:
        group = self._groups.get(group_name) or self._groups.setdefault(
            group_name, _Group(self.states)
        )
        start, end = self.start, self.end
        last = moves[-1][2]
        group.current[last] = group.current.get(last, 0) + 1
        first: dict[str, int] = {}  # when it first entered each state in the window
        latest: dict[str, int] = {}  # when it last entered each state
        before: Move | None = None
        for move in moves:
            at, old, new = move
            if latest.get(new, at) <= at:
                latest[new] = at
            if start <= at < end:
                if first.get(new, at) >= at:
                    first[new] = at
                day = at // DAY
                bucket = group.days.get(day) or group.day(day, self.period_of(at))
                bucket["entered"][new] = bucket["entered"].get(new, 0) + 1
                if old is not None:
                    bucket["left"][old] = bucket["left"].get(old, 0) + 1
                if before is not None:  # the visit of the state it entered before ended
                    group.durations[before[2]].append(at - before[0])
            before = move
        if last != "won":  # only a move back leaves won: a deal recorded in error is no win
            latest.pop("won", None)
        for here, beyond in self._steps:
            if here in first:  # it converted if it entered a later state after (or skipped one)
                group.cohorts[here] += 1
                since = first[here]
                group.converted[here] += any(latest.get(state, -1) >= since for state in beyond)
        if self.kind == transitions.STAGE:
            for outcome in OUTCOMES:
                group.closed[outcome] += outcome in first and _stood(moves, outcome, end)
        if self._span is not None:
            self._add_actuals(moves)

    def _add_actuals(self, moves: list[Move]) -> None:
        """The account's entries in each period with a target, each state once a period, and
        only where it went further than it had been (taken back to a stage, or reopened at one
        it had passed, is no progress toward an objective); a deal only if it stood at the
        period's end (a deal recorded in error and cleared is no deal)."""
        start, end = self._span  # type: ignore[misc]
        rank, furthest = self._rank, -1
        seen = set()
        for at, _, new in moves:
            reached = rank.get(new)
            further = reached is None or reached > furthest
            if further and reached is not None:
                furthest = reached
            if (
                (further or new in OUTCOMES)
                and start <= at < end
                and (name := self.period_of(at)) in self.actuals
            ):
                seen.add((name, new))
        for name, state in seen:
            if state not in OUTCOMES or _stood(moves, state, self._ends[name]):
                self.actuals[name][state] = self.actuals[name].get(state, 0) + 1

    def groups(self) -> list[dict[str, Any]]:
        return [
            {"group": name, **group.figures(self.order, self.kind)}
            for name, group in sorted(self._groups.items())
        ]


class _Group:
    """The tallies of one group's accounts."""

    def __init__(self, states: tuple[str, ...]) -> None:
        self.states = states
        self.current: dict[str, int] = dict.fromkeys(states, 0)
        self.periods: dict[str, dict[str, dict[str, int]]] = {}
        self.days: dict[int, dict[str, dict[str, int]]] = {}  # the same, by day
        self.cohorts: dict[str, int] = defaultdict(int)  # accounts that entered it in the window
        self.converted: dict[str, int] = defaultdict(int)  # of those, went on after
        # Each visit's length in microseconds, for the median and the 90th percentile: eight
        # bytes a visit (a list of floats took 32), the most a report holds at a million.
        self.durations: dict[str, array[int]] = defaultdict(lambda: array("q"))
        self.closed: dict[str, int] = defaultdict(int)  # deals closed in the window that stood

    def day(self, day: int, period: str) -> dict[str, dict[str, int]]:
        """The counts of the period a day (since 1970) is in, kept for the day as well."""
        bucket = self.periods.get(period)
        if bucket is None:
            bucket = self.periods[period] = {
                "entered": dict.fromkeys(self.states, 0),
                "left": dict.fromkeys(self.states, 0),
            }
        self.days[day] = bucket
        return bucket

    def figures(self, order: tuple[str, ...], kind: str) -> dict:
        conversion = [
            {
                "from": here,
                "to": following,
                "entered": self.cohorts[here],
                "converted": self.converted[here],
                "rate": (
                    round(self.converted[here] / self.cohorts[here], 4)
                    if self.cohorts[here]
                    else None
                ),
            }
            for here, following in itertools.pairwise(order)
        ]
        figures: dict[str, Any] = {
            "current": self.current,
            "periods": [{"period": p, **self.periods[p]} for p in sorted(self.periods)],
            "conversion": conversion,
            "time_in_state": {
                state: _spread(self.durations[state])
                for state in self.states
                if self.durations[state]
            },
        }
        if kind == transitions.STAGE:
            won, lost = self.closed["won"], self.closed["lost"]
            figures["win_rate"] = {
                "won": won,
                "lost": lost,
                "rate": round(won / (won + lost), 4) if won + lost else None,
            }
        return figures


def _stood(moves: list[Move], outcome: str, end: int) -> bool:
    """Whether the account was in `outcome` just before `end`."""
    before = [new for at, _, new in moves if at < end]
    return bool(before) and before[-1] == outcome


def _spread(micros: array[int]) -> dict[str, Any]:
    ordered = sorted(micros)
    count = len(ordered)
    return {
        "visits": count,
        # The two middle visits (one and the same when the count is odd: halving a doubled
        # float gives it back exactly), as seconds, averaged as statistics.median does.
        "median_seconds": (ordered[(count - 1) // 2] / 1e6 + ordered[count // 2] / 1e6) / 2,
        "p90_seconds": ordered[math.ceil(0.9 * count) - 1] / 1e6,
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
