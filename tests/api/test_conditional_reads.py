"""A read of an account or of a period's objectives answers 304, without a body, to an
If-None-Match that names the version it would send: a frontend that keeps the record asks
again cheaply, and gets the record once it has changed."""

from __future__ import annotations

import pytest

from tests.api.requests import command, qualified, register

WON = {"targets": [{"metric": "accounts_won", "acceptable": 1, "optimal": 2, "best": 3}]}
RATING = {"budget": 4, "authority": 4, "need": 4, "timing": 4}


def test_an_account_not_changed_since_its_etag_is_304_and_changed_is_200(client):
    account = register(client)
    url = f"/accounts/{account['id']}"
    kept = client.get(url)

    again = client.get(url, headers={"If-None-Match": kept.headers["etag"]})
    head = client.head(url, headers={"If-None-Match": kept.headers["etag"]})
    client.patch(url, json={"headcount": 300})
    changed = client.get(url, headers={"If-None-Match": kept.headers["etag"]})

    assert (again.status_code, again.content, again.headers["etag"]) == (
        304,
        b"",
        kept.headers["etag"],
    )
    assert head.status_code == 304
    assert changed.status_code == 200
    assert changed.json()["headcount"] == 300
    assert changed.headers["etag"] != kept.headers["etag"]


@pytest.mark.parametrize(
    ("given", "status"),
    [
        ('W/"{v}"', 304),  # compared weakly, as If-None-Match is
        ('"999", "{v}"', 304),  # a list naming it
        ("*", 304),  # any version at all
        ('"999"', 200),
        ("{v}", 200),  # not an entity tag
    ],
)
def test_if_none_match_names_the_version_as_http_writes_entity_tags(client, given, status):
    account = command(client, qualified(client), "bant", RATING, "PUT")
    header = given.format(v=account["version"])

    response = client.get(f"/accounts/{account['id']}", headers={"If-None-Match": header})

    assert response.status_code == status, response.text
    assert response.headers["etag"] == f'"{account["version"]}"'


def test_objectives_not_changed_since_their_etag_are_304(client):
    kept = client.put("/objectives/2026", json=WON)

    again = client.get("/objectives/2026", headers={"If-None-Match": kept.headers["etag"]})
    older = client.get(
        "/objectives/2026", params={"version": 1}, headers={"If-None-Match": kept.headers["etag"]}
    )

    assert (again.status_code, again.content) == (304, b"")
    assert older.status_code == 200


@pytest.mark.parametrize(
    ("given", "status"),
    [
        ('"{v}"', 200),
        ("{v}", 200),  # as a command takes it
        ("*", 200),  # the account exists
        ('"{older}"', 412),
    ],
)
def test_if_match_on_a_read_answers_412_unless_it_names_the_version_answered(client, given, status):
    account = command(client, qualified(client), "bant", RATING, "PUT")
    version = account["version"]
    header = given.format(v=version, older=version - 1)

    response = client.get(f"/accounts/{account['id']}", headers={"If-Match": header})

    assert response.status_code == status, response.text
    assert response.headers["etag"] == f'"{version}"'
    if status == 412:
        assert response.json()["current_version"] == version
        assert f"at version {version}, not {version - 1}" in response.json()["detail"]
    else:
        assert response.json()["version"] == version


def test_if_match_on_objectives_names_their_version_and_a_past_read_its_own(client):
    client.put("/objectives/2026", json=WON)
    won_more = {"targets": [{"metric": "accounts_won", "acceptable": 2, "optimal": 3, "best": 4}]}
    now = client.put("/objectives/2026", json=won_more).json()["version"]

    stale = client.get("/objectives/2026", headers={"If-Match": f'"{now - 1}"'})
    past = client.get(
        "/objectives/2026", params={"version": now - 1}, headers={"If-Match": f'"{now - 1}"'}
    )

    assert stale.status_code == 412, stale.text
    assert "The objectives of 2026 are at version" in stale.json()["detail"]
    assert past.status_code == 200, past.text


@pytest.mark.parametrize("given", [['"x"'], ['"1"', '"1"']], ids=["not-a-version", "twice"])
def test_an_if_match_on_a_read_that_names_no_one_version_is_400(client, given):
    account = register(client)
    headers = [("If-Match", value) for value in given]

    response = client.get(f"/accounts/{account['id']}", headers=headers)

    assert response.status_code == 400, response.text
    assert response.json()["field"] == "If-Match"
