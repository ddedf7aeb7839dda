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
