"""Identify: screening decides qualified or excluded; exclusion takes the account off the way."""

from __future__ import annotations

import pytest

from domain.errors import InvalidValue
from domain.screening_policy import Criteria
from domain.vocabulary import AbmStage, ScreeningOutcome
from tests.domain.scenario import (
    ACME,
    AT,
    EXCLUDED,
    IN_OUTREACH,
    PRIORITIZED,
    WARMED_UP,
    WON,
    deal_lost,
    given,
    kinds,
    refused,
    screened,
    stage_changes,
    when,
)

QUALIFIED, EXCLUDE = ScreeningOutcome.QUALIFIED, ScreeningOutcome.EXCLUDED


def test_a_qualified_screening_records_its_criteria_and_keeps_the_account_identified():
    account = given()

    events = when(account, screened(QUALIFIED, ("industry", "revenue"), note="fits"))

    assert kinds(events) == ["screened"]
    assert account.stage is AbmStage.IDENTIFIED
    assert account.is_qualified
    assert account.screening.outcome is QUALIFIED
    assert account.screening.criteria == ("industry", "revenue")
    assert account.screening.note == "fits"
    assert account.screening.at == AT


def test_an_excluded_screening_moves_the_account_to_excluded_because_it_was_screened():
    account = given()

    events = when(account, screened(EXCLUDE, ("headcount", "country")))

    assert kinds(events) == ["screened", "stage_changed"]
    assert stage_changes(events) == [("identified", "excluded", "screened")]
    assert account.stage is AbmStage.EXCLUDED
    assert not account.is_qualified
    assert account.screening.criteria == ("headcount", "country")


def test_an_account_in_the_middle_of_outreach_can_be_excluded_with_a_reason():
    account = given(*IN_OUTREACH)

    events = when(account, screened(EXCLUDE, reason="the group closed this plant"))

    assert stage_changes(events) == [("outreach", "excluded", "screened")]
    assert events[0].reason == "the group closed this plant"


@pytest.mark.parametrize("history", [PRIORITIZED, IN_OUTREACH, WARMED_UP])
def test_excluding_an_account_being_worked_without_a_reason_is_refused(history):
    account = given(*history)
    stage = account.stage

    assert refused(account, screened(EXCLUDE)).rule == "reason_required"
    assert refused(account, screened(EXCLUDE, reason="  ")).rule == "reason_required"
    assert account.stage is stage
    assert kinds(when(account, screened(QUALIFIED))) == ["screened"]  # a check that keeps it


def test_an_excluded_account_screened_excluded_again_stays_excluded_without_a_stage_change():
    account = given(*EXCLUDED)

    events = when(account, screened(EXCLUDE, ("revenue",)))

    assert kinds(events) == ["screened"]
    assert account.stage is AbmStage.EXCLUDED
    assert account.screening.criteria == ("revenue",)


def test_an_excluded_account_requalified_returns_to_identified():
    account = given(*EXCLUDED)

    events = when(account, screened(QUALIFIED))

    assert kinds(events) == ["screened", "stage_changed"]
    assert stage_changes(events) == [("excluded", "identified", "screened")]
    assert account.stage is AbmStage.IDENTIFIED
    assert account.is_qualified


def test_an_account_already_under_way_requalified_keeps_its_stage():
    account = given(*WARMED_UP)

    events = when(account, screened(QUALIFIED))

    assert kinds(events) == ["screened"]
    assert account.stage is AbmStage.WARM_UP


def test_screening_a_lost_account_is_refused_so_its_loss_stays_counted():
    account = given(*IN_OUTREACH, deal_lost())

    for outcome in (EXCLUDE, QUALIFIED):
        error = refused(account, screened(outcome, reason="went out of business"))
        assert error.rule == "screening_after_loss"
        assert "reopen" in error.detail
    assert account.stage is AbmStage.LOST
    assert account.deal.outcome == "lost"


def test_screening_a_won_account_is_refused():
    account = given(*WON)

    assert refused(account, screened(EXCLUDE)).rule == "screening_after_win"
    assert refused(account, screened(QUALIFIED)).rule == "screening_after_win"
    assert account.stage is AbmStage.WON


def test_an_exclusion_without_criteria_is_refused():
    account = given()

    error = refused(account, screened(ScreeningOutcome.EXCLUDED, criteria=()))

    assert error.rule == "exclusion_requires_criteria"


def test_a_criterion_named_twice_is_refused_naming_it():
    account = given()

    with pytest.raises(InvalidValue) as refusal:
        screened(ScreeningOutcome.EXCLUDED, criteria=("industry", "region", "industry"))(account)

    assert refusal.value.field == "criteria"
    assert "'industry' given more than once" in str(refusal.value)
    assert account.collect_events() == []


@pytest.mark.parametrize("written", ["Bavaria", "bavaria", "BAVARIA"])
def test_a_policys_regions_match_a_companys_region_whatever_the_letter_case(written):
    criteria = Criteria(industries_included=("MANUFACTURING",), regions_included=(written,))

    assert criteria.failed(ACME) == []  # ACME is a manufacturer in Bavaria
