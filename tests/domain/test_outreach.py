"""Research and outreach: a material sent, the reaction to it (or none), meetings held."""

from __future__ import annotations

import pytest

from domain.errors import InvalidValue
from domain.vocabulary import AbmStage, Reaction
from tests.domain.scenario import (
    DROPPED,
    EXCLUDED,
    IN_OUTREACH,
    PRIORITIZED,
    QUALIFIED,
    WARMED_UP,
    by,
    given,
    kinds,
    material_sent,
    meeting_held,
    no_response,
    refused,
    response_received,
    screened,
    stage_changes,
    when,
)

POSITIVE, NEUTRAL, NEGATIVE = Reaction.POSITIVE, Reaction.NEUTRAL, Reaction.NEGATIVE


def test_sending_a_material_before_a_bant_rating_is_refused():
    account = given(*QUALIFIED)

    assert refused(account, material_sent()).rule == "outreach_requires_bant"
    assert account.materials_sent == 0


def test_sending_a_material_to_an_excluded_account_is_refused():
    account = given(*EXCLUDED)

    assert refused(account, material_sent()).rule == "account_excluded"


def test_sending_a_material_to_an_account_excluded_after_rating_is_refused():
    account = given(*PRIORITIZED, DROPPED)

    assert refused(account, material_sent()).rule == "account_excluded"


def test_a_response_or_a_meeting_on_an_account_excluded_in_outreach_is_refused_as_material_is():
    for history in (IN_OUTREACH, WARMED_UP):
        account = given(*history, DROPPED)

        for fact in (response_received(POSITIVE), response_received(NEGATIVE), meeting_held()):
            assert refused(account, fact).rule == refused(account, material_sent()).rule
            assert refused(account, fact).rule == "account_excluded"
        assert account.stage is AbmStage.EXCLUDED


def test_a_response_on_an_excluded_account_is_refused_as_excluded_before_it_asks_for_material():
    account = given(*EXCLUDED)

    assert refused(account, response_received(POSITIVE)).rule == "account_excluded"
    assert refused(account, meeting_held()).rule == "account_excluded"


def test_a_requalified_account_takes_responses_and_meetings_again():
    account = given(*IN_OUTREACH, DROPPED, screened())

    assert kinds(when(account, response_received(NEUTRAL))) == ["response_received"]
    assert kinds(when(account, meeting_held())) == ["meeting_held"]


def test_the_first_material_sent_moves_a_prioritized_account_to_outreach():
    account = given(*PRIORITIZED)

    events = when(account, material_sent("market white paper"))

    assert kinds(events) == ["material_sent", "stage_changed"]
    assert events[0].material == "market white paper"
    assert events[0].channel == "email"
    assert stage_changes(events) == [("prioritized", "outreach", "material_sent")]
    assert account.materials_sent == 1


def test_another_material_in_outreach_is_counted_without_a_stage_change():
    account = given(*IN_OUTREACH)

    events = when(account, material_sent("case list"))

    assert kinds(events) == ["material_sent"]
    assert account.materials_sent == 2
    assert account.stage is AbmStage.OUTREACH


def test_a_response_before_any_material_is_refused():
    account = given(*PRIORITIZED)

    assert refused(account, response_received(POSITIVE)).rule == "outreach_not_started"
    assert account.responses_received == 0


def test_a_meeting_before_any_material_is_refused():
    account = given(*PRIORITIZED)

    assert refused(account, meeting_held()).rule == "outreach_not_started"
    assert account.meetings_held == 0


def test_a_positive_response_moves_outreach_to_warm_up():
    account = given(*IN_OUTREACH)

    events = when(account, response_received(POSITIVE))

    assert kinds(events) == ["response_received", "stage_changed"]
    assert stage_changes(events) == [("outreach", "warm_up", "response_received")]
    assert account.last_reaction is POSITIVE
    assert account.responses_received == 1


def test_a_meeting_held_moves_outreach_to_warm_up():
    account = given(*IN_OUTREACH)

    events = when(account, meeting_held())

    assert kinds(events) == ["meeting_held", "stage_changed"]
    assert stage_changes(events) == [("outreach", "warm_up", "meeting_held")]
    assert account.meetings_held == 1


def test_a_neutral_or_negative_response_is_recorded_but_does_not_move_the_account():
    for reaction in (NEUTRAL, NEGATIVE):
        account = given(*IN_OUTREACH)

        events = when(account, response_received(reaction))

        assert kinds(events) == ["response_received"]
        assert events[0].reaction == reaction.value
        assert account.stage is AbmStage.OUTREACH
        assert account.last_reaction is reaction
        assert account.responses_received == 1


def test_a_positive_response_after_a_negative_one_still_warms_the_account_up():
    account = given(*IN_OUTREACH, response_received(NEGATIVE))

    events = when(account, response_received(POSITIVE))

    assert stage_changes(events) == [("outreach", "warm_up", "response_received")]
    assert account.responses_received == 2


def test_responses_and_meetings_in_warm_up_are_counted_without_a_stage_change():
    account = given(*WARMED_UP)

    assert kinds(when(account, meeting_held())) == ["meeting_held"]
    assert kinds(when(account, response_received(NEGATIVE))) == ["response_received"]
    assert account.stage is AbmStage.WARM_UP
    assert account.last_reaction is NEGATIVE


def test_no_response_is_recorded_as_the_reaction_none_and_moves_nothing():
    account = given(*IN_OUTREACH)

    events = when(account, no_response("two reminders"))

    assert kinds(events) == ["no_response"]
    assert events[0].note == "two reminders"
    assert account.last_reaction is Reaction.NONE
    assert (account.no_responses, account.responses_received) == (1, 0)
    assert account.stage is AbmStage.OUTREACH
    assert not account.has_warm_signal  # a manual move to warm_up still needs a warm fact


def test_a_response_after_no_response_still_warms_the_account_up():
    account = given(*IN_OUTREACH, no_response())

    events = when(account, response_received(POSITIVE))

    assert stage_changes(events) == [("outreach", "warm_up", "response_received")]
    assert account.last_reaction is POSITIVE
    assert (account.no_responses, account.responses_received) == (1, 1)


def test_no_response_needs_a_material_sent_and_an_account_on_the_target_list():
    assert refused(given(*PRIORITIZED), no_response()).rule == "outreach_not_started"
    assert refused(given(*IN_OUTREACH, DROPPED), no_response()).rule == "account_excluded"


def test_a_response_whose_reaction_is_none_is_refused_naming_no_response():
    account = given(*IN_OUTREACH)

    with pytest.raises(InvalidValue, match="no_response") as refusal:
        account.receive_response(Reaction.NONE, None, by())

    assert refusal.value.field == "reaction"
    assert account.collect_events() == []
