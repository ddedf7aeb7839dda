"""Every command endpoint over HTTP: its effect, its refusals, If-Match and Idempotency-Key."""

from __future__ import annotations

import threading

import pytest

from tests.api.requests import command, qualified, rated, register, warmed_up

MATERIAL = {"kind": "material_sent", "material": "white paper", "channel": "email"}


def history_types(client, account) -> list[str]:
    items = client.get(f"/accounts/{account['id']}/history", params={"limit": 1000}).json()
    return [e["type"] for e in items["items"]]


def test_screening_excluded_moves_the_account_to_excluded_with_its_criteria(client):
    account = register(client)

    after = command(
        client,
        account,
        "screening",
        {"outcome": "excluded", "criteria": ["headcount", "country"], "note": "small"},
    )

    assert after["abm_stage"] == "excluded"
    assert after["screening"]["outcome"] == "excluded"
    assert after["screening"]["criteria"] == ["headcount", "country"]
    assert after["version"] == 3


def test_a_screening_naming_a_criterion_twice_is_422_naming_criteria_and_stores_nothing(client):
    account = register(client)
    before = history_types(client, account)

    # " headcount" is trimmed as every text of a body is: the same criterion
    response = client.post(
        f"/accounts/{account['id']}/screening",
        json={"outcome": "excluded", "criteria": ["headcount", "country", " headcount"]},
    )

    assert response.status_code == 422, response.text
    assert response.json()["field"] == "criteria"
    assert "'headcount' given more than once" in response.json()["detail"]
    assert history_types(client, account) == before


def test_rating_by_bant_scores_the_product_and_prioritises(client):
    account = qualified(client)

    response = client.put(
        f"/accounts/{account['id']}/bant",
        json={
            "budget": 4,
            "authority": 3,
            "need": 5,
            "timing": 2,
            "notes": {"budget": "approved for Q3"},
        },
    )

    assert response.status_code == 200
    after = response.json()
    assert after["bant"]["score"] == 4 * 3 * 5 * 2
    assert after["bant"]["notes"] == {"budget": "approved for Q3"}
    assert after["abm_stage"] == "prioritized"
    assert response.headers["etag"] == f'"{after["version"]}"'


def test_rating_an_unscreened_account_is_refused_by_rule_and_stores_nothing(client):
    account = register(client)

    response = client.put(
        f"/accounts/{account['id']}/bant",
        json={"budget": 4, "authority": 3, "need": 5, "timing": 2},
    )

    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["rule"] == "bant_requires_qualified"
    assert history_types(client, account) == ["registered"]


def test_a_re_rating_keeps_the_earlier_rating_in_history(client):
    account = rated(client, ratings=(1, 1, 1, 1))

    after = command(
        client, account, "bant", {"budget": 5, "authority": 5, "need": 5, "timing": 5}, "PUT"
    )

    assert after["bant"]["score"] == 625
    scores = [
        e["data"]["budget"]
        for e in client.get(f"/accounts/{account['id']}/history").json()["items"]
        if e["type"] == "bant_scored"
    ]
    assert scores == [1, 5]


def test_contacts_show_which_buying_roles_are_covered_and_missing(client):
    account = register(client)

    after = command(
        client,
        account,
        "contacts",
        {
            "name": "Jane Roe",
            "title": "CEO",
            "email": "jane@acme-tooling.com",
            "buying_role": "economic",
            "decision_power": "decision_maker",
        },
    )
    duplicate = client.post(
        f"/accounts/{account['id']}/contacts",
        json={
            "name": "J. Roe",
            "title": "Owner",
            "email": "JANE@acme-tooling.com",
            "buying_role": "technical",
            "decision_power": "influencer",
        },
    )

    assert after["contacts"][0]["name"] == "Jane Roe"
    assert after["contacts"][0]["buying_role"] == "economic"
    assert after["buying_roles"] == {"covered": ["economic"], "missing": ["technical", "end_user"]}
    assert duplicate.status_code == 409
    assert duplicate.json()["rule"] == "contact_email_taken"


