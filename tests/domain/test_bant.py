"""Prioritise: BANT ratings of qualified accounts; the score is the product of the four."""

from __future__ import annotations

import pytest

from domain.account import BantRating
from domain.errors import InvalidValue
from domain.vocabulary import AbmStage
from tests.domain.scenario import (
    AT,
    DROPPED,
    EXCLUDED,
    IN_OUTREACH,
    PRIORITIZED,
    QUALIFIED,
    WARMED_UP,
    by,
    given,
    kinds,
    rated,
    refused,
    stage_changes,
    when,
)


def test_rating_an_unscreened_account_is_refused():
    account = given()

    assert refused(account, rated()).rule == "bant_requires_qualified"
    assert account.bant is None


def test_rating_an_excluded_account_is_refused():
    account = given(*EXCLUDED)

    assert refused(account, rated()).rule == "bant_requires_qualified"


def test_rating_an_account_excluded_after_being_rated_is_refused():
    account = given(*PRIORITIZED, DROPPED)

    assert refused(account, rated(5, 5, 5, 5)).rule == "bant_requires_qualified"
    assert account.bant.score == 81


def test_the_score_is_the_product_of_budget_authority_need_and_timing():
    account = given(*QUALIFIED)

    when(account, rated(4, 3, 5, 2))

    assert account.bant.score == 4 * 3 * 5 * 2
    assert (account.bant.budget, account.bant.authority) == (4, 3)
    assert (account.bant.need, account.bant.timing) == (5, 2)
    assert account.bant_scored_at == AT


@pytest.mark.parametrize("values, score", [((1, 1, 1, 1), 1), ((5, 5, 5, 5), 625)])
def test_the_score_ranges_from_1_to_625(values, score):
    assert BantRating(*values).score == score


def test_the_first_rating_prioritises_an_identified_account_after_the_score():
    account = given(*QUALIFIED)

    events = when(account, rated(4, 3, 5, 2))

    assert kinds(events) == ["bant_scored", "stage_changed"]
    assert stage_changes(events) == [("identified", "prioritized", "bant_scored")]
    assert account.stage is AbmStage.PRIORITIZED


def test_a_re_rating_replaces_the_current_rating_without_a_stage_change():
    account = given(*PRIORITIZED)

    events = when(account, rated(5, 4, 4, 5))

    assert kinds(events) == ["bant_scored"]
    assert (events[0].budget, events[0].authority, events[0].need, events[0].timing) == (5, 4, 4, 5)
    assert account.bant.score == 400
    assert account.stage is AbmStage.PRIORITIZED


def test_a_re_rating_later_in_the_pipeline_keeps_the_stage():
    for history, stage in [(IN_OUTREACH, AbmStage.OUTREACH), (WARMED_UP, AbmStage.WARM_UP)]:
        account = given(*history)

        events = when(account, rated(1, 2, 1, 2))

        assert kinds(events) == ["bant_scored"]
        assert account.stage is stage


def test_a_rating_keeps_its_notes_per_dimension():
    account = given(*QUALIFIED)

    notes = {"budget": "approved for Q3", "timing": "signs in May"}
    events = when(account, lambda a: a.score_bant(BantRating(4, 3, 5, 2, notes), by()))

    assert events[0].notes == notes
    assert account.bant.notes == notes


@pytest.mark.parametrize("dimension", ["budget", "authority", "need", "timing"])
@pytest.mark.parametrize("value", [0, 6, -1, 3.0, "3", True, None])
def test_a_rating_outside_1_to_5_or_not_an_integer_is_invalid(dimension, value):
    values = {"budget": 3, "authority": 3, "need": 3, "timing": 3, dimension: value}

    with pytest.raises(InvalidValue) as refusal:
        BantRating(**values)

    assert refusal.value.field == dimension


def test_a_note_on_something_that_is_not_a_bant_dimension_is_invalid():
    with pytest.raises(InvalidValue) as refusal:
        BantRating(3, 3, 3, 3, {"price": "cheap"})

    assert refusal.value.field == "notes"
