"""PATCH /accounts/{id}: a correction of the firmographics by hand. The fields sent change,
the others keep their values, and only what changed is recorded."""

from __future__ import annotations

import pytest

from tests.api.requests import register


def correct(client, account, body, **headers):
    return client.patch(f"/accounts/{account['id']}", json=body, headers=headers)


def history(client, account) -> list[dict]:
    return client.get(f"/accounts/{account['id']}/history").json()["items"]


def test_a_correction_changes_the_fields_sent_and_keeps_the_others(client):
    account = register(client)

    response = correct(client, account, {"name": "Acme Tools GmbH", "headcount": 310})

    assert response.status_code == 200, response.text
    after = response.json()
    assert after["name"] == "Acme Tools GmbH"
    assert after["headcount"] == 310
    assert after["industry"] == "manufacturing"
    assert after["region"] == "Bavaria"
    assert after["version"] == account["version"] + 1
    assert response.headers["etag"] == f'"{after["version"]}"'
    last = history(client, account)[-1]
    assert last["type"] == "firmographics_updated"
    assert last["data"]["changes"] == {"name": "Acme Tools GmbH", "headcount": 310}


def test_the_account_list_shows_the_corrected_name_at_the_commands_position(client):
    account = register(client)

    response = correct(client, account, {"name": "Zenith Machines", "country": "AT"})
    listed = client.get(
        "/accounts",
        params={"q": "Zenith", "min_position": response.headers["crm-position"]},
    )

    assert listed.status_code == 200
    assert [(a["account_id"], a["name"], a["country"]) for a in listed.json()["items"]] == [
        (account["id"], "Zenith Machines", "AT")
    ]


def test_a_null_region_removes_the_region(client):
    account = register(client)

    after = correct(client, account, {"region": None}).json()

    assert after["region"] is None


def test_a_correction_that_changes_nothing_stores_nothing(client):
    account = register(client)

    response = correct(
        client,
        account,
        {"name": " Acme Tooling", "domain": "WWW.Acme-Tooling.com", "region": "Bavaria "},
    )

    assert response.status_code == 200
    assert response.json()["version"] == account["version"]
    assert [e["type"] for e in history(client, account)] == ["registered"]


def test_a_name_whose_accents_are_only_encoded_anew_is_no_change(client):
    """é as one code point, or as e and a combining accent: the same name, stored composed."""
    account = register(client)
    composed = correct(client, account, {"name": "Caf\u00e9 Tools"}).json()

    decomposed = correct(client, account, {"name": "Cafe\u0301 Tools"})
    registered = register(client, name="Bru\u0308ck AG", domain="brueck.example.de")

    assert decomposed.status_code == 200, decomposed.text
    assert decomposed.json()["version"] == composed["version"]
    assert history(client, account)[-1]["data"]["changes"] == {"name": "Caf\u00e9 Tools"}
    assert registered["name"] == "Br\u00fcck AG"


@pytest.mark.parametrize("key", [None, "same-again"])
def test_a_correction_that_changes_nothing_answers_a_position_its_state_can_be_read_at(client, key):
    account = register(client)
    renamed = correct(client, account, {"name": "Zenith Machines"})
    headers = {"Idempotency-Key": key} if key else {}

    same = client.patch(
        f"/accounts/{account['id']}", json={"name": "Zenith Machines"}, headers=headers
    )

    assert same.status_code == 200
    assert same.json()["version"] == renamed.json()["version"]
    position = int(same.headers["crm-position"])
    assert position >= int(renamed.headers["crm-position"])
    listed = client.get("/accounts", params={"q": "Zenith", "min_position": position}).json()
    assert listed["min_position_reached"] is True
    assert [a["account_id"] for a in listed["items"]] == [account["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"domain": "other.example"}, "domain"),
        ({"headcount": 0}, "headcount"),
        ({"name": "   "}, "name"),
        ({"country": "XX"}, "country"),
        ({"name": "Acme", "website": "acme.example"}, "website"),
        ({"name": None}, "name"),
    ],
)
def test_a_bad_correction_is_refused_naming_its_field_and_stores_nothing(client, body, field):
    account = register(client)

    response = correct(client, account, body)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert client.get(f"/accounts/{account['id']}").json() == account


def test_a_correction_honours_if_match(client):
    account = register(client)
    correct(client, account, {"headcount": 300})

    stale = correct(client, account, {"headcount": 320}, **{"If-Match": f'"{account["version"]}"'})

    assert stale.status_code == 412
    assert client.get(f"/accounts/{account['id']}").json()["headcount"] == 300


def test_a_correction_of_an_unknown_account_is_404(client):
    response = client.patch(
        "/accounts/00000000-0000-0000-0000-000000000001", json={"headcount": 300}
    )

    assert response.status_code == 404
