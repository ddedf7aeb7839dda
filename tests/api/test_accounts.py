"""Registering and reading accounts over HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from tests.api.requests import command, qualified, register, registration

PROBLEM = "application/problem+json"


def test_registering_answers_201_with_location_etag_and_the_new_account(client):
    response = client.post("/accounts", json=registration(), headers={"X-Actor": "alice"})

    assert response.status_code == 201
    account = response.json()
    assert response.headers["location"] == f"/accounts/{account['id']}"
    assert response.headers["etag"] == '"1"'
    assert int(response.headers["crm-position"]) >= 1
    assert account["version"] == 1
    assert account["abm_stage"] == "identified"
    assert account["funnel_state"] == "see"
    assert account["domain"] == "acme-tooling.com"
    assert account["bant"] is None
    assert account["buying_roles"] == {
        "covered": [],
        "missing": ["economic", "technical", "end_user"],
    }


def test_a_growth_rate_of_minus_zero_is_stored_and_read_as_zero(client):
    created = client.post("/accounts", json=registration(growth_rate=-0.0))

    assert created.status_code == 201, created.text
    assert '"growth_rate":0.0' in created.text
    assert '"growth_rate":0.0' in client.get(created.headers["location"]).text
    listed = client.get("/accounts", params={"min_position": created.headers["crm-position"]})
    assert '"growth_rate":0.0' in listed.text, listed.text


def test_the_location_of_a_new_account_reads_it_back(client):
    created = client.post("/accounts", json=registration())
    fetched = client.get(created.headers["location"])

    assert fetched.status_code == 200
    assert fetched.json() == created.json()
    assert fetched.headers["etag"] == '"1"'


def test_registering_a_known_domain_is_refused_naming_the_existing_account(client):
    first = register(client)

    response = client.post("/accounts", json=registration(domain="WWW.Acme-Tooling.com"))

    assert response.status_code == 409
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["account_id"] == first["id"]
    assert problem["rule"] == "domain_unique"
    assert client.get(f"/accounts/{first['id']}/history").json()["items"][-1]["version"] == 1


def test_an_unknown_account_is_404_problem(client):
    response = client.get(f"/accounts/{uuid4()}")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["status"] == 404


def test_an_account_reads_as_it_was_at_a_past_version(client):
    account = qualified(client)
    command(client, account, "bant", {"budget": 2, "authority": 2, "need": 2, "timing": 2}, "PUT")

    at_two = client.get(f"/accounts/{account['id']}", params={"version": 2})
    beyond = client.get(f"/accounts/{account['id']}", params={"version": 99})

    assert at_two.status_code == 200
    assert at_two.json()["version"] == 2
    assert at_two.json()["screening"]["outcome"] == "qualified"
    assert at_two.json()["bant"] is None
    assert at_two.headers["etag"] == '"2"'
    assert beyond.status_code == 404


def test_an_account_reads_as_it_was_at_an_instant(client, clock):
    account = register(client)
    before_screening = clock.advance(days=1)
    clock.advance(days=1)
    command(client, account, "screening", {"outcome": "excluded", "criteria": ["headcount"]})

    then = client.get(f"/accounts/{account['id']}", params={"as_of": before_screening.isoformat()})
    now = client.get(f"/accounts/{account['id']}")
    too_early = client.get(
        f"/accounts/{account['id']}",
        params={"as_of": (before_screening - timedelta(days=30)).isoformat()},
    )

    assert then.json()["abm_stage"] == "identified"
    assert then.json()["version"] == 1
    assert now.json()["abm_stage"] == "excluded"
    assert too_early.status_code == 404


def test_as_of_without_an_offset_and_with_a_version_are_refused(client):
    account = register(client)

    naive = client.get(f"/accounts/{account['id']}", params={"as_of": "2026-01-05T10:00:00"})
    both = client.get(
        f"/accounts/{account['id']}", params={"as_of": "2026-01-05T10:00:00Z", "version": 1}
    )
    garbage = client.get(f"/accounts/{account['id']}", params={"as_of": "last tuesday"})

    assert (naive.status_code, naive.json()["field"]) == (400, "as_of")
    assert (both.status_code, both.json()["field"]) == (400, "as_of")
    assert garbage.status_code == 400
    assert "as_of" in garbage.json()["detail"]


def test_history_lists_every_event_with_who_when_why(client):
    account = register(client)
    client.post(
        f"/accounts/{account['id']}/screening",
        json={
            "outcome": "excluded",
            "criteria": ["industry"],
            "note": "retail",
            "reason": "not our market",
        },
        headers={"X-Actor": "bob", "X-Request-ID": "req-42"},
    )

    page = client.get(f"/accounts/{account['id']}/history").json()

    assert [e["type"] for e in page["items"]] == ["registered", "screened", "stage_changed"]
    assert [e["version"] for e in page["items"]] == [1, 2, 3]
    screened, stage_changed = page["items"][1], page["items"][2]
    assert screened["actor"] == "bob"
    assert screened["reason"] == "not our market"
    assert screened["request_id"] == "req-42"
    assert screened["data"] == {
        "outcome": "excluded",
        "criteria": ["industry"],
        "note": "retail",
        "policy_version": None,
    }
    assert stage_changed["data"] == {
        "from_stage": "identified",
        "to_stage": "excluded",
        "cause": "screened",
    }
    assert stage_changed["recorded_at"] == screened["recorded_at"] or (
        stage_changed["recorded_at"] > screened["recorded_at"]
    )
    assert page["items"][0]["actor"] == "anonymous"
    assert page["next_after"] is None


def test_history_pages_with_after_and_limit(client):
    account = qualified(client)
    for budget in (1, 2, 3):
        command(
            client,
            account,
            "bant",
            {"budget": budget, "authority": 1, "need": 1, "timing": 1},
            "PUT",
        )

    first = client.get(f"/accounts/{account['id']}/history", params={"limit": 3}).json()
    rest = client.get(
        f"/accounts/{account['id']}/history", params={"after": first["next_after"]}
    ).json()

    assert [e["version"] for e in first["items"]] == [1, 2, 3]
    assert first["next_after"] == 3
    assert [e["type"] for e in rest["items"]] == ["stage_changed", "bant_scored", "bant_scored"]
    assert [e["version"] for e in rest["items"]] == [4, 5, 6]
    assert [e["data"]["budget"] for e in rest["items"] if e["type"] == "bant_scored"] == [2, 3]
    assert client.get(f"/accounts/{uuid4()}/history").status_code == 404
    assert client.get(f"/accounts/{account['id']}/history", params={"limit": 0}).status_code == 400


def test_the_response_carries_the_request_id_it_was_given_or_a_new_one(client):
    given = client.get("/health", headers={"X-Request-ID": "trace-1"})
    made = client.get("/health")

    assert given.headers["x-request-id"] == "trace-1"
    assert len(made.headers["x-request-id"]) == 32


def test_health_and_readiness(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"store": "ok", "read_models": "ok"}}


def test_the_openapi_document_describes_every_endpoint_and_its_problems(client):
    schema = client.get("/schema/openapi.json").json()

    paths = schema["paths"]
    for path, method in [
        ("/accounts", "post"),
        ("/accounts/{account_id}", "get"),
        ("/accounts/{account_id}/history", "get"),
        ("/accounts/{account_id}/screening", "post"),
        ("/accounts/{account_id}/bant", "put"),
        ("/accounts/{account_id}/contacts", "post"),
        ("/accounts/{account_id}/outreach", "post"),
        ("/accounts/{account_id}/stage", "post"),
        ("/accounts/{account_id}/funnel", "post"),
        ("/accounts/{account_id}/deal", "post"),
        ("/accounts", "get"),
        ("/leaderboards/bant", "get"),
        ("/reports/{kind}", "get"),
        ("/objectives/{period}", "put"),
        ("/objectives/{period}", "get"),
        ("/health", "get"),
        ("/ready", "get"),
    ]:
        assert method in paths[path], (path, method)
    bant = paths["/accounts/{account_id}/bant"]["put"]
    assert {"409", "412", "422"} <= set(bant["responses"])
    assert {p["name"] for p in bant["parameters"]} >= {"If-Match", "Idempotency-Key", "X-Actor"}
    assert client.get("/schema").status_code == 200


def test_an_actor_sent_in_utf_8_is_recorded_as_written(client):
    account = client.post(
        "/accounts", json=registration(), headers={"X-Actor": "José Ødegård".encode()}
    ).json()

    (registered,) = client.get(f"/accounts/{account['id']}/history").json()["items"]
    assert registered["actor"] == "José Ødegård"


def test_an_actor_of_invisible_characters_is_refused_and_registers_nothing(client):
    tags = "\U000e0041\U000e0042".encode()

    response = client.post("/accounts", json=registration(), headers={"X-Actor": tags})

    assert (response.status_code, response.json()["field"]) == (400, "X-Actor"), response.text
    assert client.get("/accounts").json()["items"] == []


@pytest.mark.parametrize("path", ["/accounts/{id}", "/leaderboards/bant", "/reports/stages"])
def test_an_offset_whose_plus_a_query_string_made_a_space_is_400_saying_to_send_2b(client, path):
    account = register(client)
    url = path.format(id=account["id"])

    # As a frontend writes it unencoded: the query string's + arrives as a space
    lost_plus = client.get(f"{url}?as_of=2026-01-05T10:00:00+01:00")
    minus = client.get(f"{url}?as_of=last%20tuesday")

    assert (lost_plus.status_code, lost_plus.json()["field"]) == (400, "as_of")
    assert "%2B01:00" in lost_plus.json()["detail"]
    assert minus.status_code == 400
    assert "%2B" not in minus.json()["detail"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/accounts/{id}?as_of=", "as_of"),
        ("/accounts/{id}/diff?to=1&from=", "from"),
        ("/leaderboards/bant?as_of=", "as_of"),
        ("/reports/funnel?from=", "from"),
    ],
)
@pytest.mark.parametrize("at", ["0001-01-01T00:00:00%2B01:00", "9999-12-31T23:59:59-01:00"])
def test_an_instant_beyond_years_1_to_9999_in_utc_is_400_saying_so(client, path, field, at):
    account = register(client)

    response = client.get(path.format(id=account["id"]) + at)

    assert (response.status_code, response.json()["field"]) == (400, field), response.text
    assert "beyond the instants this service can hold" in response.json()["detail"]


def test_as_of_before_the_registration_is_404_saying_when_it_was_registered(client):
    account = register(client)

    response = client.get(f"/accounts/{account['id']}", params={"as_of": "2000-01-01T00:00:00Z"})

    assert (response.status_code, response.json()["field"]) == (404, "as_of")
    assert "registered at" in response.json()["detail"]


def test_an_international_domain_is_kept_in_its_ascii_form_and_stays_unique(client):
    created = client.post("/accounts", json=registration(name="Müller", domain="www.Müller.de"))
    again = client.post("/accounts", json=registration(name="Mueller", domain="xn--mller-kva.de"))

    assert created.status_code == 201, created.text
    assert created.json()["domain"] == "xn--mller-kva.de"
    assert (again.status_code, again.json()["rule"]) == (409, "domain_unique")


def test_a_domain_with_a_line_break_inside_is_refused_not_made_another_account(client, ledger):
    client.post("/accounts", json=registration(domain="acme.com"))
    stored = len(ledger.recorder.select_notifications(1, 1_000))

    response = client.post("/accounts", json=registration(name="Acme 2", domain="acme\n.com"))

    assert response.status_code in (400, 422), response.text
    assert response.json()["field"] == "domain"
    assert len(ledger.recorder.select_notifications(1, 1_000)) == stored


def test_a_domain_with_sharp_s_names_another_account_than_its_ss_spelling(client):
    sharp = client.post("/accounts", json=registration(name="Straße AG", domain="straße.de"))
    double = client.post("/accounts", json=registration(name="Strasse SA", domain="strasse.de"))

    assert (sharp.status_code, double.status_code) == (201, 201), (sharp.text, double.text)
    assert (sharp.json()["domain"], double.json()["domain"]) == ("xn--strae-oqa.de", "strasse.de")
    assert sharp.json()["id"] != double.json()["id"]
