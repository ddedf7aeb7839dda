"""Manual stage moves: back with a reason, forward only over the facts that justify each stage."""

from __future__ import annotations

import pytest

from domain.vocabulary import AbmStage, FunnelState, Reaction
from tests.domain.scenario import (
    DROPPED,
    IN_CARE,
    IN_OUTREACH,
    PRIORITIZED,
    QUALIFIED,
    WARMED_UP,
    WON,
    deal_lost,
    funnel_moved,
    given,
    kinds,
    material_sent,
    meeting_held,
    rated,
    refused,
    response_received,
    screened,
    stage_changes,
    stage_moved,
    when,
)

IDENTIFIED, PRIORITIZED_, OUTREACH, WARM_UP = (
    AbmStage.IDENTIFIED,
    AbmStage.PRIORITIZED,
    AbmStage.OUTREACH,
    AbmStage.WARM_UP,
)
LOST = (*IN_OUTREACH, deal_lost())


def test_an_account_taken_back_a_stage_with_a_reason_records_a_manual_move():
    account = given(*IN_OUTREACH)

    events = when(account, stage_moved(PRIORITIZED_, "contact left the company"))

    assert kinds(events) == ["stage_changed"]
    assert stage_changes(events) == [("outreach", "prioritized", "manual")]
    assert events[0].reason == "contact left the company"
    assert account.stage is PRIORITIZED_


def test_an_account_can_be_taken_back_several_stages_at_once():
    account = given(*WARMED_UP)

    events = when(account, stage_moved(IDENTIFIED))

    assert stage_changes(events) == [("warm_up", "identified", "manual")]


@pytest.mark.parametrize("reason", [None, "", "  \t"])
def test_a_manual_move_without_a_reason_is_refused(reason):
    account = given(*IN_OUTREACH)

    assert refused(account, stage_moved(PRIORITIZED_, reason)).rule == "reason_required"
    assert account.stage is OUTREACH


@pytest.mark.parametrize("to", [AbmStage.WON, AbmStage.LOST, AbmStage.EXCLUDED])
def test_stages_reached_by_a_fact_cannot_be_set_by_a_move(to):
    account = given(*WARMED_UP)

    assert refused(account, stage_moved(to)).rule == "stage_set_by_fact"


def test_moving_to_the_current_stage_is_refused():
    account = given(*IN_OUTREACH)

    assert refused(account, stage_moved(OUTREACH)).rule == "stage_unchanged"


def test_an_excluded_account_cannot_be_moved_until_it_is_requalified():
    account = given(*PRIORITIZED, DROPPED)

    assert refused(account, stage_moved(PRIORITIZED_)).rule == "account_excluded"
    assert refused(account, stage_moved(IDENTIFIED)).rule == "account_excluded"


@pytest.mark.parametrize(
    "history, to, rule",
    [
        (QUALIFIED, PRIORITIZED_, "stage_requires_bant"),
        (QUALIFIED, OUTREACH, "stage_requires_bant"),
        (QUALIFIED, WARM_UP, "stage_requires_bant"),
        (PRIORITIZED, OUTREACH, "stage_requires_material_sent"),
        (PRIORITIZED, WARM_UP, "stage_requires_material_sent"),
        (IN_OUTREACH, WARM_UP, "stage_requires_warm_response"),
        (
            (*IN_OUTREACH, response_received(Reaction.NEGATIVE)),
            WARM_UP,
            "stage_requires_warm_response",
        ),
        (
            (*IN_OUTREACH, response_received(Reaction.NEUTRAL)),
            WARM_UP,
            "stage_requires_warm_response",
        ),
    ],
    ids=[
        "identified>prioritized",
        "identified>outreach",
        "identified>warm_up",
        "prioritized>outreach",
        "prioritized>warm_up",
        "outreach>warm_up",
        "outreach>warm_up after a negative response",
        "outreach>warm_up after a neutral response",
    ],
)
def test_a_forward_move_without_the_fact_of_a_stage_is_refused_naming_that_fact(history, to, rule):
    account = given(*history)

    assert refused(account, stage_moved(to)).rule == rule


