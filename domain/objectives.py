"""Objectives: the Control step of a SOSTAC plan, targets for a period at three levels."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.account import Attribution
from domain.chain import AppliedOrUnreadable
from domain.errors import InvalidValue, RuleViolation

OBJECTIVES_NAMESPACE = uuid5(NAMESPACE_URL, "urn:abm-crm:objectives")
# Matched whole (fullmatch): `$` alone would also take "2026\n", a period apart from 2026.
PERIOD = re.compile(r"[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?")

# What a target can be set for: accounts entering a stage, or deals closed, in the period.
METRICS = (
    "entered_identified",
    "entered_prioritized",
    "entered_outreach",
    "entered_warm_up",
    "accounts_won",
    "accounts_lost",
)

# The state each metric counts the entries of: the stage an account enters, or the deal's end.
METRIC_STATES = {
    "entered_identified": "identified",
    "entered_prioritized": "prioritized",
    "entered_outreach": "outreach",
    "entered_warm_up": "warm_up",
    "accounts_won": "won",
    "accounts_lost": "lost",
}
assert tuple(METRIC_STATES) == METRICS


def is_period(text: str) -> bool:
    """A year, a month or a day of the calendar: 2026, 2026-03, 2024-02-29; not 2026-02-30, not
    year 0000."""
    if not PERIOD.fullmatch(text):
        return False
    year, month, day = (*map(int, text.split("-")), 1, 1)[:3]
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def check_period(text: str) -> None:
    if not is_period(text):
        raise InvalidValue(
            "period",
            f"{text!r} is not a period of the calendar such as 2026, 2026-03 or 2026-03-15.",
        )


def objectives_id(period: str) -> UUID:
    return uuid5(OBJECTIVES_NAMESPACE, period)


# Deals lost: the fewer the better, so its levels fall from acceptable to best.
FEWER_IS_BETTER = frozenset({"accounts_lost"})


@dataclass(frozen=True)
class Target:
    metric: str
    acceptable: int
    optimal: int
    best: int

    def level(self, actual: int) -> str:
        """The highest level `actual` reaches: best, optimal, acceptable, else below."""
        levels = (("best", self.best), ("optimal", self.optimal), ("acceptable", self.acceptable))
        if self.metric in FEWER_IS_BETTER:
            return next((name for name, value in levels if actual <= value), "below")
        return next((name for name, value in levels if actual >= value), "below")


class Objectives(Aggregate):
    """The targets of one period: a year (2026), a month (2026-03) or a day (2026-03-15)."""

    class Event(AppliedOrUnreadable, Aggregate.Event):
        actor: str
        reason: str | None
        request_id: str | None

    class Opened(Event, Aggregate.Created):
        period: str

    class TargetSet(Event):
        metric: str
        acceptable: int
        optimal: int
        best: int

        def apply(self, objectives: Objectives) -> None:
            objectives.targets[self.metric] = Target(
                self.metric, self.acceptable, self.optimal, self.best
            )

    class TargetRemoved(Event):
        metric: str

        def apply(self, objectives: Objectives) -> None:
            del objectives.targets[self.metric]

    def __init__(self, *, period: str, actor: str, reason: str | None, request_id: str | None):
        self.period = period
        self.targets: dict[str, Target] = {}

    @staticmethod
    def create_id(period: str, **_: Any) -> UUID:
        return objectives_id(period)

    @classmethod
    def open(cls, period: str, by: Attribution) -> Objectives:
        check_period(period)
        return cls._create(cls.Opened, period=period, **by.event_fields())

    def set_target(self, target: Target, by: Attribution) -> None:
        if target.metric not in METRICS:
            raise InvalidValue("metric", f"{target.metric!r} is not one of {', '.join(METRICS)}.")
        if target.metric in FEWER_IS_BETTER:
            if not target.acceptable >= target.optimal >= target.best >= 0:
                raise RuleViolation(
                    "objective_levels_order",
                    f"For {target.metric} fewer is better, so levels must fall: "
                    "acceptable >= optimal >= best >= 0.",
                )
        elif not 0 <= target.acceptable <= target.optimal <= target.best:
            raise RuleViolation(
                "objective_levels_order",
                "Levels must rise: 0 <= acceptable <= optimal <= best.",
            )
        if self.targets.get(target.metric) == target:
            return  # setting the same target again changes nothing
        self.trigger_event(
            self.TargetSet,
            metric=target.metric,
            acceptable=target.acceptable,
            optimal=target.optimal,
            best=target.best,
            **by.event_fields(),
        )

    def remove_target(self, metric: str, by: Attribution) -> None:
        """The period has no target for `metric` any more (none set: nothing changes)."""
        if metric not in METRICS:
            raise InvalidValue("remove", f"{metric!r} is not one of {', '.join(METRICS)}.")
        if metric in self.targets:
            self.trigger_event(self.TargetRemoved, metric=metric, **by.event_fields())
