"""Screening policies: versioned sets of exclusion criteria for ABM stage 1.

All versions live in one `ScreeningPolicies` aggregate; creating a version is an event of its
own, so an old version is never rewritten and a decision can always say which one it used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.account import Account, Attribution, Firmographics
from domain.chain import AppliedOrUnreadable
from domain.errors import InvalidValue
from domain.text import fold
from domain.vocabulary import AbmStage, ScreeningOutcome

# Stage 1 of ABM: a policy screens only accounts that have not gone further.
SCREENABLE_STAGES = frozenset({AbmStage.IDENTIFIED, AbmStage.EXCLUDED})

POLICIES_ID: UUID = uuid5(NAMESPACE_URL, "urn:abm-crm:screening-policies")


@dataclass(frozen=True)
class Criteria:
    """What a target company must be; an empty field does not screen."""

    industries_included: tuple[str, ...] = ()
    industries_excluded: tuple[str, ...] = ()
    headcount_min: int | None = None
    headcount_max: int | None = None
    revenue_min: int | None = None
    revenue_max: int | None = None
    revenue_currency: str | None = None
    countries_included: tuple[str, ...] = ()
    countries_excluded: tuple[str, ...] = ()
    regions_included: tuple[str, ...] = ()
    growth_rate_min: float | None = None

    def __post_init__(self) -> None:
        for low, high in (("headcount_min", "headcount_max"), ("revenue_min", "revenue_max")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise InvalidValue(low, f"{low} is above {high}.")
        if (self.revenue_min is not None or self.revenue_max is not None) and not (
            self.revenue_currency
        ):
            raise InvalidValue("revenue_currency", "A revenue range needs its currency.")

    def refuse_contradictions(self) -> None:
        """A value both included and excluded says two things at once. Checked when a version
        is created, not in __post_init__: versions stored before the check must still load."""
        for kind, key in (("industries", fold), ("countries", str.upper)):
            included = {key(v) for v in getattr(self, f"{kind}_included")}
            if both := sorted(included & {key(v) for v in getattr(self, f"{kind}_excluded")}):
                raise InvalidValue(
                    f"{kind}_excluded", f"{', '.join(both)} both included and excluded."
                )

    def failed(self, company: Firmographics) -> list[str]:
        """The names of the criteria the company fails (industries and regions folded, as
        names are compared), in a fixed order: `industry`, `headcount`, `annual_revenue` or
        `revenue_currency`, `country`, `region`, `growth_rate`."""
        industry = fold(company.industry)
        failures = []
        if (
            self.industries_included and industry not in {fold(i) for i in self.industries_included}
        ) or industry in {fold(i) for i in self.industries_excluded}:
            failures.append("industry")
        if (self.headcount_min is not None and company.headcount < self.headcount_min) or (
            self.headcount_max is not None and company.headcount > self.headcount_max
        ):
            failures.append("headcount")
        if self.revenue_min is not None or self.revenue_max is not None:
            # No exchange rates are kept, so a revenue in another currency cannot be compared
            # with the range: it fails, and the failed criterion says that the currency is why.
            if company.revenue_currency != self.revenue_currency:
                failures.append("revenue_currency")
            elif (self.revenue_min is not None and company.annual_revenue < self.revenue_min) or (
                self.revenue_max is not None and company.annual_revenue > self.revenue_max
            ):
                failures.append("annual_revenue")
        if (self.countries_included and company.country not in self.countries_included) or (
            company.country in self.countries_excluded
        ):
            failures.append("country")
        if self.regions_included and (
            company.region is None
            or fold(company.region) not in {fold(r) for r in self.regions_included}
        ):
            failures.append("region")
        if self.growth_rate_min is not None and company.growth_rate < self.growth_rate_min:
            failures.append("growth_rate")
        return failures

    def as_event_data(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_event_data(cls, data: dict[str, Any]) -> Criteria:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class ScreeningDecision:
    """What a policy decides for one account, and whether applying it would change anything."""

    account_id: UUID
    name: str
    stage: AbmStage
    current: ScreeningOutcome | None
    outcome: ScreeningOutcome
    failed: list[str]
    overridden: bool
    screenable: bool

    @property
    def changes(self) -> bool:
        return self.current is not self.outcome

    @property
    def skipped(self) -> bool:
        """Left alone by the policy: overridden, or in a stage past screening."""
        return self.overridden or not self.screenable

    @property
    def applies(self) -> bool:
        return not self.skipped and self.changes

    @classmethod
    def of(cls, account: Account, criteria: Criteria) -> ScreeningDecision:
        failed = criteria.failed(account.firmographics)
        screening = account.screening
        return cls(
            account_id=account.id,
            name=account.firmographics.name,
            stage=account.stage,
            current=screening.outcome if screening else None,
            outcome=ScreeningOutcome.EXCLUDED if failed else ScreeningOutcome.QUALIFIED,
            failed=failed,
            overridden=bool(screening and screening.overridden),
            screenable=account.stage in SCREENABLE_STAGES,
        )


class ScreeningPolicies(Aggregate):
    """Every version of the screening policy, numbered from 1."""

    class Event(AppliedOrUnreadable, Aggregate.Event):
        actor: str
        reason: str | None
        request_id: str | None

    class Started(Event, Aggregate.Created):
        pass

    class VersionCreated(Event):
        version: int
        criteria: dict[str, Any]

        def apply(self, policies: ScreeningPolicies) -> None:
            policies.versions[self.version] = Criteria.from_event_data(self.criteria)
            policies.created_at[self.version] = self.timestamp

    def __init__(self, *, actor: str, reason: str | None, request_id: str | None) -> None:
        self.versions: dict[int, Criteria] = {}
        self.created_at: dict[int, Any] = {}

    @classmethod
    def start(cls, by: Attribution) -> ScreeningPolicies:
        return cls._create(cls.Started, id=POLICIES_ID, **by.event_fields())

    def create_version(self, criteria: Criteria, by: Attribution) -> int:
        criteria.refuse_contradictions()
        version = max(self.versions, default=0) + 1
        self.trigger_event(
            self.VersionCreated,
            version=version,
            criteria=criteria.as_event_data(),
            **by.event_fields(),
        )
        return version