def test_outreach_moves_a_rated_account_through_outreach_to_warm_up(client):
    account = rated(client)

    sent = command(client, account, "outreach", MATERIAL)
    neutral = command(
        client, account, "outreach", {"kind": "response_received", "reaction": "neutral"}
    )
    positive = command(
        client, account, "outreach", {"kind": "response_received", "reaction": "positive"}
    )

    assert sent["abm_stage"] == "outreach"
    assert neutral["abm_stage"] == "outreach"
    assert positive["abm_stage"] == "warm_up"
    assert positive["outreach"] == {
        "materials_sent": 1,
        "responses_received": 2,
        "meetings_held": 0,
        "last_reaction": "positive",
        "no_responses": 0,
    }


def test_a_follow_up_without_a_reaction_is_recorded_as_none(client):
    account = rated(client)
    command(client, account, "outreach", MATERIAL)
    path = f"/accounts/{account['id']}/outreach"

    silent = client.post(path, json={"kind": "no_response", "note": "two reminders"})
    as_reaction = client.post(path, json={"kind": "response_received", "reaction": "none"})
    with_reaction = client.post(path, json={"kind": "no_response", "reaction": "negative"})
    warm_up = client.post(
        f"/accounts/{account['id']}/stage", json={"to": "warm_up", "reason": "keen"}
    )

    assert silent.status_code == 200, silent.text
    assert silent.json()["abm_stage"] == "outreach"
    assert silent.json()["outreach"]["last_reaction"] == "none"
    assert (
        silent.json()["outreach"]["no_responses"],
        silent.json()["outreach"]["responses_received"],
    ) == (1, 0)
    for refused in (as_reaction, with_reaction):
        assert (refused.status_code, refused.json()["field"]) == (422, "reaction"), refused.text
    assert warm_up.json()["rule"] == "stage_requires_warm_response"  # no reaction is not warm
    history = client.get(f"/accounts/{account['id']}/history").json()["items"]
    assert history[-1]["type"] == "no_response"
    assert history[-1]["data"]["note"] == "two reminders"


def test_outreach_before_a_bant_rating_is_refused(client):
    account = qualified(client)

    response = client.post(f"/accounts/{account['id']}/outreach", json=MATERIAL)

    assert response.status_code == 409
    assert response.json()["rule"] == "outreach_requires_bant"


def test_excluding_an_account_in_outreach_needs_a_reason_and_a_lost_one_is_not_screened(client):
    account = rated(client)
    command(client, account, "outreach", MATERIAL)
    url = f"/accounts/{account['id']}/screening"
    before = history_types(client, account)

    unexplained = client.post(url, json={"outcome": "excluded", "criteria": ["headcount"]})
    command(client, account, "deal", {"outcome": "lost", "reason": "chose a competitor"})
    after_loss = client.post(url, json={"outcome": "qualified"})

    assert (unexplained.status_code, unexplained.json()["rule"]) == (409, "reason_required")
    assert "reason" in unexplained.json()["detail"]
    assert (after_loss.status_code, after_loss.json()["rule"]) == (409, "screening_after_loss")
    assert history_types(client, account) == [*before, "deal_lost", "stage_changed"]


@pytest.mark.parametrize(
    "fact",
    [
        {"kind": "response_received", "reaction": "positive"},
        {"kind": "response_received", "reaction": "negative"},
        {"kind": "meeting_held", "note": "met at the fair anyway"},
    ],
)
def test_an_excluded_account_refuses_responses_and_meetings_as_it_refuses_material(client, fact):
    account = rated(client)
    command(client, account, "outreach", MATERIAL)
    dropped = {"outcome": "excluded", "criteria": ["headcount"], "reason": "300 staff, not 30"}
    command(client, account, "screening", dropped)
    before = history_types(client, account)

    material = client.post(f"/accounts/{account['id']}/outreach", json=MATERIAL)
    response = client.post(f"/accounts/{account['id']}/outreach", json=fact)

    assert (material.status_code, response.status_code) == (409, 409)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert {k: response.json()[k] for k in ("type", "title", "rule")} == {
        k: material.json()[k] for k in ("type", "title", "rule")
    }
    assert response.json()["rule"] == "account_excluded"
    assert history_types(client, account) == before
    assert client.get(f"/accounts/{account['id']}").json()["outreach"]["responses_received"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "material_sent", "channel": "email"}, "material"),
        ({"kind": "response_received"}, "reaction"),
        ({"kind": "meeting_held", "reaction": "positive"}, "reaction"),
    ],
)
def test_outreach_fields_must_match_the_kind(client, body, field):
    account = rated(client)

    response = client.post(f"/accounts/{account['id']}/outreach", json=body)

    assert response.status_code == 422
    assert response.json()["field"] == field


