"""HEAD answers as GET does, without a body; Allow lists HEAD wherever GET is allowed."""

from __future__ import annotations

import pytest

from tests.api.requests import register

UNCHANGING = ("content-type", "content-length", "etag", "crm-position")


def allowed(response) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(m.strip() for m in response.headers["allow"].split(","))


@pytest.mark.parametrize("path", ["/accounts/{id}", "/leaderboards/bant?limit=5", "/health"])
def test_head_gets_the_status_and_headers_of_a_get_and_no_body(client, projector, path):
    account = register(client)
    projector.catch_up()  # the same read-model position for both
    url = path.format(id=account["id"])

    got = client.get(url)
    head = client.head(url)

    assert got.status_code == head.status_code == 200
    assert head.content == b""
    for name in UNCHANGING:
        assert head.headers.get(name) == got.headers.get(name), name
    assert int(head.headers["content-length"]) == len(got.content)


def test_head_is_refused_as_a_get_would_be(client):
    missing = client.head("/accounts/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.content == b""

    misspelt = client.head("/leaderboards/bant?limti=5")
    assert misspelt.status_code == 400 and misspelt.content == b""
    assert int(misspelt.headers["content-length"]) == len(
        client.get("/leaderboards/bant?limti=5").content
    )


def test_head_of_an_export_answers_its_headers_without_a_file(client):
    register(client)
    head = client.head("/leaderboards/bant/export?format=csv")

    assert head.status_code == 200
    assert head.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in head.headers["content-disposition"]
    assert head.content == b""


def test_head_to_a_path_without_get_is_405_and_allow_names_what_is(client):
    refused = client.head("/imports")

    assert refused.status_code == 405
    assert "GET" not in allowed(refused) and "HEAD" not in allowed(refused)
    assert "POST" in allowed(refused)


def test_options_and_405_name_every_method_of_the_path_head_beside_get(client):
    account = register(client)
    every = sorted(["GET", "HEAD", "OPTIONS", "PATCH"])  # an account is read and corrected

    options = client.options(f"/accounts/{account['id']}")
    wrong = client.delete(f"/accounts/{account['id']}")

    assert options.status_code == 204, options.text
    assert allowed(options) == every
    assert wrong.status_code == 405
    assert allowed(wrong) == every
    assert allowed(client.options("/leaderboards/bant")) == ["GET", "HEAD", "OPTIONS"]
