"""Every event says who caused it, when, why and through which request; every stage or funnel
change also says from where, to where and because of what."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.account import Account, Attribution, BantRating, Contact
from domain.vocabulary import (
    AbmStage,
    BuyingRole,
    DecisionPower,
    FunnelState,
    Reaction,
    ScreeningOutcome,
)
from tests.domain.scenario import (
    ACME,
    EXCLUDED,
    IN_OUTREACH,
    PRIORITIZED,
    QUALIFIED,
    WARMED_UP,
    WON,
    given,
    kinds,
    when,
)

WHO = Attribution(
    actor="li@marketing",
    at=datetime(2026, 4, 1, 14, 5, 9, 123456, tzinfo=UTC),
    reason="quarterly review",
    request_id="req-7f3a",
)

# name: (history, command, the event types it triggers)
COMMANDS = {
    "screen excluded": (
        (),
        lambda a: a.screen(ScreeningOutcome.EXCLUDED, ["country"], None, WHO),
        ["screened", "stage_changed"],
    ),
    "screen qualified again": (
        EXCLUDED,
        lambda a: a.screen(ScreeningOutcome.QUALIFIED, ["country"], None, WHO),
        ["screened", "stage_changed"],
    ),
    "score bant": (
        QUALIFIED,
        lambda a: a.score_bant(BantRating(2, 2, 2, 2), WHO),
        ["bant_scored", "stage_changed"],
    ),
    "add contact": (
        (),
        lambda a: a.add_contact(
            Contact(uuid4(), "Ann", "CFO", BuyingRole.ECONOMIC, DecisionPower.DECISION_MAKER), WHO
        ),
        ["contact_added"],
    ),
    "send material": (
        PRIORITIZED,
        lambda a: a.send_material("cases", "post", "printed", WHO),
        ["material_sent", "stage_changed"],
    ),
    "receive response": (
        IN_OUTREACH,
        lambda a: a.receive_response(Reaction.POSITIVE, "call me", WHO),
        ["response_received", "stage_changed"],
    ),
    "hold meeting": (
        IN_OUTREACH,
        lambda a: a.hold_meeting("on site", WHO),
        ["meeting_held", "stage_changed"],
    ),
    "win deal": (WARMED_UP, lambda a: a.win_deal(5000, "EUR", WHO), ["deal_won", "stage_changed"]),
    "lose deal": (WARMED_UP, lambda a: a.lose_deal(WHO), ["deal_lost", "stage_changed"]),
    "move stage": (WARMED_UP, lambda a: a.move_stage(AbmStage.OUTREACH, WHO), ["stage_changed"]),
    "move funnel": (WON, lambda a: a.move_funnel(FunnelState.CARE, WHO), ["funnel_state_changed"]),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_event_carries_actor_reason_request_id_and_time(name):
    history, command, expected = COMMANDS[name]
    account = given(*history)

    events = when(account, command)

    assert kinds(events) == expected
    for event in events:
        assert (event.actor, event.reason, event.request_id) == (
            "li@marketing",
            "quarterly review",
            "req-7f3a",
        )
        assert event.timestamp == WHO.at
    assert account.modified_on == WHO.at


def test_the_registration_event_carries_actor_reason_request_id_and_time():
    account = Account.register(ACME, WHO)

    [event] = account.collect_events()

    assert (event.actor, event.reason, event.request_id) == (
        "li@marketing",
        "quarterly review",
        "req-7f3a",
    )
    assert event.timestamp == account.created_on == WHO.at


@pytest.mark.parametrize("name", [n for n, (_, _, kinds_) in COMMANDS.items() if len(kinds_) > 1])
def test_a_stage_change_says_from_to_and_cause_and_follows_its_fact(name):
    history, command, expected = COMMANDS[name]
    account = given(*history)
    stage_before = account.stage.value

    fact, change = when(account, command)

    assert isinstance(change, Account.StageChanged)
    assert change.from_stage == stage_before
    assert change.to_stage == account.stage.value
    assert change.cause == kinds([fact])[0]  # the fact that caused the change names it
    assert change.originator_version == fact.originator_version + 1
    assert account.stage_since == WHO.at


def test_a_manual_stage_change_says_from_to_and_cause_manual():
    history, command, _ = COMMANDS["move stage"]
    account = given(*history)

    [change] = when(account, command)

    assert (change.from_stage, change.to_stage, change.cause) == ("warm_up", "outreach", "manual")
    assert (change.actor, change.reason) == ("li@marketing", "quarterly review")


def test_a_funnel_change_says_from_to_cause_actor_and_reason():
    history, command, _ = COMMANDS["move funnel"]
    account = given(*history)

    [change] = when(account, command)

    assert (change.from_state, change.to_state, change.cause) == ("see", "care", "manual")
    assert (change.actor, change.reason, change.request_id) == (
        "li@marketing",
        "quarterly review",
        "req-7f3a",
    )
    assert account.funnel_since == WHO.at
