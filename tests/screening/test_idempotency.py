"""Idempotency-Key on screening policies and imports: a retry answers as the first request did
and stores nothing; the key sent with another request is refused. On both stores."""

from __future__ import annotations

import threading

import pytest

from domain.ledger import JOB_STARTED_TOPIC, CommandMeta
from domain.receipts import IdempotencyKey
from tests.api.requests import registration
from tests.screening.test_import import HEADER, events_in_store, good_rows
from tests.screening.test_jobs import finished

CSV = {"Content-Type": "text/csv"}


def jobs_started(ledger) -> int:
    return len(ledger.recorder.select_notifications(1, 1_000_000, topics=[JOB_STARTED_TOPIC]))


def test_a_policy_retried_with_the_same_key_and_body_is_created_once(client):
    headers = {"Idempotency-Key": "policy-1"}

    first = client.post("/screening-policies", json={"headcount_min": 50}, headers=headers)
    again = client.post("/screening-policies", json={"headcount_min": 50}, headers=headers)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"] == "/screening-policies/1"
    assert again.headers["idempotent-replayed"] == "true"
    assert [p["version"] for p in client.get("/screening-policies").json()["items"]] == [1]


def test_a_policy_key_sent_with_another_body_is_refused_and_creates_nothing(client, ledger):
    headers = {"Idempotency-Key": "policy-2"}
    client.post("/screening-policies", json={"headcount_min": 50}, headers=headers)
    stored = events_in_store(ledger)

    other = client.post("/screening-policies", json={"headcount_min": 500}, headers=headers)

    assert other.status_code == 422
    assert other.json()["rule"] == "idempotency_key_reused"
    assert events_in_store(ledger) == stored
    assert client.get("/screening-policies").json()["items"][0]["criteria"]["headcount_min"] == 50
    assert client.post("/screening-policies", json={"headcount_min": 500}).status_code == 201


def test_an_import_retried_with_the_same_key_and_file_answers_with_the_same_job(client, ledger):
    body = (HEADER + good_rows(20)).encode()
    headers = {**CSV, "Idempotency-Key": "upload-1"}

    first = client.post("/imports", content=body, headers=headers)
    job = finished(client, first.headers["location"])
    again = client.post("/imports", content=body, headers=headers)

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert jobs_started(ledger) == 1
    assert job["result"]["registered"] == 20
    assert finished(client, again.headers["location"]) == job


def test_an_import_key_sent_with_another_file_or_options_is_refused(client, jobs, ledger, settings):
    body = (HEADER + good_rows(5)).encode()
    headers = {**CSV, "Idempotency-Key": "upload-2"}
    finished(client, client.post("/imports", content=body, headers=headers).headers["location"])
    stored = events_in_store(ledger)

    other_file = client.post("/imports", content=(HEADER + good_rows(6)).encode(), headers=headers)
    other_options = client.post("/imports?strict=true", content=body, headers=headers)

    for refused in (other_file, other_options):
        assert refused.status_code == 422, refused.text
        assert refused.json()["rule"] == "idempotency_key_reused"
    assert events_in_store(ledger) == stored
    assert jobs_started(ledger) == 1
    jobs.wait(60)
    assert list((settings.data_dir / "imports").iterdir()) == []  # no upload kept either


@pytest.mark.parametrize("same_file", [True, False], ids=["same-file", "another-file"])
def test_uploads_racing_with_one_key_leave_no_file_once_the_jobs_started_end(
    ledger, settings, jobs, same_file
):
    body = (HEADER + good_rows(2)).encode()
    refused: list[Exception] = []

    def upload(key: str, barrier: threading.Barrier, n: int) -> None:
        data = body if same_file else body + good_rows(1, start=10 + n).encode()
        meta = CommandMeta("importer", idempotency=IdempotencyKey(key, data.hex()))
        barrier.wait()  # both pass the check for an earlier upload before either starts a job
        try:
            jobs.submit_import(data, meta, strict=False, screen_with=None)
        except Exception as exc:  # the upload that lost, with another file: 422
            refused.append(exc)

    for race in range(20):
        barrier = threading.Barrier(2)
        racing = [
            threading.Thread(target=upload, args=(f"race-{race}", barrier, n)) for n in range(2)
        ]
        for thread in racing:
            thread.start()
        for thread in racing:
            thread.join(60)
    jobs.wait(60)

    started = ledger.recorder.select_notifications(1, 1_000_000, topics=[JOB_STARTED_TOPIC])
    files = {ledger.job(n.originator_id).params["file"] for n in started}
    assert len(files) == 20
    # The jobs' own files go when they end; a losing upload's had no job to remove it.
    assert list((settings.data_dir / "imports").iterdir()) == []
    assert len(refused) == (0 if same_file else 20)


