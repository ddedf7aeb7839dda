"""HTTP views of the read models: the account list, the BANT leaderboard and the reports.

Every page says which position of the event log it reflects (`position`); a request with
`min_position` also says whether the read model had reached it (`min_position_reached`).
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from msgspec import Struct

from contracts.accounts import AbmStageName, FunnelStateName


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


class Report(Struct, frozen=True):
    """Figures per group (`all` without `group_by`); see the README for their definitions."""

    kind: str
    start: datetime
    end: datetime
    as_of: datetime
    period: str
    group_by: str | None
    position: int
    groups: list[dict[str, Any]]
    min_position_reached: bool | None = None
