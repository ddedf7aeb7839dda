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


def problems_of(operation: dict[str, Any]) -> set[str]:
    return {status for status in operation["responses"] if int(status) >= 400}


KEYS = {"401", "403", "429"}  # with API keys configured
COMMAND_INPUT = {"400", "413", "415", "422"}


def test_each_operation_lists_the_problems_it_can_give_and_no_others(client):
    paths = openapi(client)["paths"]

    assert problems_of(paths["/accounts"]["post"]) == KEYS | COMMAND_INPUT | {"409", "503"}
    assert problems_of(paths["/accounts"]["get"]) == KEYS | {"400", "503"}
    assert problems_of(paths["/accounts/{account_id}"]["get"]) == KEYS | {"400", "404", "503"}
    assert problems_of(paths["/accounts/{account_id}/bant"]["put"]) == (
        KEYS | COMMAND_INPUT | {"404", "409", "412", "503"}
    )
    assert problems_of(paths["/objectives/{period}"]["get"]) == KEYS | {"400", "404", "503"}
    assert problems_of(paths["/objectives/{period}"]["put"]) == (
        KEYS | COMMAND_INPUT | {"409", "503"}
    )
    # No parameter to refuse; a malformed UUID in the path matches no route (404).
    assert problems_of(paths["/screening-policies"]["get"]) == KEYS | {"503"}
    assert problems_of(paths["/jobs/{job_id}"]["get"]) == KEYS | {"404", "503"}
    # A stream cannot turn into a 503 once it has begun; /metrics reports the store as down.
    assert problems_of(paths["/accounts/export"]["get"]) == KEYS | {"400"}
    assert problems_of(paths["/metrics"]["get"]) == KEYS
    # The probes take no key and touch the store only to report on it.
    assert problems_of(paths["/health"]["get"]) == set()
    assert problems_of(paths["/ready"]["get"]) == {"503"}


def test_reads_list_no_problems_of_bodies_or_versions(client):
    paths = openapi(client)["paths"]

    for path, item in paths.items():
        if "get" in item:
            assert not problems_of(item["get"]) & {"409", "412", "413", "415"}, path


def test_every_problem_is_documented_as_a_problem_document_but_readiness_answers_with_its_checks(
    client,
):
    paths = openapi(client)["paths"]

    for path, item in paths.items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and (path, status) != ("/ready", "503"):
                    assert list(response["content"]) == ["application/problem+json"], (
                        path,
                        method,
                        status,
                    )
    readiness = paths["/ready"]["get"]["responses"]["503"]["content"]["application/json"]
    assert readiness["schema"] == {"$ref": "#/components/schemas/Readiness"}


def test_the_latest_checkpoint_is_documented_as_404_before_the_first_one(client):
    answer = client.get("/audit/checkpoints/latest")

    latest = openapi(client)["paths"]["/audit/checkpoints/latest"]["get"]

    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert latest["responses"]["404"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