def test_the_same_key_on_another_command_is_refused(client):
    headers = {"Idempotency-Key": "shared-key"}
    client.post("/screening-policies", json={"headcount_min": 50}, headers=headers)

    upload = client.post(
        "/imports", content=(HEADER + good_rows(1)).encode(), headers={**CSV, **headers}
    )

    assert upload.status_code == 422
    assert upload.json()["rule"] == "idempotency_key_reused"


def test_a_policy_apply_refuses_an_idempotency_key_and_does_not_advertise_it(client, ledger):
    client.post("/screening-policies", json={"headcount_min": 50})
    stored = events_in_store(ledger)

    response = client.post(
        "/screening-policies/1/apply", json={}, headers={"Idempotency-Key": "apply-1"}
    )

    assert response.status_code == 400
    assert response.json()["field"] == "Idempotency-Key"
    assert "Idempotency-Key" in response.json()["detail"]
    assert events_in_store(ledger) == stored
    paths = client.get("/schema/openapi.json").json()["paths"]

    def headers_of(path: str, method: str) -> set[str]:
        return {p["name"] for p in paths[path][method].get("parameters", [])}

    assert "Idempotency-Key" not in headers_of("/screening-policies/{version}/apply", "post")
    assert "Idempotency-Key" not in headers_of("/audit/checkpoints", "post")
    for path, method in [
        ("/screening-policies", "post"),
        ("/imports", "post"),
        ("/objectives/{period}", "put"),
        ("/accounts/{account_id}/bant", "put"),
    ]:
        assert "Idempotency-Key" in headers_of(path, method), path


REGISTRATION = registration()


def test_if_match_is_refused_and_not_advertised_where_there_is_no_account_version(client, ledger):
    stored = events_in_store(ledger)

    response = client.post(
        "/screening-policies", json={"headcount_min": 50}, headers={"If-Match": '"1"'}
    )

    assert (response.status_code, response.json()["field"]) == (400, "If-Match")
    registration = client.post("/accounts", json=REGISTRATION, headers={"If-Match": '"7"'})
    assert (registration.status_code, registration.json()["field"]) == (400, "If-Match")
    assert events_in_store(ledger) == stored
    paths = client.get("/schema/openapi.json").json()["paths"]
    for path, method in [
        ("/screening-policies", "post"),
        ("/imports", "post"),
        ("/accounts", "post"),  # a registration: no account yet to expect a version of
    ]:
        names = {p["name"] for p in paths[path][method].get("parameters", [])}
        assert "If-Match" not in names, path
        assert "Idempotency-Key" in names, path
    for path, method in [("/accounts/{account_id}/bant", "put"), ("/objectives/{period}", "put")]:
        assert "If-Match" in {p["name"] for p in paths[path][method]["parameters"]}, path


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("If-None-Match", "*"),  # create only: no command would honour it
        ("If-Unmodified-Since", "Sat, 05 Dec 2026 10:00:00 GMT"),
    ],
)
def test_a_precondition_no_command_honours_is_refused_rather_than_ignored(
    client, ledger, header, value
):
    stored = events_in_store(ledger)

    registration = client.post("/accounts", json=REGISTRATION, headers={header: value})
    objectives = client.put(
        "/objectives/2026",
        json={"targets": [{"metric": "accounts_won", "acceptable": 1, "optimal": 2, "best": 3}]},
        headers={header: value},
    )

    assert (registration.status_code, registration.json()["field"]) == (400, header)
    assert (objectives.status_code, objectives.json()["field"]) == (400, header)
    assert events_in_store(ledger) == stored


def test_a_dry_run_refuses_guard_headers_it_would_ignore(client):
    version = client.post("/screening-policies", json={"headcount_min": 50}).json()["version"]
    path = f"/screening-policies/{version}/dry-run"

    expecting = client.post(path, json={}, headers={"If-Match": '"1"'})
    keyed = client.post(path, json={}, headers={"Idempotency-Key": "dry-1"})
    plain = client.post(path, json={})

    assert (expecting.status_code, expecting.json()["field"]) == (400, "If-Match")
    assert (keyed.status_code, keyed.json()["field"]) == (400, "Idempotency-Key")
    assert plain.status_code == 200, plain.text
