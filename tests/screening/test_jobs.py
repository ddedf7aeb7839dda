"""Background jobs: CSV uploads and large policy applies, resumed after a restart."""

from __future__ import annotations

import json
import time
import uuid

from domain.ledger import CommandMeta
from services.importing import import_rows
from services.jobs import IMPORT, JobRunner
from services.leadership import Leadership
from tests.screening.test_import import HEADER, good_rows


def finished(client, location: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(location)
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] != "running":
            return job
        assert time.monotonic() < deadline, "the job did not finish in time"
        time.sleep(0.05)  # polling the job as a client would


def stored_import_job(runner: JobRunner, rows: int) -> uuid.UUID:
    """An import job as the API stores it (its upload kept, the job started), not yet run."""
    runner.uploads.mkdir(parents=True, exist_ok=True)
    job_id = uuid.uuid4()
    path = runner.uploads / f"{job_id}.csv"
    path.write_bytes((HEADER + good_rows(rows)).encode())
    runner.ledger.start_job(
        IMPORT,
        {"file": str(path), "strict": False, "screen_with": None, "reason": None},
        CommandMeta("importer"),
        job_id,
    )
    return job_id


def finished_at_next_start(ledger, settings, job_id):
    """Starts the process's job runner again, as a restart would, and waits for the job it
    resumes (the only unfinished one)."""
    restarted = JobRunner(ledger, settings)
    assert restarted.resume() == 1
    restarted.wait(60)
    return ledger.job(job_id)


def test_an_uploaded_csv_is_imported_by_a_job_with_progress_and_a_result(client):
    body = (HEADER + good_rows(300) + "Bad,bad.example,it,many,1,EUR,DE,,1,x\n").encode()

    response = client.post("/imports", content=body, headers={"Content-Type": "text/csv"})

    assert response.status_code == 202
    job = finished(client, response.headers["location"])
    assert job["status"] == "finished"
    assert (job["done"], job["total"]) == (300, 300)
    result = job["result"]
    assert (result["registered"], result["rejected"]) == (300, 1)
    assert result["errors"] == [
        {"line": 302, "column": "Employees", "reason": "'many' is not a number"}
    ]
    again = finished(
        client,
        client.post("/imports", content=body, headers={"Content-Type": "text/csv"}).headers[
            "location"
        ],
    )
    assert (again["result"]["registered"], again["result"]["unchanged"]) == (0, 300)


def test_bad_uploads_are_refused(client):
    assert (
        client.post("/imports", content=b"", headers={"Content-Type": "text/csv"}).status_code
        == 400
    )
    assert client.post("/imports", json={"a": 1}).status_code == 415
    shouted = {"Content-Type": "TEXT/CSV; charset=UTF-8"}  # media types ignore letter case
    assert client.post("/imports", content=HEADER.encode(), headers=shouted).status_code == 202
    assert client.get(f"/jobs/{uuid.uuid4()}").status_code == 404


def test_a_policy_apply_can_run_as_a_job(client):
    upload = client.post(
        "/imports", content=(HEADER + good_rows(50)).encode(), headers={"Content-Type": "text/csv"}
    )
    imported = finished(client, upload.headers["location"])
    assert imported["status"] == "finished", imported
    client.post("/screening-policies", json={"headcount_min": 30})
    head = client.get("/status").json()["log_position"]
    listed = client.get("/accounts", params={"limit": 200, "min_position": head}).json()
    ids = [a["account_id"] for a in listed["items"]]
    assert len(ids) == 50
    kept = client.post(
        f"/accounts/{ids[0]}/screening/override",
        json={"outcome": "qualified", "reason": "strategic partner"},
    )
    assert kept.status_code == 200, kept.text

    response = client.post("/screening-policies/1/apply?background=true", json={"account_ids": ids})

    assert response.status_code == 202
    job = finished(client, response.headers["location"])
    assert job["result"]["applied"] == len(ids) - 1
    rerun = client.post("/screening-policies/1/apply", json={"account_ids": ids}).json()
    assert rerun["applied"] == 0
    # The job counts what it left alone as the answer of a run in the request does.
    assert (job["result"]["overridden"], job["result"]["skipped"]) == (1, 1)
    assert (rerun["overridden"], rerun["skipped"]) == (1, 1)


def test_an_interrupted_import_job_is_resumed_at_start_up_and_doubles_nothing(ledger, settings):
    job_id = stored_import_job(JobRunner(ledger, settings), 400)
    # The process stopped after storing the first half of the rows.
    import_rows(ledger, (HEADER + good_rows(200)).encode(), CommandMeta("importer"))

    job = finished_at_next_start(ledger, settings, job_id)

    assert job.status == "finished"
    assert (job.result["registered"], job.result["unchanged"]) == (200, 200)
    assert ledger.unfinished_jobs() == []
    registrations = [
        n
        for n in ledger.recorder.select_notifications(1, 100_000)
        if n.topic.endswith("Account.Registered")
    ]
    assert len(registrations) == 400