@pytest.mark.parametrize(
    "back, forward",
    [
        (IDENTIFIED, WARM_UP),
        (PRIORITIZED_, WARM_UP),
        (OUTREACH, WARM_UP),
        (IDENTIFIED, OUTREACH),
        (IDENTIFIED, PRIORITIZED_),
    ],
)
def test_an_account_taken_back_can_be_moved_forward_again_over_facts_it_has(back, forward):
    account = given(*WARMED_UP, stage_moved(back))

    events = when(account, stage_moved(forward, "meeting rescheduled"))

    assert stage_changes(events) == [(back.value, forward.value, "manual")]
    assert account.stage is forward


def test_a_meeting_held_is_enough_to_move_forward_to_warm_up_again():
    account = given(*IN_OUTREACH, meeting_held(), stage_moved(PRIORITIZED_))

    events = when(account, stage_moved(WARM_UP))

    assert stage_changes(events) == [("prioritized", "warm_up", "manual")]


def test_a_forward_move_needs_a_reason_too():
    account = given(*WARMED_UP, stage_moved(PRIORITIZED_))

    assert refused(account, stage_moved(WARM_UP, None)).rule == "reason_required"


def test_a_requalified_account_with_an_old_rating_can_be_moved_forward_to_prioritized():
    account = given(*PRIORITIZED, DROPPED, screened())

    events = when(account, stage_moved(PRIORITIZED_))

    assert stage_changes(events) == [("identified", "prioritized", "manual")]


def test_a_lost_account_is_reopened_at_a_stage_whose_facts_it_has_and_drops_its_deal():
    account = given(*LOST)

    events = when(account, stage_moved(OUTREACH, "new budget year"))

    assert stage_changes(events) == [("lost", "outreach", "manual")]
    assert account.stage is OUTREACH
    assert account.deal is None


def test_a_lost_account_can_be_reopened_from_the_start():
    account = given(*LOST)

    events = when(account, stage_moved(IDENTIFIED))

    assert stage_changes(events) == [("lost", "identified", "manual")]


def test_a_lost_account_is_not_reopened_past_the_facts_it_has():
    account = given(*LOST)

    assert refused(account, stage_moved(WARM_UP)).rule == "stage_requires_warm_response"
    assert account.stage is AbmStage.LOST


def test_reopening_a_lost_account_needs_a_reason():
    account = given(*LOST)

    assert refused(account, stage_moved(OUTREACH, None)).rule == "reason_required"


def test_a_won_account_can_be_taken_back_while_it_is_not_in_care():
    account = given(*WON, funnel_moved(FunnelState.DO))

    events = when(account, stage_moved(WARM_UP, "contract cancelled before start"))

    assert stage_changes(events) == [("won", "warm_up", "manual")]
    assert account.deal is None


def test_a_won_account_in_care_cannot_leave_won_until_the_funnel_moves_back():
    account = given(*IN_CARE)

    assert refused(account, stage_moved(WARM_UP)).rule == "care_requires_won"
    assert account.stage is AbmStage.WON

    when(account, funnel_moved(FunnelState.DO, "churn risk"))
    assert stage_changes(when(account, stage_moved(WARM_UP))) == [("won", "warm_up", "manual")]


def test_a_material_after_a_move_back_to_identified_waits_for_a_rating_or_a_move():
    # Recorded in identified, the outreach would be worked off the leaderboard and reports
    account = given(*IN_OUTREACH, stage_moved(IDENTIFIED))

    assert refused(account, material_sent()).rule == "outreach_requires_prioritized"
    when(account, stage_moved(PRIORITIZED_))
    assert stage_changes(when(account, material_sent())) == [
        ("prioritized", "outreach", "material_sent")
    ]


def test_a_material_to_a_lost_account_waits_for_it_to_be_reopened():
    account = given(*IN_OUTREACH, deal_lost())

    assert refused(account, material_sent()).rule == "outreach_after_loss"
    assert account.materials_sent == 1


def test_a_rating_after_a_move_back_to_identified_prioritises_the_account_again():
    account = given(*IN_OUTREACH, stage_moved(IDENTIFIED))

    events = when(account, rated(5, 5, 5, 5))

    assert stage_changes(events) == [("identified", "prioritized", "bant_scored")]
