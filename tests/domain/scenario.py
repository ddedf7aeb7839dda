"""Given-When-Then for the Account aggregate, with no store: plain method calls on a fixed clock.

    account = given(*QUALIFIED, rated(4, 3, 5, 2))   # prior facts, their events dropped
    events = when(account, material_sent())           # the new events only
    assert refused(account, deal_won()).rule == "win_requires_warm_up"

A step is a function of the account; the builders below name the usual ones, and QUALIFIED,
PRIORITIZED, IN_OUTREACH, ... are the histories that lead to each stage.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.account import Account, Attribution, BantRating, Contact, Firmographics, event_type
from domain.errors import RuleViolation
from domain.vocabulary import (
    AbmStage,
    BuyingRole,
    DecisionPower,
    FunnelState,
    Reaction,
    ScreeningOutcome,
)

Step = Callable[[Account], None]

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ACTOR = "marta@sales"
REQUEST = "req-0001"

ACME = Firmographics(
    name="Acme Industrial",
    domain="acme.com",
    industry="manufacturing",
    headcount=420,
    annual_revenue=38_000_000,
    revenue_currency="EUR",
    country="DE",
    growth_rate=0.12,
    source="trade fair",
    region="Bavaria",
)


def by(reason: str | None = None, actor: str = ACTOR, at: datetime = AT) -> Attribution:
    return Attribution(actor, at, reason, REQUEST)


# Commands, as steps ------------------------------------------------------------------------


def screened(
    outcome: ScreeningOutcome = ScreeningOutcome.QUALIFIED,
    criteria: tuple[str, ...] = ("industry", "headcount"),
    note: str | None = None,
    reason: str | None = None,
) -> Step:
    return lambda a: a.screen(outcome, list(criteria), note, by(reason))


def rated(
    budget: int = 3, authority: int = 3, need: int = 3, timing: int = 3, reason: str | None = None
) -> Step:
    return lambda a: a.score_bant(BantRating(budget, authority, need, timing), by(reason))


def contact_added(
    role: BuyingRole,
    power: DecisionPower = DecisionPower.DECISION_MAKER,
    email: str | None = None,
    name: str = "Jon Doe",
) -> Step:
    return lambda a: a.add_contact(Contact(uuid4(), name, "Director", role, power, email), by())


def material_sent(material: str = "white paper", reason: str | None = None) -> Step:
    return lambda a: a.send_material(material, "email", None, by(reason))


def response_received(reaction: Reaction, reason: str | None = None) -> Step:
    return lambda a: a.receive_response(reaction, None, by(reason))


def no_response(note: str | None = None) -> Step:
    return lambda a: a.record_no_response(note, by())


def meeting_held(reason: str | None = None) -> Step:
    return lambda a: a.hold_meeting("call with the CEO", by(reason))


def deal_won(amount: int | None = None, currency: str | None = None) -> Step:
    return lambda a: a.win_deal(amount, currency, by())


def deal_lost(reason: str | None = "chose a competitor") -> Step:
    return lambda a: a.lose_deal(by(reason))


def stage_moved(to: AbmStage, reason: str | None = "new information") -> Step:
    return lambda a: a.move_stage(to, by(reason))


def funnel_moved(to: FunnelState, reason: str | None = None) -> Step:
    return lambda a: a.move_funnel(to, by(reason))


# The usual histories -----------------------------------------------------------------------

QUALIFIED = (screened(ScreeningOutcome.QUALIFIED),)
PRIORITIZED = (*QUALIFIED, rated())
IN_OUTREACH = (*PRIORITIZED, material_sent())
WARMED_UP = (*IN_OUTREACH, response_received(Reaction.POSITIVE))
WON = (*WARMED_UP, deal_won())
IN_CARE = (*WON, funnel_moved(FunnelState.CARE))
EXCLUDED = (screened(ScreeningOutcome.EXCLUDED),)
# An account being worked (prioritized and on) leaves the pipeline with a reason.
DROPPED = screened(ScreeningOutcome.EXCLUDED, reason="not a target after all")


# Given / When / Then ---------------------------------------------------------------------


def registered(details: Firmographics = ACME) -> Account:
    return Account.register(details, by())


def given(*steps: Step) -> Account:
    """A registered account after `steps`, with every event so far already collected."""
    account = registered()
    for step in steps:
        step(account)
    account.collect_events()
    return account


def when(account: Account, command: Step) -> list[Account.Event]:
    """Runs `command` and returns the events it triggered."""
    command(account)
    return list(account.collect_events())


def refused(account: Account, command: Step) -> RuleViolation:
    """Runs a command that a rule must refuse; the refusal must leave the account untouched."""
    version = account.version
    with pytest.raises(RuleViolation) as refusal:
        command(account)
    assert account.version == version
    assert account.collect_events() == []
    return refusal.value


def kinds(events: list[Account.Event]) -> list[str]:
    return [event_type(e) for e in events]


def stage_changes(events: list[Account.Event]) -> list[tuple[str, str, str]]:
    return [
        (e.from_stage, e.to_stage, e.cause) for e in events if isinstance(e, Account.StageChanged)
    ]