def test_a_deal_is_won_from_warm_up_and_then_the_funnel_may_reach_care(client):
    account = warmed_up(client)

    won = command(client, account, "deal", {"outcome": "won", "amount": 120000, "currency": "EUR"})
    care = command(client, account, "funnel", {"to": "care"})

    assert won["abm_stage"] == "won"
    assert won["deal"]["amount"] == 120000
    assert care["funnel_state"] == "care"


def test_winning_before_warm_up_is_refused(client):
    account = rated(client)

    response = client.post(f"/accounts/{account['id']}/deal", json={"outcome": "won"})

    assert response.status_code == 409
    assert response.json()["rule"] == "win_requires_warm_up"


def test_a_lost_deal_needs_a_reason(client):
    account = rated(client)

    without = client.post(f"/accounts/{account['id']}/deal", json={"outcome": "lost"})
    with_reason = command(
        client, account, "deal", {"outcome": "lost", "reason": "chose a competitor"}
    )

    assert without.status_code == 409
    assert without.json()["rule"] == "reason_required"
    assert with_reason["abm_stage"] == "lost"
    assert with_reason["deal"]["reason"] == "chose a competitor"


def test_a_manual_stage_move_goes_back_with_a_reason_and_not_forward_past_a_fact(client):
    account = rated(client)

    back = command(client, account, "stage", {"to": "identified", "reason": "budget frozen"})
    skip = client.post(
        f"/accounts/{account['id']}/stage", json={"to": "outreach", "reason": "eager"}
    )
    no_reason = client.post(f"/accounts/{account['id']}/stage", json={"to": "prioritized"})

    assert back["abm_stage"] == "identified"
    assert skip.status_code == 409
    assert skip.json()["rule"] == "stage_requires_material_sent"
    assert no_reason.status_code == 409
    assert no_reason.json()["rule"] == "reason_required"


def test_the_funnel_moves_forward_freely_and_back_only_with_a_reason(client):
    account = register(client)

    forward = command(client, account, "funnel", {"to": "do"})
    back = client.post(f"/accounts/{account['id']}/funnel", json={"to": "think"})
    care = client.post(f"/accounts/{account['id']}/funnel", json={"to": "care"})

    assert forward["funnel_state"] == "do"
    assert back.json()["rule"] == "reason_required"
    assert care.json()["rule"] == "care_requires_won"
    assert history_types(client, account) == ["registered", "funnel_state_changed"]


def test_if_match_with_the_current_version_applies_and_a_stale_one_is_412(client):
    account = qualified(client)
    body = {"budget": 2, "authority": 2, "need": 2, "timing": 2}

    current = client.put(
        f"/accounts/{account['id']}/bant",
        json=body,
        headers={"If-Match": f'"{account["version"]}"'},
    )
    stale = client.put(
        f"/accounts/{account['id']}/bant",
        json=body,
        headers={"If-Match": f'"{account["version"]}"'},
    )

    assert current.status_code == 200
    assert stale.status_code == 412
    assert stale.json()["current_version"] == current.json()["version"]
    assert stale.headers["etag"] == current.headers["etag"]
    assert history_types(client, account).count("bant_scored") == 1


