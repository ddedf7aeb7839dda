"""The OpenAPI document at /schema/openapi.json says what the service does: the answers each
operation gives, the headers they carry, and the limits the service enforces."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.api.requests import register


def openapi(client: TestClient) -> dict[str, Any]:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_the_problem_schema_shows_one_answer_the_service_gives_and_no_generated_examples(client):
    account = register(client)
    refused = client.post(f"/accounts/{account['id']}/stage", json={"to": "won"})

    problem = openapi(client)["components"]["schemas"]["Problem"]

    assert refused.status_code == 409
    assert problem["examples"] == [refused.json()]
    assert "examples" not in str(problem["properties"])
