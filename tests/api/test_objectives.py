"""Objectives over HTTP: the periods they may be set for, and Idempotency-Key. On both stores."""

from __future__ import annotations

from datetime import timedelta

import pytest

WON = {"targets": [{"metric": "accounts_won", "acceptable": 1, "optimal": 2, "best": 3}]}
MORE_WON = {"targets": [{"metric": "accounts_won", "acceptable": 5, "optimal": 6, "best": 7}]}


def events_in_store(ledger) -> int:
    return len(ledger.recorder.select_notifications(1, 1_000_000))


@pytest.mark.parametrize("period", ["2026", "2026-03", "2026-03-15", "2024-02-29"])
def test_a_year_a_month_or_a_day_of_the_calendar_takes_objectives(client, period):
    response = client.put(f"/objectives/{period}", json=WON)

    assert response.status_code == 200, response.text
    assert response.json()["period"] == period
    assert client.get(f"/objectives/{period}").json() == response.json()


@pytest.mark.parametrize("period", ["2026-02-30", "2025-02-29", "2026-04-31", "0000", "0000-01"])
def test_a_period_that_is_not_on_the_calendar_is_refused_naming_it(client, ledger, period):
    response = client.put(f"/objectives/{period}", json=WON)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == "period"
    assert period in response.json()["detail"]
    assert events_in_store(ledger) == 0
    assert client.get(f"/objectives/{period}").status_code == 400


@pytest.mark.parametrize("period", ["\u0662\u0660\u0662\u0666", "\uff12\uff10\uff12\uff16"])
def test_a_period_in_other_digits_than_ascii_is_refused(client, ledger, period):
    # ٢٠٢٦ or ２０２６ would be stored apart from 2026, where no report ever looks.
    response = client.put(f"/objectives/{period}", json=WON)

    assert response.status_code == 400, response.text
    assert response.json()["field"] == "period"
    assert events_in_store(ledger) == 0


def test_a_period_with_a_line_break_after_it_is_refused_not_stored_apart(client, ledger):
    # "2026\n" would be stored as a period of its own, where no report or list looks.
    response = client.put("/objectives/2026%0A", json=WON)

    assert (response.status_code, response.json()["field"]) == (400, "period")
    assert events_in_store(ledger) == 0
    assert client.get("/objectives/2026%0A").status_code == 400


def test_a_metric_given_twice_in_one_request_is_refused_naming_it(client, ledger):
    twice = {"targets": WON["targets"] + MORE_WON["targets"]}

    response = client.put("/objectives/2026", json=twice)

    assert (response.status_code, response.json()["field"]) == (422, "targets")
    assert "accounts_won" in response.json()["detail"]
    assert events_in_store(ledger) == 0


def test_a_name_given_twice_in_a_target_is_400_naming_it(client, ledger):
    raw = (
        b'{"targets": [{"metric": "accounts_won", "acceptable": 1, "optimal": 2, "best": 3},'
        b' {"metric": "accounts_lost", "acceptable": 1, "optimal": 2, "best": 3, "best": 9}]}'
    )

    response = client.put(
        "/objectives/2026", content=raw, headers={"Content-Type": "application/json"}
    )

    assert (response.status_code, response.json()["field"]) == (400, "targets[1].best")
    assert events_in_store(ledger) == 0


def test_objectives_retried_with_the_same_key_and_body_answer_as_the_first_time(client, ledger):
    headers = {"Idempotency-Key": "objectives-1"}
    first = client.put("/objectives/2026-03", json=WON, headers=headers)
    client.put("/objectives/2026-03", json=MORE_WON)
    stored = events_in_store(ledger)

    again = client.put("/objectives/2026-03", json=WON, headers=headers)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert events_in_store(ledger) == stored
    assert client.get("/objectives/2026-03").json()["targets"] == MORE_WON["targets"]


def test_an_objectives_key_sent_with_another_body_or_period_is_refused(client, ledger):
    headers = {"Idempotency-Key": "objectives-2"}
    client.put("/objectives/2026-03", json=WON, headers=headers)
    stored = events_in_store(ledger)

    other_body = client.put("/objectives/2026-03", json=MORE_WON, headers=headers)
    other_period = client.put("/objectives/2026-04", json=WON, headers=headers)

    for refused in (other_body, other_period):
        assert refused.status_code == 422, refused.text
        assert refused.json()["rule"] == "idempotency_key_reused"
    assert events_in_store(ledger) == stored
    assert client.get("/objectives/2026-03").json()["targets"] == WON["targets"]
    assert client.get("/objectives/2026-04").status_code == 404


