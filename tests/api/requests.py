"""Request bodies and short-hands the API tests share."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

# Where a test client sends its requests: without API keys the CRM answers only requests for
# this machine (services/api/auth.py, LoopbackOnly).
LOCAL = "http://crm.localhost"  # a name with a dot, as the test client would have it


def registration(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "Acme Tooling",
        "domain": "acme-tooling.com",
        "industry": "manufacturing",
        "headcount": 250,
        "annual_revenue": 30_000_000,
        "revenue_currency": "EUR",
        "country": "DE",
        "region": "Bavaria",
        "growth_rate": 12.5,
        "source": "trade fair",
    }
    body.update(overrides)
    return body


def register(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post("/accounts", json=registration(**overrides))
    assert response.status_code == 201, response.text
    return response.json()


def command(
    client: TestClient,
    account: dict[str, Any],
    path: str,
    body: dict[str, Any],
    method: str = "POST",
) -> dict[str, Any]:
    response = client.request(method, f"/accounts/{account['id']}/{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def qualified(client: TestClient, **overrides: Any) -> dict[str, Any]:
    account = register(client, **overrides)
    return command(client, account, "screening", {"outcome": "qualified"})


def rated(client: TestClient, ratings: tuple[int, int, int, int] = (4, 3, 5, 2), **overrides: Any):
    account = qualified(client, **overrides)
    budget, authority, need, timing = ratings
    body = {"budget": budget, "authority": authority, "need": need, "timing": timing}
    return command(client, account, "bant", body, method="PUT")


def warmed_up(client: TestClient, **overrides: Any) -> dict[str, Any]:
    account = rated(client, **overrides)
    command(
        client,
        account,
        "outreach",
        {"kind": "material_sent", "material": "white paper", "channel": "email"},
    )
    return command(client, account, "outreach", {"kind": "meeting_held"})


def asgi_scope(
    method: str,
    path: str,
    content_type: bytes,
    length: int,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> dict[str, Any]:
    """The scope of an HTTP request from loopback, for a test that sends its body itself (a
    body that stops coming, a client that goes away) or its headers as it means them (one
    twice: the test client would join them)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", content_type),
            (b"content-length", str(length).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
