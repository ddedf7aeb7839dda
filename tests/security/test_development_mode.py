"""Without API keys nobody is authenticated, and `crm serve` listens on loopback alone; but a
web page the developer opens can make the browser send requests there. A request for another
host name (DNS rebinding) and a write from a page of another origin are refused."""

from __future__ import annotations

import dataclasses

import pytest
from litestar.testing import TestClient

from domain.account import account_id_for
from services.api.app import create_app
from services.api.auth import parse_keys
from tests.api.requests import LOCAL, registration


def test_a_request_for_a_host_name_that_is_not_this_machine_is_421(client):
    rebound = {"Host": "rebind.attacker.example:8000"}

    written = client.post("/accounts", json=registration(), headers=rebound)
    read = client.get("/accounts", headers=rebound)

    for refused in (written, read):
        assert refused.status_code == 421, refused.text
        assert refused.json()["type"] == "urn:crm:problem:misdirected-request"
    assert client.get(f"/accounts/{account_id_for(registration()['domain'])}").status_code == 404
    for local in (
        "localhost:8000",
        "localhost.:8000",
        "127.0.0.1",
        "127.0.0.2:18000",
        "[::1]:8000",
        "app.localhost",
    ):
        assert client.get("/health", headers={"Host": local}).status_code == 200, local


def test_a_write_from_a_page_of_another_origin_is_403_and_its_reads_answer_without_cors(client):
    foreign = {"Origin": "https://evil.example"}
    account = f"/accounts/{account_id_for(registration()['domain'])}"

    written = client.post("/accounts", json=registration(), headers=foreign)
    stored_after_refusal = client.get(account).status_code
    upload = client.post(
        "/imports", content=b"name\n", headers={**foreign, "Content-Type": "text/csv"}
    )
    read = client.get("/accounts", headers=foreign)
    local = client.post(
        "/accounts", json=registration(), headers={"Origin": "http://localhost:5173"}
    )

    for refused in (written, upload):
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"] == "urn:crm:problem:cross-origin"
    assert stored_after_refusal == 404
    assert read.status_code == 200  # the browser shows it to no page: no CORS header
    assert "access-control-allow-origin" not in read.headers
    assert local.status_code == 201, local.text
    seen = client.get("/accounts", params={"min_position": local.headers["crm-position"]})
    assert [a["domain"] for a in seen.json()["items"]] == [registration()["domain"]]


@pytest.mark.parametrize("store", ["sqlite"])
@pytest.mark.parametrize("named", ["https://app.example.com", "*"])
def test_an_origin_cors_origins_names_may_write(ledger, projector, settings, named):
    app = create_app(ledger, projector, dataclasses.replace(settings, cors_origins=(named,)))
    with TestClient(app, base_url=LOCAL) as client:
        written = client.post(
            "/accounts", json=registration(), headers={"Origin": "https://app.example.com"}
        )

    assert written.status_code == 201, written.text
    assert written.headers["access-control-allow-origin"] in ("https://app.example.com", "*")


@pytest.mark.parametrize("store", ["sqlite"])
def test_with_api_keys_any_host_name_and_origin_may_send_a_key(ledger, projector, settings):
    app = create_app(ledger, projector, settings, keys=parse_keys("s:sales:" + "k" * 20, "test"))
    headers = {"Authorization": "Bearer " + "k" * 20, "Origin": "https://evil.example"}
    with TestClient(app, base_url="http://crm.example.com") as client:
        created = client.post("/accounts", json=registration(), headers=headers)

    assert created.status_code == 201, created.text
