"""The funnel See — Think — Do — Care: forward freely, back with a reason, care for the won."""

from __future__ import annotations

import pytest

from domain.vocabulary import AbmStage, FunnelState
from tests.domain.scenario import (
    AT,
    IN_CARE,
    WARMED_UP,
    WON,
    funnel_moved,
    given,
    kinds,
    refused,
    when,
)

SEE, THINK, DO, CARE = FunnelState.SEE, FunnelState.THINK, FunnelState.DO, FunnelState.CARE


def funnel_changes(events):
    return [(e.from_state, e.to_state, e.cause) for e in events]


def test_an_account_moves_forward_in_the_funnel_without_a_reason():
    account = given()

    events = when(account, funnel_moved(THINK))

    assert kinds(events) == ["funnel_state_changed"]
    assert funnel_changes(events) == [("see", "think", "manual")]
    assert account.funnel is THINK
    assert account.funnel_since == AT


def test_a_forward_move_in_the_funnel_may_skip_states():
    account = given()

    events = when(account, funnel_moved(DO))

    assert funnel_changes(events) == [("see", "do", "manual")]


def test_the_funnel_does_not_change_the_abm_stage():
    account = given(*WARMED_UP)

    when(account, funnel_moved(DO))

    assert account.stage is AbmStage.WARM_UP


@pytest.mark.parametrize("history", [(), WARMED_UP], ids=["identified", "warm_up"])
def test_care_is_refused_to_an_account_that_is_not_won(history):
    account = given(*history, funnel_moved(DO))

    assert refused(account, funnel_moved(CARE)).rule == "care_requires_won"
    assert account.funnel is DO


def test_a_won_account_can_go_into_care_even_straight_from_see():
    account = given(*WON)

    events = when(account, funnel_moved(CARE))

    assert funnel_changes(events) == [("see", "care", "manual")]
    assert account.funnel is CARE


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_move_back_in_the_funnel_without_a_reason_is_refused(reason):
    account = given(funnel_moved(DO))

    assert refused(account, funnel_moved(THINK, reason)).rule == "reason_required"
    assert account.funnel is DO


def test_a_move_back_in_the_funnel_with_a_reason_is_recorded_with_it():
    account = given(funnel_moved(DO))

    events = when(account, funnel_moved(SEE, "project postponed a year"))

    assert funnel_changes(events) == [("do", "see", "manual")]
    assert events[0].reason == "project postponed a year"
    assert account.funnel is SEE


def test_a_customer_in_care_can_be_moved_back_with_a_reason():
    account = given(*IN_CARE)

    events = when(account, funnel_moved(THINK, "unhappy with support"))

    assert funnel_changes(events) == [("care", "think", "manual")]
    assert account.stage is AbmStage.WON


@pytest.mark.parametrize("state", list(FunnelState))
def test_moving_to_the_current_funnel_state_is_refused(state):
    account = given(*WON, *([funnel_moved(state)] if state is not SEE else []))

    assert refused(account, funnel_moved(state, "again")).rule == "funnel_unchanged"
