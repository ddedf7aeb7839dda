"""HTTP views of the read models: the account list, the BANT leaderboard and the reports.

Every page says which position of the event log it reflects (`position`); a request with
`min_position` also says whether the read model had reached it (`min_position_reached`).
"""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from msgspec import Meta, Struct, field

from contracts.accounts import AbmStageName, Body, FunnelStateName, Reason


class LeaderboardEntry(Struct, frozen=True):
    rank: int
    account_id: UUID
    name: str
    score: int
    budget: int
    authority: int
    need: int
    timing: int
    abm_stage: AbmStageName
    funnel_state: FunnelStateName
    industry: str
    country: str
    scored_at: datetime


class LeaderboardPage(Struct, frozen=True):
    items: list[LeaderboardEntry]
    position: int
    next_cursor: str | None = None
    as_of: datetime | None = None
    min_position_reached: bool | None = None


class AccountSummary(Struct, frozen=True):
    account_id: UUID
    name: str
    domain: str
    industry: str
    country: str
    region: str | None
    headcount: int
    annual_revenue: int
    revenue_currency: str
    # Null for an account listed before the read model kept them, until `crm rebuild accounts`.
    growth_rate: float | None
    source: str | None
    abm_stage: AbmStageName
    funnel_state: FunnelStateName
    score: int | None
    registered_at: datetime


class AccountPage(Struct, frozen=True):
    items: list[AccountSummary]
    position: int
    next_cursor: str | None = None
    as_of: datetime | None = None
    min_position_reached: bool | None = None


ObjectiveMetric = Literal[
    "entered_identified",
    "entered_prioritized",
    "entered_outreach",
    "entered_warm_up",
    "accounts_won",
    "accounts_lost",
]
Level = Annotated[int, Meta(ge=0, le=1_000_000_000)]
# ASCII digits only: Python's `\d` would also take other scripts' digits (٢٠٢٦). The end is
# `$(?![\s\S])`, as in contracts/accounts.py: Python's `$` also matches before a final newline.
PERIOD_PATTERN = r"^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$(?![\s\S])"
PeriodName = Annotated[
    str,
    Meta(
        pattern=PERIOD_PATTERN,
        description="A year (2026), a month (2026-03) or a day (2026-03-15).",
    ),
]


class Target(Struct, frozen=True, forbid_unknown_fields=True):
    metric: ObjectiveMetric
    acceptable: Level
    optimal: Level
    best: Level


class SetObjectives(Body):
    """Targets to set and metrics whose target to remove, at least one of either."""

    targets: Annotated[list[Target], Meta(max_length=20)] = []
    remove: Annotated[list[ObjectiveMetric], Meta(max_length=20)] = []
    reason: Reason | None = None


class ObjectivesView(Struct, frozen=True):
    period: str
    version: int
    targets: list[Target]


class ObjectivesPage(Struct, frozen=True):
    items: list[ObjectivesView]
    position: int
    next_cursor: str | None = None
    as_of: datetime | None = None
    min_position_reached: bool | None = None


class ObjectiveResult(Struct, frozen=True):
    """A target of a period against what was achieved; `level` is the highest one reached."""

    period: str
    metric: ObjectiveMetric
    actual: int
    acceptable: int
    optimal: int
    best: int
    level: Literal["below", "acceptable", "optimal", "best"]


class PeriodMoves(Struct, frozen=True):
    """How many accounts entered and left each state in one period of the window."""

    period: str  # 2026, 2026-03 or 2026-03-15, as `period` asks
    entered: dict[str, int]
    left: dict[str, int]


class Conversion(Struct, frozen=True):
    """Of the accounts that entered `from` in the window, those that entered `to` after, or
    skipped it for a later state; a win only while it stands (not moved back from `won`)."""

    from_: str = field(name="from")
    to: str
    entered: int
    converted: int
    rate: float | None  # converted / entered; none when none entered


class TimeInState(Struct, frozen=True):
    """The visits of a state that ended in the window."""

    visits: int
    median_seconds: float
    p90_seconds: float


class WinRate(Struct, frozen=True):
    """Deals closed in the window that still stood at its end, each account once."""

    won: int
    lost: int
    rate: float | None  # won / (won + lost); none when no deal closed


class ReportGroup(Struct, frozen=True, omit_defaults=True):
    """One group's figures: `all`, an industry (folded) or a country."""

    group: str
    current: dict[str, int]  # accounts in each state at as_of
    periods: list[PeriodMoves]  # the periods with moves, in order
    conversion: list[Conversion]
    time_in_state: dict[str, TimeInState]  # the states with visits that ended
    win_rate: WinRate | None = None  # the stage report's


class Report(Struct, frozen=True):
    """Figures per group (`all` without `group_by`); see the README for their definitions."""

    kind: Literal["stage", "funnel"]  # what the figures follow: ABM stages or funnel states
    start: datetime
    end: datetime
    as_of: datetime
    period: Literal["day", "month", "year"]
    group_by: Literal["industry", "country"] | None
    position: int
    groups: list[ReportGroup]
    objectives: list[ObjectiveResult] = []
    min_position_reached: bool | None = None