def test_a_key_first_sent_with_targets_already_set_still_guards_its_request(client):
    client.put("/objectives/2026-03", json=WON)
    headers = {"Idempotency-Key": "objectives-3"}

    unchanged = client.put("/objectives/2026-03", json=WON, headers=headers)
    other = client.put("/objectives/2026-03", json=MORE_WON, headers=headers)

    assert unchanged.status_code == 200
    assert other.status_code == 422
    assert client.get("/objectives/2026-03").json()["targets"] == WON["targets"]


def test_setting_objectives_answers_with_the_log_position_of_its_last_event(client, ledger):
    headers = {"Idempotency-Key": "objectives-4"}

    first = client.put("/objectives/2026-03", json=WON, headers=headers)
    set_at = ledger.recorder.max_notification_id()
    replayed = client.put("/objectives/2026-03", json=WON, headers=headers)
    unchanged = client.put("/objectives/2026-03", json=WON)

    assert int(first.headers["crm-position"]) == set_at
    # Nothing stored: the log's position when answered, at or after the targets' events.
    assert int(replayed.headers["crm-position"]) >= set_at
    assert int(unchanged.headers["crm-position"]) >= set_at


def test_two_managers_editing_one_periods_objectives_do_not_overwrite_each_other(client, ledger):
    # Given objectives both managers read, with their version as the ETag
    client.put("/objectives/2026-05", json=WON)
    read = client.get("/objectives/2026-05")
    version = read.headers["ETag"]
    assert version == f'"{read.json()["version"]}"'

    # When one sets targets expecting that version, and then the other does the same
    first = client.put("/objectives/2026-05", json=MORE_WON, headers={"If-Match": version})
    stored = events_in_store(ledger)
    second = client.put("/objectives/2026-05", json=WON, headers={"If-Match": version})

    # Then the first is stored, and the second refused with the version now, storing nothing
    assert first.status_code == 200, first.text
    assert first.headers["ETag"] == f'"{first.json()["version"]}"'
    assert (second.status_code, second.json()["current_version"]) == (412, first.json()["version"])
    assert second.headers["ETag"] == first.headers["ETag"]
    assert "objectives of 2026-05 are at version" in second.json()["detail"]
    assert events_in_store(ledger) == stored
    assert client.get("/objectives/2026-05").json()["targets"] == first.json()["targets"]


@pytest.mark.parametrize("expected", ['"1"', "*"])
def test_objectives_expected_before_any_is_set_are_refused(client, ledger, expected):
    # If-Match: * expects some version (RFC 9110: false when there is none)
    response = client.put("/objectives/2026-06", json=WON, headers={"If-Match": expected})

    assert (response.status_code, response.json()["current_version"]) == (412, 0)
    assert "objectives of 2026-06 are at version 0" in response.json()["detail"]
    assert events_in_store(ledger) == 0


def test_objectives_set_once_are_changed_under_if_match_any(client):
    client.put("/objectives/2026-06", json=WON)

    response = client.put("/objectives/2026-06", json=MORE_WON, headers={"If-Match": "*"})

    assert response.status_code == 200, response.text
    assert client.get("/objectives/2026-06").json()["targets"] == response.json()["targets"]


def test_an_auditor_reads_a_periods_objectives_as_they_were_at_an_instant_or_version(client, clock):
    # By hand: set at t0 (version 2), then t1; raised (version 3), then t2; lost added (4).
    t0 = clock.now
    client.put("/objectives/2026", json=WON)
    t1 = clock.advance(hours=1)
    client.put("/objectives/2026", json=MORE_WON)
    t2 = clock.advance(hours=1)
    lost = {"metric": "accounts_lost", "acceptable": 3, "optimal": 2, "best": 1}
    client.put("/objectives/2026", json={"targets": [lost]})

    at_t1 = client.get("/objectives/2026", params={"as_of": t1.isoformat()})
    at_t2 = client.get("/objectives/2026", params={"as_of": t2.isoformat()})
    at_v2 = client.get("/objectives/2026", params={"version": 2})
    now = client.get("/objectives/2026").json()

    assert at_t1.status_code == 200, at_t1.text
    assert (at_t1.json()["version"], at_t1.headers["ETag"]) == (2, '"2"')
    assert at_t1.json()["targets"] == WON["targets"]
    assert (at_t2.json()["version"], at_t2.json()["targets"]) == (3, MORE_WON["targets"])
    assert at_v2.json() == at_t1.json()
    assert (now["version"], len(now["targets"])) == (4, 2)
    before = client.get(
        "/objectives/2026", params={"as_of": (t0 - timedelta(seconds=1)).isoformat()}
    )
    assert (before.status_code, before.json()["field"]) == (404, "as_of")