def test_a_job_stopped_with_its_process_stays_running_and_the_next_start_finishes_it(
    ledger, settings
):
    runner = JobRunner(ledger, settings)
    job_id = stored_import_job(runner, 50)
    runner.stop()  # the process is stopping while the job runs: it stops after a row

    runner.run(job_id)

    assert ledger.job(job_id).status == "running"
    job = finished_at_next_start(ledger, settings, job_id)
    assert job.status == "finished"
    assert (job.result["registered"], job.result["unchanged"]) == (49, 1)


def test_an_upload_can_screen_what_it_imports_by_a_policy(client):
    client.post("/screening-policies", json={"headcount_min": 100})
    body = (HEADER + good_rows(5, start=85)).encode()  # headcounts 95 to 99: all under 100

    upload = client.post(
        "/imports?screen_with=1", content=body, headers={"Content-Type": "text/csv"}
    )
    job = finished(client, upload.headers["location"])

    assert job["result"]["registered"] == 5
    assert job["result"]["screened"] == 5
    listed = client.get(
        "/accounts", params={"min_position": client.get("/status").json()["log_position"]}
    ).json()["items"]
    stages = {a["name"]: a["abm_stage"] for a in listed}
    assert stages == {
        "Company 85": "excluded",
        "Company 86": "excluded",
        "Company 87": "excluded",
        "Company 88": "excluded",
        "Company 89": "excluded",
    }


def test_a_job_that_another_process_is_running_is_not_resumed_twice(ledger, settings):
    runner = JobRunner(ledger, settings)
    job_id = stored_import_job(runner, 20)
    elsewhere = Leadership(settings, f"jobs/{job_id}")  # as the replica running it holds it
    assert elsewhere.try_acquire()
    try:
        runner.resume()
        runner.wait(60)
        assert ledger.job(job_id).status == "running"  # left to the process that runs it
    finally:
        elsewhere.release()

    runner.resume()  # that process died: the job is free to resume
    runner.wait(60)
    assert ledger.job(job_id).status == "finished"


def test_a_job_that_ended_before_a_replica_took_its_lock_is_left_as_it_ended(ledger, settings):
    runner = JobRunner(ledger, settings)
    job_id = stored_import_job(runner, 20)
    runner.resume()
    runner.wait(60)
    ended = ledger.job(job_id)
    assert (ended.status, ended.result["registered"]) == ("finished", 20)
    events = len(ledger.stored_events(job_id))

    # A replica that found the job unfinished at its start, and took its lock once it ended.
    JobRunner(ledger, settings).run(job_id)

    assert len(ledger.stored_events(job_id)) == events
    assert ledger.job(job_id).result == ended.result
    if settings.database_url is None:  # an ended job leaves no lock file behind
        assert list(settings.data_dir.glob("jobs/*.lock")) == []


def test_an_upload_records_its_request_id_on_every_event_it_causes(client, ledger):
    client.post("/screening-policies", json={"headcount_min": 100})
    before = len(ledger.recorder.select_notifications(1, 1_000_000))
    body = (HEADER + good_rows(5, start=90)).encode()  # headcounts 100 to 104: qualified

    upload = client.post(
        "/imports?screen_with=1",
        content=body,
        headers={"Content-Type": "text/csv", "X-Request-ID": "imp-req-1"},
    )
    job = finished(client, upload.headers["location"])

    assert (job["result"]["registered"], job["result"]["screened"]) == (5, 5)
    caused = ledger.recorder.select_notifications(1, 1_000_000)[before:]
    kinds = {n.topic.rsplit(".", 1)[-1] for n in caused}
    assert {"Registered", "Screened", "Started", "Progressed", "Finished"} <= kinds
    assert {json.loads(n.state)["request_id"] for n in caused} == {"imp-req-1"}


def test_an_upload_naming_a_missing_policy_is_refused_and_stores_nothing(client, ledger, settings):
    missing_apply = client.post("/screening-policies/99/apply", json={})

    upload = client.post(
        "/imports?screen_with=99",
        content=(HEADER + good_rows(3)).encode(),
        headers={"Content-Type": "text/csv"},
    )

    assert upload.status_code == missing_apply.status_code == 404
    assert upload.json()["type"] == missing_apply.json()["type"]
    assert "99" in upload.json()["detail"]
    assert ledger.recorder.select_notifications(1, 1_000_000) == []
    assert not (settings.data_dir / "imports").exists() or not any(
        (settings.data_dir / "imports").iterdir()
    )