def test_the_same_idempotency_key_and_body_returns_the_first_response_and_stores_nothing(client):
    account = qualified(client)
    body = {"budget": 3, "authority": 3, "need": 3, "timing": 3}
    headers = {"Idempotency-Key": "rate-1"}

    first = client.put(f"/accounts/{account['id']}/bant", json=body, headers=headers)
    command(client, account, "outreach", MATERIAL)
    again = client.put(f"/accounts/{account['id']}/bant", json=body, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["idempotent-replayed"] == "true"
    assert history_types(client, account).count("bant_scored") == 1


@pytest.mark.parametrize(
    "spelling", [str.upper, lambda id: id.replace("-", ""), lambda id: f"urn:uuid:{id}"]
)
def test_a_retry_naming_the_account_in_another_spelling_is_the_same_request(client, spelling):
    # The path takes any spelling of a UUID; all of them name one account.
    account = qualified(client)
    body = {"budget": 3, "authority": 3, "need": 3, "timing": 3}
    headers = {"Idempotency-Key": "rate-spelled"}
    first = client.put(f"/accounts/{account['id']}/bant", json=body, headers=headers)

    again = client.put(f"/accounts/{spelling(account['id'])}/bant", json=body, headers=headers)

    assert (first.status_code, again.status_code) == (200, 200), again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert history_types(client, account).count("bant_scored") == 1


def test_a_replayed_command_answers_with_a_position_its_effect_can_be_read_at(client):
    account = qualified(client)
    body = {"budget": 3, "authority": 3, "need": 3, "timing": 3}
    headers = {"Idempotency-Key": "rate-position"}
    first = client.put(f"/accounts/{account['id']}/bant", json=body, headers=headers)

    again = client.put(f"/accounts/{account['id']}/bant", json=body, headers=headers)

    assert again.headers["idempotent-replayed"] == "true"
    position = int(again.headers["crm-position"])
    assert position >= int(first.headers["crm-position"])
    listed = client.get("/accounts", params={"min_position": position}).json()
    assert listed["min_position_reached"] is True
    (summary,) = listed["items"]
    assert summary["score"] == 81


def test_the_same_idempotency_key_with_another_body_is_refused(client):
    account = qualified(client)
    headers = {"Idempotency-Key": "rate-2"}
    client.put(
        f"/accounts/{account['id']}/bant",
        json={"budget": 3, "authority": 3, "need": 3, "timing": 3},
        headers=headers,
    )

    other = client.put(
        f"/accounts/{account['id']}/bant",
        json={"budget": 1, "authority": 3, "need": 3, "timing": 3},
        headers=headers,
    )

    assert other.status_code == 422
    assert other.json()["rule"] == "idempotency_key_reused"
    assert history_types(client, account).count("bant_scored") == 1


def test_an_idempotent_registration_retried_returns_201_again_without_a_conflict(client):
    headers = {"Idempotency-Key": "import-row-7"}
    from tests.api.requests import registration

    first = client.post("/accounts", json=registration(), headers=headers)
    again = client.post("/accounts", json=registration(), headers=headers)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]


def test_concurrent_re_ratings_of_one_account_are_all_kept(client):
    account = qualified(client)
    statuses: list[int] = []

    def rate(budget: int) -> None:
        response = client.put(
            f"/accounts/{account['id']}/bant",
            json={"budget": budget, "authority": 1, "need": 1, "timing": 1},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=rate, args=(1 + i % 5,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert statuses == [200] * 8
    assert history_types(client, account).count("bant_scored") == 8


def test_a_keyed_command_that_changed_nothing_is_not_applied_when_retried_later(client):
    # A correction that states what the account holds already stores no event; retried with
    # its key after someone else changed the field, it must answer as it first did, not write
    # its value over the other change.
    account = register(client)
    firmographics = f"/accounts/{account['id']}"
    same = {"industry": account["industry"]}
    headers = {"Idempotency-Key": "correct-1"}
    first = client.patch(firmographics, json=same, headers=headers)
    changed = client.patch(firmographics, json={"industry": "logistics"})

    retry = client.patch(firmographics, json=same, headers=headers)
    reused = client.patch(firmographics, json={"industry": "retail"}, headers=headers)

    assert (first.status_code, changed.status_code, retry.status_code) == (200, 200, 200)
    assert retry.headers.get("idempotent-replayed") == "true"
    assert retry.headers["etag"] == first.headers["etag"]
    assert client.get(f"/accounts/{account['id']}").json()["industry"] == "logistics"
    assert reused.status_code == 422
    assert reused.json()["rule"] == "idempotency_key_reused"
