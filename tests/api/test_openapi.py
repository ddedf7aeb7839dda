"""The OpenAPI document at /schema/openapi.json says what the service does: the answers each
operation gives, the headers they carry, and the limits the service enforces."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any
from uuid import uuid4

from litestar.testing import TestClient

from services.api.app import create_app
from services.api.auth import parse_keys
from tests.api.requests import LOCAL, register, registration


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


# With API keys configured; without, 421 for another host name, and 403 for another origin
KEYS = {"401", "403", "429", "421"}
COMMAND_INPUT = {"400", "413", "415", "422"}


def test_each_operation_lists_the_problems_it_can_give_and_no_others(client):
    paths = openapi(client)["paths"]

    assert problems_of(paths["/accounts"]["post"]) == KEYS | COMMAND_INPUT | {"409", "503"}
    assert problems_of(paths["/accounts"]["get"]) == KEYS | {"400", "503"}
    # 409: an event of the account can no longer be read; 412: If-Match names another version.
    assert problems_of(paths["/accounts/{account_id}"]["get"]) == (
        KEYS | {"400", "404", "409", "412", "503"}
    )
    assert problems_of(paths["/accounts/{account_id}/bant"]["put"]) == (
        KEYS | COMMAND_INPUT | {"404", "409", "412", "503"}
    )
    # 409: an event of the objectives, a policy or a job can no longer be read.
    assert problems_of(paths["/objectives/{period}"]["get"]) == (
        KEYS | {"400", "404", "409", "412", "503"}
    )
    # 404: only targets to remove, for a period that has none.
    assert problems_of(paths["/objectives/{period}"]["put"]) == (
        KEYS | COMMAND_INPUT | {"404", "409", "412", "503"}
    )
    # Every operation refuses a query parameter it does not take (400); a malformed UUID in
    # the path matches no route (404).
    assert problems_of(paths["/screening-policies"]["get"]) == KEYS | {"400", "409", "503"}
    assert problems_of(paths["/jobs/{job_id}"]["get"]) == KEYS | {"400", "404", "409", "503"}
    # An export reads the read models' position before its file begins (503 while the store is
    # away); /metrics reports the store as down.
    assert problems_of(paths["/accounts/export"]["get"]) == KEYS | {"400", "503"}
    assert problems_of(paths["/metrics"]["get"]) == KEYS | {"400"}
    # The probes take no key and touch the store only to report on it.
    assert problems_of(paths["/health"]["get"]) == {"400", "421"}
    assert problems_of(paths["/ready"]["get"]) == {"400", "421", "503"}


# The reads that vouch for the record answer 409 when its latest checkpoint does not verify,
# and those that read a record's events when one can no longer be read.
CONFLICTING = {
    "/objectives/{period}",
    "/screening-policies",
    "/screening-policies/{version}",
    "/jobs/{job_id}",
    "/accounts/{account_id}",
    "/accounts/{account_id}/audit",
    "/accounts/{account_id}/diff",
    "/accounts/{account_id}/history",
    "/audit/checkpoints/latest",
    "/audit/export",
}


VERSIONED_READS = {"/accounts/{account_id}", "/objectives/{period}"}


def test_reads_list_no_problems_of_bodies_or_versions_but_the_versioned_records_412(client):
    paths = openapi(client)["paths"]

    for path, item in paths.items():
        if "get" in item:
            conflict = {"409"} & problems_of(item["get"])
            assert conflict == ({"409"} if path in CONFLICTING else set()), path
            # A versioned record's read answers 412 to an If-Match of another version.
            versions = {"412"} if path in VERSIONED_READS else set()
            assert problems_of(item["get"]) & {"412", "413", "415"} == versions, path


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


# What HTTP or the browser-facing defaults add to any answer; the document describes the rest.
GENERIC = {
    "content-type",
    "content-length",
    "date",
    "server",
    "transfer-encoding",
    "cache-control",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
}


def undocumented_headers(document: dict[str, Any], path: str, method: str, answer) -> set[str]:
    responses = document["paths"][path][method]["responses"]
    documented = {name.lower() for name in responses[str(answer.status_code)].get("headers", {})}
    return {name.lower() for name in answer.headers.keys()} - GENERIC - documented


def test_every_header_an_answer_carries_is_documented_for_its_operation_and_status(client):
    document = openapi(client)
    seen: set[str] = set()

    def check(path: str, method: str, answer) -> Any:
        assert not undocumented_headers(document, path, method, answer), (path, answer.status_code)
        seen.update(name.lower() for name in answer.headers.keys())
        return answer

    once = {"Idempotency-Key": "register-1"}
    account = check(
        "/accounts", "post", client.post("/accounts", json=registration(), headers=once)
    )
    check("/accounts", "post", client.post("/accounts", json=registration(), headers=once))
    screening = f"{account.headers['location']}/screening"
    screened = client.post(screening, json={"outcome": "qualified"})
    check("/accounts/{account_id}/screening", "post", screened)
    stale = client.post(screening, json={"outcome": "excluded"}, headers={"If-Match": '"1"'})
    check("/accounts/{account_id}/screening", "post", stale)
    check("/accounts/{account_id}", "get", client.get(account.headers["location"]))
    check("/accounts/{account_id}", "get", client.get(f"/accounts/{uuid4()}"))
    check("/accounts", "get", client.get("/accounts", params={"min_position": 10**9}))
    check("/leaderboards/bant", "get", client.get("/leaderboards/bant"))
    targets = {"targets": [{"metric": "accounts_won", "acceptable": 1, "optimal": 2, "best": 3}]}
    for _ in range(2):
        objectives = client.put("/objectives/2026", json=targets, headers={"Idempotency-Key": "o"})
        check("/objectives/{period}", "put", objectives)
    check("/screening-policies", "post", client.post("/screening-policies", json={}))
    apply = client.post("/screening-policies/1/apply", params={"background": True}, json={})
    check("/screening-policies/{version}/apply", "post", apply)
    csv = "Company,Website,Industry,Employees,Revenue,Currency,Country,Region,Growth,Source\n"
    upload = client.post(
        "/imports", content=csv + "Beta,beta.example,software,40,1000,EUR,DE,,2,list\n"
    )
    check("/imports", "post", upload)
    check("/health", "get", client.get("/health"))
    check("/accounts/export", "get", client.get("/accounts/export"))
    check("/leaderboards/bant/export", "get", client.get("/leaderboards/bant/export"))
    check("/audit/export", "get", client.get("/audit/export"))
    history = f"{account.headers['location']}/history"
    check("/accounts/{account_id}/history", "get", client.get(history, params={"format": "csv"}))
    check("/accounts/{account_id}/history", "get", client.get(history))

    assert [a.status_code for a in (screened, stale, apply, upload)] == [200, 412, 202, 202]
    assert seen >= {
        "etag",
        "location",
        "crm-position",
        "crm-stale",
        "idempotent-replayed",
        "x-request-id",
        "content-disposition",
    }
    # A position is documented as the number it is, for a client to send back as min_position
    board = document["paths"]["/leaderboards/bant"]["get"]["responses"]["200"]
    assert board["headers"]["CRM-Position"]["schema"]["type"] == "integer"


def test_the_headers_of_keys_and_rate_limits_are_documented_where_they_are_sent(
    ledger, projector, settings
):
    limited = create_app(
        ledger,
        projector,
        replace(settings, rate_limit_per_minute=1),
        keys=parse_keys("sam:sales:sales-secret-0123456789", "test"),
    )
    key = {"Authorization": "Bearer sales-secret-0123456789"}
    with TestClient(limited, base_url=LOCAL) as client:
        document = openapi(client)
        answers = [client.get("/accounts"), client.get("/accounts", headers=key)]
        answers.append(client.get("/accounts", headers=key))

    assert [a.status_code for a in answers] == [401, 200, 429]
    assert {"www-authenticate", "ratelimit-limit", "retry-after"} <= {
        name.lower() for answer in answers for name in answer.headers.keys()
    }
    for answer in answers:
        assert not undocumented_headers(document, "/accounts", "get", answer), answer.status_code


def test_the_document_says_how_to_present_a_key_where_one_is_needed(client):
    document = openapi(client)
    schemes = document["components"]["securitySchemes"]
    (name,) = [name for name, scheme in schemes.items() if scheme.get("scheme") == "bearer"]

    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            public = path in ("/health", "/ready") or path.startswith("/schema")
            expected = None if public else [{name: []}]
            assert operation.get("security") == expected, (method, path)


def header_schema(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    parameters = document["paths"][path][method]["parameters"]
    return next(p["schema"] for p in parameters if p["name"] == name)


def test_the_document_states_the_limits_the_service_enforces(client):
    account = register(client)
    at = f"/accounts/{account['id']}"
    document = openapi(client)
    schemas = document["components"]["schemas"]
    too_long = "x" * 201

    negative_amount = client.post(f"{at}/deal", json={"outcome": "won", "amount": -1})
    negative_headcount = client.post("/screening-policies", json={"headcount_min": -1})
    negative_revenue = client.post("/screening-policies", json={"revenue_min": -1})
    negative_position = client.get("/accounts", params={"min_position": -1})
    empty_criterion = client.post(
        f"{at}/screening", json={"outcome": "qualified", "criteria": [""]}
    )
    long_criterion = client.post(
        f"{at}/screening", json={"outcome": "qualified", "criteria": [too_long]}
    )

    assert [negative_amount.status_code, negative_headcount.status_code] == [422, 422]
    assert [negative_revenue.status_code, negative_position.status_code] == [422, 400]
    assert [empty_criterion.status_code, long_criterion.status_code] == [422, 422]
    assert schemas["CloseDeal"]["properties"]["amount"]["minimum"] == 0
    assert schemas["CreatePolicy"]["properties"]["headcount_min"]["minimum"] == 0
    assert schemas["CreatePolicy"]["properties"]["revenue_min"]["minimum"] == 0
    criteria = schemas["ScreenAccount"]["properties"]["criteria"]["items"]
    assert (criteria["minLength"], criteria["maxLength"]) == (1, 200)
    parameters = document["paths"]["/accounts"]["get"]["parameters"]
    min_position = next(p["schema"] for p in parameters if p["name"] == "min_position")
    assert min_position["minimum"] == 0
    # A free-text parameter says what it is and the rules of its text
    search = next(p for p in parameters if p["name"] == "q")
    assert "without accents" in search["description"]
    assert "control" in search["description"]
    assert (search["schema"]["minLength"], search["schema"]["maxLength"]) == (1, 200)


def test_the_document_states_the_form_of_the_guard_headers(client):
    account = register(client)
    screening = f"/accounts/{account['id']}/screening"
    document = openapi(client)
    key = header_schema(document, "/accounts/{account_id}/screening", "post", "Idempotency-Key")
    version = header_schema(document, "/accounts/{account_id}/screening", "post", "If-Match")
    body = {"outcome": "qualified"}

    for refused in ["", "two words", "k" * 256]:
        answer = client.post(screening, json=body, headers={"Idempotency-Key": refused})
        assert (answer.status_code, answer.json()["field"]) == (400, "Idempotency-Key")
        assert not re.search(key["pattern"], refused)
    for refused in ['W/"1"', '"one"', "1, 2"]:
        answer = client.post(screening, json=body, headers={"If-Match": refused})
        assert (answer.status_code, answer.json()["field"]) == (400, "If-Match")
        assert not re.search(version["pattern"], refused)
    assert re.search(key["pattern"], "k" * 255) and re.search(key["pattern"], "retry-1")
    for taken in ['"1"', "1", "*"]:
        assert re.search(version["pattern"], taken)
    actor = header_schema(document, "/accounts/{account_id}/screening", "post", "X-Actor")
    for refused in [" ", "a\tb", "a" * 201]:
        answer = client.post(screening, json=body, headers={"X-Actor": refused})
        assert (answer.status_code, answer.json()["field"]) == (400, "X-Actor")
        assert not re.search(actor["pattern"], refused) or len(refused) > actor["maxLength"]
    assert re.search(actor["pattern"], "Ann Smith") and actor["maxLength"] == 200


def test_every_request_body_is_documented_as_taking_no_field_it_does_not_know(client):
    document = openapi(client)
    schemas = document["components"]["schemas"]
    bodies = {
        content["schema"]["$ref"].rsplit("/", 1)[1]
        for operations in document["paths"].values()
        for operation in operations.values()
        for content in operation.get("requestBody", {}).get("content", {}).values()
        if "$ref" in content["schema"]
    }
    nested = {"BantNotes", "Target"}
    unknown = client.post("/accounts", json={**registration(), "colour": "red"})

    assert len(bodies) > 10
    assert unknown.status_code == 422
    for name in bodies | nested:
        assert schemas[name].get("additionalProperties") is False, name


def test_the_upload_documents_its_csv_body_which_the_service_takes(client):
    operation = openapi(client)["paths"]["/imports"]["post"]
    body = operation["requestBody"]

    uploaded = client.post(
        "/imports",
        content="Company,Website\nAcme,acme.example\n",
        headers={"Content-Type": "text/csv"},
    )

    assert body["required"] is True
    assert list(body["content"]) == ["text/csv"]
    assert "docs/IMPORT.md" in body["description"]
    assert uploaded.status_code == 202


def test_the_reference_pages_load_only_what_the_service_serves_itself(client):
    for page in ("/schema", "/schema/swagger"):
        html = client.get(page)
        assert html.status_code == 200, page
        named = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)

        assert len(named) >= 4, named  # the script, its preset, the style sheet, the icon
        for url in named:
            assert url.startswith("/schema/assets/"), url  # no CDN: offline, and no third party
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-type"].split(";")[0] in (
                "text/javascript",
                "text/css",
                "image/png",
            ), url
    # and nothing more of the package: its source maps and editor are megabytes no key guards
    for unused in ("swagger-ui-bundle.js.map", "swagger-editor-es-bundle.js.map", "index.html"):
        assert client.get(f"/schema/assets/{unused}").status_code == 404, unused