def test_a_version_the_objectives_never_had_is_404_naming_it(client):
    client.put("/objectives/2026-07", json=WON)

    beyond = client.get("/objectives/2026-07", params={"version": 3})
    unset = client.get("/objectives/2026-08", params={"version": 1})
    both = client.get("/objectives/2026-07", params={"version": 2, "as_of": "2026-07-01T00:00Z"})
    no_offset = client.get("/objectives/2026-07", params={"as_of": "2026-07-01T00:00"})

    assert (beyond.status_code, beyond.json()["field"]) == (404, "version")
    assert "at 2" in beyond.json()["detail"]
    assert (unset.status_code, unset.json().get("field")) == (404, None)
    assert (both.status_code, both.json()["field"]) == (400, "as_of")
    assert (no_offset.status_code, no_offset.json()["field"]) == (400, "as_of")


LOST = {"metric": "accounts_lost", "acceptable": 3, "optimal": 2, "best": 1}


def test_a_target_set_by_mistake_is_removed_and_the_auditor_still_sees_it_was_there(
    client, ledger, clock
):
    client.put("/objectives/2026", json={"targets": [*WON["targets"], LOST]})
    set_at = clock.now

    removed = client.put(
        "/objectives/2026", json={"remove": ["accounts_won"], "reason": "set for 2027"}
    )

    assert removed.status_code == 200, removed.text
    assert (removed.json()["version"], removed.headers["ETag"]) == (4, '"4"')
    assert removed.json()["targets"] == [LOST]
    assert client.get("/objectives/2026").json() == removed.json()
    # Before the removal, as of an instant or a version, both targets
    then = client.get("/objectives/2026", params={"as_of": set_at.isoformat()}).json()
    assert then["targets"] == [LOST, *WON["targets"]]
    assert client.get("/objectives/2026", params={"version": 3}).json() == then
    stored = events_in_store(ledger)

    # Removing it again changes nothing; so does removing a metric that has no target
    again = client.put("/objectives/2026", json={"remove": ["accounts_won", "entered_outreach"]})

    assert (again.status_code, again.json()) == (200, removed.json())
    assert events_in_store(ledger) == stored


def test_targets_are_set_and_removed_in_one_request_under_if_match(client):
    client.put("/objectives/2026-05", json=WON)
    both = {"targets": [LOST], "remove": ["accounts_won"]}

    stale = client.put("/objectives/2026-05", json=both, headers={"If-Match": '"1"'})
    done = client.put("/objectives/2026-05", json=both, headers={"If-Match": '"2"'})

    assert (stale.status_code, stale.json()["current_version"]) == (412, 2)
    assert done.status_code == 200, done.text
    assert (done.json()["version"], done.json()["targets"]) == (4, [LOST])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "targets"),
        ({"targets": [], "remove": []}, "targets"),
        ({"remove": ["accounts_won", "accounts_won"]}, "remove"),
        ({**WON, "remove": ["accounts_won"]}, "remove"),
        ({"remove": ["deals_closed"]}, "remove[0]"),
    ],
)
def test_a_request_that_sets_and_removes_nothing_or_contradicts_itself_is_refused(
    client, ledger, body, field
):
    client.put("/objectives/2026", json=WON)
    stored = events_in_store(ledger)

    response = client.put("/objectives/2026", json=body)

    assert response.status_code in (400, 422), response.text
    assert response.json()["field"] == field
    assert events_in_store(ledger) == stored
    assert client.get("/objectives/2026").json()["targets"] == WON["targets"]


def test_removing_a_target_of_a_period_without_objectives_is_404_and_opens_nothing(client, ledger):
    response = client.put("/objectives/2026-06", json={"remove": ["accounts_won"]})

    assert response.status_code == 404, response.text
    assert "2026-06" in response.json()["detail"]
    assert events_in_store(ledger) == 0
    assert client.get("/objectives/2026-06").status_code == 404


def test_a_removal_retried_with_its_key_answers_as_the_first_time(client, ledger):
    client.put("/objectives/2026-07", json=WON)
    headers = {"Idempotency-Key": "remove-won"}
    first = client.put("/objectives/2026-07", json={"remove": ["accounts_won"]}, headers=headers)
    client.put("/objectives/2026-07", json=MORE_WON)
    stored = events_in_store(ledger)

    again = client.put("/objectives/2026-07", json={"remove": ["accounts_won"]}, headers=headers)

    assert (first.status_code, again.status_code) == (200, 200)
    assert (again.json(), again.headers["idempotent-replayed"]) == (first.json(), "true")
    assert events_in_store(ledger) == stored
    assert client.get("/objectives/2026-07").json()["targets"] == MORE_WON["targets"]
