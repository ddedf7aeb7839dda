"""Warm-up ends in a deal: won only from warm_up, lost (with a reason) from an active stage."""

from __future__ import annotations

import pytest

from domain.errors import InvalidValue
from domain.vocabulary import AbmStage
from tests.domain.scenario import (
    AT,
    EXCLUDED,
    IN_OUTREACH,
    PRIORITIZED,
    QUALIFIED,
    WARMED_UP,
    WON,
    by,
    deal_lost,
    deal_won,
    given,
    kinds,
    refused,
    stage_changes,
    when,
)


def test_a_deal_won_in_warm_up_makes_the_account_won():
    account = given(*WARMED_UP)

    events = when(account, deal_won(120_000, "EUR"))

    assert kinds(events) == ["deal_won", "stage_changed"]
    assert stage_changes(events) == [("warm_up", "won", "deal_won")]
    assert account.stage is AbmStage.WON
    assert (account.deal.outcome, account.deal.amount, account.deal.currency) == (
        "won",
        120_000,
        "EUR",
    )
    assert account.deal.at == AT


def test_a_deal_can_be_won_without_an_amount():
    account = given(*WARMED_UP)

    when(account, deal_won())

    assert account.deal.outcome == "won"
    assert account.deal.amount is None


@pytest.mark.parametrize(
    "history",
    [(), QUALIFIED, PRIORITIZED, IN_OUTREACH, EXCLUDED, WON, (*IN_OUTREACH, deal_lost())],
    ids=["identified", "qualified", "prioritized", "outreach", "excluded", "won", "lost"],
)
def test_a_deal_is_won_only_from_warm_up(history):
    account = given(*history)

    assert refused(account, deal_won()).rule == "win_requires_warm_up"


@pytest.mark.parametrize("amount, currency", [(1000, None), (None, "EUR")])
def test_a_deal_amount_goes_with_its_currency(amount, currency):
    account = given(*WARMED_UP)
    version = account.version

    with pytest.raises(InvalidValue) as refusal:
        account.win_deal(amount, currency, by())

    assert refusal.value.field == "currency"
    assert account.version == version
    assert account.stage is AbmStage.WARM_UP


@pytest.mark.parametrize(
    "history, stage",
    [(PRIORITIZED, "prioritized"), (IN_OUTREACH, "outreach"), (WARMED_UP, "warm_up")],
)
def test_a_deal_is_lost_from_any_active_stage_with_its_reason(history, stage):
    account = given(*history)

    events = when(account, deal_lost("budget frozen"))

    assert kinds(events) == ["deal_lost", "stage_changed"]
    assert stage_changes(events) == [(stage, "lost", "deal_lost")]
    assert all(e.reason == "budget frozen" for e in events)
    assert account.stage is AbmStage.LOST
    assert (account.deal.outcome, account.deal.reason) == ("lost", "budget frozen")


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_lost_deal_without_a_reason_is_refused(reason):
    account = given(*WARMED_UP)

    assert refused(account, deal_lost(reason)).rule == "reason_required"
    assert account.stage is AbmStage.WARM_UP


@pytest.mark.parametrize(
    "history",
    [(), QUALIFIED, EXCLUDED, WON, (*IN_OUTREACH, deal_lost())],
    ids=["identified", "qualified", "excluded", "won", "lost"],
)
def test_a_deal_is_not_lost_outside_the_active_stages(history):
    account = given(*history)

    assert refused(account, deal_lost()).rule == "loss_requires_active_stage"


def test_a_negative_deal_amount_is_refused():
    account = given(*WARMED_UP)

    with pytest.raises(InvalidValue) as refusal:
        account.win_deal(-1, "EUR", by())

    assert refusal.value.field == "amount"
