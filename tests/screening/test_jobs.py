"""Background jobs: CSV uploads and large policy applies, resumed after a restart."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

import anyio
import psycopg
import pytest
from litestar.testing import TestClient

from domain.account import EVENT_TOPIC_PREFIX, account_id_for
from domain.jobs import Job
from domain.ledger import CommandMeta
from domain.screening_policy import Criteria
from services.api import jobs as api_jobs
from services.api.app import create_app
from services.api.jobs import job_view
from services.importing import import_rows
from services.jobs import IMPORT, IMPORTS_AT_ONCE, IMPORTS_HELD, UPLOADS_AT_ONCE, JobRunner
from services.leadership import Leadership
from services.store import open_ledger
from tests.api.requests import LOCAL, asgi_scope
from tests.audit.tampering import RawStore
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


def stored_import_job(
    runner: JobRunner,
    rows: int = 0,
    *,
    body: str | None = None,
    screen_with: int | None = None,
    file: str | None = None,
) -> uuid.UUID:
    """An import job as the API stores it (its upload kept, the job started), not yet run: of
    `rows` good rows, or of the rows in `body`; recorded as kept at `file` (formatted with the
    job's id) when given, as a replica that sees the data directory elsewhere records it."""
    runner.uploads.mkdir(parents=True, exist_ok=True)
    job_id = uuid.uuid4()
    path = runner.uploads / f"{job_id}.csv"
    path.write_bytes((HEADER + (good_rows(rows) if body is None else body)).encode())
    recorded = str(path) if file is None else file.format(job_id)
    runner.ledger.start_job(
        IMPORT,
        {"file": recorded, "strict": False, "screen_with": screen_with, "reason": None},
        CommandMeta("importer"),
        job_id,
    )
    return job_id


def when_stored(ledger, topic: str, count: int, then) -> None:
    """Calls `then()` once `count` events whose topic ends with `topic` are stored, right after
    the save that stored the last of them (in the thread that stores, before its commands are
    answered)."""
    seen, after = 0, ledger.recorder.max_notification_id() or 0

    def saved(position: int) -> None:
        nonlocal seen, after
        stored = ledger.recorder.select_notifications(after + 1, position - after)
        after = position
        before, seen = seen, seen + sum(n.topic.endswith(topic) for n in stored)
        if before < count <= seen:
            then()

    ledger.on_saved.append(saved)


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
    assert result["errors_total"] == 1
    again = finished(
        client,
        client.post("/imports", content=body, headers={"Content-Type": "text/csv"}).headers[
            "location"
        ],
    )
    assert (again["result"]["registered"], again["result"]["unchanged"]) == (0, 300)


def first_positions(ledger, *suffixes: str) -> list[int]:
    """The log position of the first event whose topic ends with each suffix."""
    notifications = ledger.recorder.select_notifications(1, 1_000_000)
    return [next(n.id for n in notifications if n.topic.endswith(s)) for s in suffixes]


def test_an_import_job_knows_no_total_until_it_reads_its_file_and_says_it_before_any_row(
    ledger, settings
):
    runner = JobRunner(ledger, settings)
    job_id = stored_import_job(runner, 30)
    assert job_view(ledger.job(job_id)).total is None  # not yet known: not 0 rows to do

    runner.run(job_id)

    progressed, registered = first_positions(ledger, "Job.Progressed", "Account.Registered")
    assert progressed < registered
    # The job as a client polling it saw it then: the rows counted, none stored yet.
    then = job_view(ledger.repository.get(job_id, version=2))
    assert (then.status, then.done, then.total) == ("running", 0, 30)
    assert (ledger.job(job_id).done, ledger.job(job_id).total) == (30, 30)


@pytest.mark.parametrize("refused", [0, 4], ids=["first-row", "last-row"])
def test_a_row_the_store_refuses_is_taken_off_the_total_so_a_finished_job_did_all_of_it(
    ledger, settings, monkeypatch, refused
):
    monkeypatch.setattr("services.jobs.PROGRESS_SECONDS", 3600.0)  # only the first and the end
    # One company's record can no longer be read: the store refuses to update it.
    import_rows(ledger, (HEADER + good_rows(1, start=refused)).encode(), CommandMeta("marta"))
    RawStore(settings, ledger).garble_state(account_id_for(f"company{refused}.example"), 1)
    restarted = open_ledger(settings)  # this ledger's writer still holds Company 4 as written
    try:
        runner = JobRunner(restarted, settings)
        job_id = stored_import_job(runner, 5)

        runner.run(job_id)

        job = job_view(restarted.job(job_id))
        recorded = [
            (e.done, e.total)
            for e in restarted.events.get(job_id)
            if type(e).__name__ == "Progressed"
        ]
    finally:
        restarted.close()
    assert job.status == "finished"
    assert (job.result["registered"], job.result["rejected"]) == (4, 1)
    assert job.result["errors"][0]["line"] == refused + 2
    assert (job.done, job.total) == (4, 4)  # not 0 (or 4) of 5 for ever
    assert recorded == [(0, 5), (4, 4)]  # the refusal recorded at the pace of the rest


def test_a_policy_apply_job_says_its_total_before_it_screens_a_chunk(ledger, settings):
    imported = import_rows(ledger, (HEADER + good_rows(20)).encode(), CommandMeta("importer"))
    ledger.create_policy(Criteria(headcount_min=25), CommandMeta("analyst"))
    runner = JobRunner(ledger, settings)

    job = runner.submit_apply(1, imported.account_ids, CommandMeta("analyst"))
    runner.wait(60)

    progressed, screened = first_positions(ledger, "Job.Progressed", "Account.Screened")
    assert progressed < screened
    then = job_view(ledger.repository.get(job.id, version=2))
    assert (then.done, then.total) == (0, 20)
    assert ledger.job(job.id).status == "finished"


def test_an_ended_job_answers_the_position_its_reads_wait_for_and_a_running_one_none(
    client, jobs, ledger
):
    running = stored_import_job(jobs, 3)  # started, not run yet
    assert "crm-position" not in client.get(f"/jobs/{running}").headers
    upload = client.post(
        "/imports", content=(HEADER + good_rows(40)).encode(), headers={"Content-Type": "text/csv"}
    )
    assert finished(client, upload.headers["location"])["status"] == "finished"

    ended = client.get(upload.headers["location"])

    position = int(ended.headers["crm-position"])
    assert position == ledger.recorder.max_notification_id()  # the job's last event, or later
    listed = client.get("/accounts", params={"limit": 200, "min_position": position}).json()
    assert listed["min_position_reached"] is True
    assert len(listed["items"]) == 40


def test_an_upload_answers_with_total_null_and_counts_the_rows_once_read(client, jobs):
    body = (HEADER + good_rows(5) + "Bad,bad.example,it,many,1,EUR,DE,,1,x\n").encode()

    response = client.post("/imports", content=body, headers={"Content-Type": "text/csv"})
    jobs.wait(60)

    assert response.status_code == 202
    assert (response.json()["done"], response.json()["total"]) == (0, None)
    job = client.get(response.headers["location"]).json()
    assert (job["status"], job["done"], job["total"]) == ("finished", 5, 5)


@pytest.mark.parametrize(
    ("body", "query", "reason"),
    [
        ((HEADER + good_rows(3)).encode("utf-16"), "", "the file is UTF-16, not UTF-8"),
        (b"name,domain\nAcme,acme.example\n", "", "missing column(s): industry, headcount"),
        ((HEADER + 'Acme,"acme.example\n').encode(), "", "line 2: the quote"),
        (
            (HEADER + good_rows(3) + "Bad,bad.example,it,many,1,EUR,DE,,1,x\n").encode(),
            "?strict=true",
            "1 bad row(s)",
        ),
    ],
    ids=["utf-16", "missing-columns", "unclosed-quote", "strict-with-a-bad-row"],
)
def test_an_upload_refused_as_a_whole_fails_with_the_reason_and_stores_no_account(
    client, jobs, ledger, body, query, reason
):
    response = client.post(f"/imports{query}", content=body, headers={"Content-Type": "text/csv"})
    jobs.wait(60)

    assert response.status_code == 202
    job = client.get(response.headers["location"]).json()
    assert job["status"] == "failed"
    assert job["error"].startswith(reason)
    # What clients read before the status said so stays: the reason, the bad rows.
    assert job["result"]["refused"] == job["error"]
    assert job["result"]["registered"] == 0
    if query:
        assert job["result"]["errors"] == [
            {"line": 5, "column": "Employees", "reason": "'many' is not a number"}
        ]
    assert (job["done"], job["total"]) == (0, None)
    topics = {n.topic for n in ledger.recorder.select_notifications(1, 1_000_000)}
    assert not any(t.startswith(EVENT_TOPIC_PREFIX) for t in topics)


@pytest.mark.parametrize(
    ("result", "status", "error", "total"),
    [
        (
            {"registered": 0, "rejected": 0, "refused": "missing column(s): source", "errors": []},
            "failed",
            "missing column(s): source",
            None,
        ),
        (
            {"registered": 0, "rejected": 1, "refused": None, "errors": [{"line": 2}]},
            "finished",
            None,
            0,
        ),
    ],
    ids=["refused-file", "no-good-row"],
)
def test_an_import_job_recorded_before_refused_files_failed_reads_as_it_would_end_now(
    ledger, result, status, error, total
):
    # Before Job.Refused a refused file's job finished with the reason in its result, and a
    # job with no row to import recorded no progress: Started, then Finished only.
    job_id = ledger.start_job(IMPORT, {"file": "gone.csv"}, CommandMeta("importer")).value.id
    ledger.record_job(job_id, lambda j, by: j.finish(result, by))

    job = job_view(ledger.job(job_id))

    assert (job.status, job.error, job.done, job.total) == (status, error, 0, total)
    assert job.result == result


def test_bad_uploads_are_refused(client):
    assert (
        client.post("/imports", content=b"", headers={"Content-Type": "text/csv"}).status_code
        == 400
    )
    assert client.post("/imports", json={"a": 1}).status_code == 415
    shouted = {"Content-Type": "TEXT/CSV; charset=UTF-8"}  # media types ignore letter case
    assert client.post("/imports", content=HEADER.encode(), headers=shouted).status_code == 202
    assert client.get(f"/jobs/{uuid.uuid4()}").status_code == 404


def test_an_upload_is_not_kept_once_its_job_has_ended(client, jobs, settings):
    """The file holds the people and companies of the list: once the job is done nothing reads
    it again, and kept it would fill the disk with every upload ever sent."""
    imported = client.post(
        "/imports", content=(HEADER + good_rows(3)).encode(), headers={"Content-Type": "text/csv"}
    )
    refused = client.post(
        "/imports?strict=true",
        content=(HEADER + "Bad,bad.example,it,many,1,EUR,DE,,1,x\n").encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert finished(client, imported.headers["location"])["status"] == "finished"
    assert finished(client, refused.headers["location"])["status"] == "failed"

    jobs.wait(60)

    assert list((settings.data_dir / "imports").iterdir()) == []


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
    runner = JobRunner(ledger, settings)
    job_id = stored_import_job(runner, 400)
    # The process stops after the job stored the first half of the rows.
    when_stored(ledger, "Account.Registered", 200, runner.stop)
    runner.run(job_id)
    assert ledger.job(job_id).status == "running"

    job = finished_at_next_start(ledger, settings, job_id)

    assert job.status == "finished"
    # What the import did, as a run the restart had not cut would say.
    assert (job.result["registered"], job.result["unchanged"]) == (400, 0)
    assert ledger.unfinished_jobs() == []
    registrations = [
        n
        for n in ledger.recorder.select_notifications(1, 100_000)
        if n.topic.endswith("Account.Registered")
    ]
    assert len(registrations) == 400


def test_a_resumed_job_counts_each_row_as_a_run_the_restart_had_not_cut_would(
    ledger, settings, monkeypatch
):
    monkeypatch.setattr("services.importing.CHUNK_ROWS", 5)  # stopped mid-file
    import_rows(ledger, (HEADER + good_rows(20)).encode(), CommandMeta("importer"))
    # Ten known companies the file moves to France, ten it states as they are, twenty new.
    body = good_rows(10).replace(",DE,", ",FR,") + good_rows(30, start=10)
    runner = JobRunner(ledger, settings)
    job_id = stored_import_job(runner, body=body)
    when_stored(ledger, "Account.Registered", 5, runner.stop)  # past the updates
    runner.run(job_id)
    assert ledger.job(job_id).status == "running"

    job = finished_at_next_start(ledger, settings, job_id)

    assert (job.status, job.done, job.total) == ("finished", 40, 40)
    counts = {k: job.result[k] for k in ("registered", "updated", "unchanged", "rejected")}
    assert counts == {"registered": 20, "updated": 10, "unchanged": 10, "rejected": 0}


def test_an_import_stopped_while_it_screens_is_resumed_and_screens_nobody_twice(
    ledger, settings, monkeypatch
):
    monkeypatch.setattr("services.jobs.STOP_SECONDS", 0.0)  # the screening outlasts the wait
    ledger.create_policy(Criteria(headcount_min=1000), CommandMeta("analyst"))
    serving = open_ledger(settings)  # the process that stops
    runner = JobRunner(serving, settings)
    # Headcounts 10 to 159, all excluded: screened in two hands to the writer
    job_id = stored_import_job(runner, 150, screen_with=1)
    screening, stopping = threading.Event(), threading.Event()

    def first_screened() -> None:
        # The writer's thread, after the first screenings are stored, answers nothing until
        # the process is stopping: the job cannot end its screening before that
        screening.set()
        assert stopping.wait(60)

    when_stored(serving, "Account.Screened", 1, first_screened)
    runner.resume()
    assert screening.wait(60), "the job did not screen"

    # The process stops as `crm serve` does: its jobs first, then the ledger, whose writer
    # closes before its store; the job learns of the stop, or of the closed writer while the
    # store is open.
    runner.stop()
    stopping.set()
    serving.writer.close()
    runner.wait(60)
    serving.close()

    assert ledger.job(job_id).status == "running"
    job = finished_at_next_start(ledger, settings, job_id)
    assert job.status == "finished", job.error
    assert (job.result["registered"], job.result["screened"]) == (150, 150)
    screened = [
        n
        for n in ledger.recorder.select_notifications(1, 1_000_000)
        if n.topic.endswith("Account.Screened")
    ]
    assert len(screened) == 150


def test_a_resumed_policy_apply_counts_the_accounts_its_first_run_screened(
    ledger, settings, monkeypatch
):
    monkeypatch.setattr("services.jobs.APPLY_CHUNK", 10)
    monkeypatch.setattr("services.jobs.STOP_SECONDS", 0.0)  # stopped from the writer's thread
    imported = import_rows(ledger, (HEADER + good_rows(30)).encode(), CommandMeta("importer"))
    ledger.create_policy(Criteria(headcount_min=25), CommandMeta("analyst"))
    runner = JobRunner(ledger, settings)
    when_stored(ledger, "Account.Screened", 15, runner.stop)  # in the second chunk

    job = runner.submit_apply(1, imported.account_ids, CommandMeta("analyst"))
    runner.wait(60)
    assert ledger.job(job.id).status == "running"

    resumed = finished_at_next_start(ledger, settings, job.id)
    assert resumed.result == {"accounts": 30, "applied": 30, "overridden": 0, "skipped": 0}


def test_a_resumed_job_shows_what_it_had_done_and_counts_on_from_there(ledger, settings):
    job_id = stored_import_job(JobRunner(ledger, settings), 400)
    # The process stopped after storing the first half of the rows and saying so.
    import_rows(ledger, (HEADER + good_rows(200)).encode(), CommandMeta("importer"))
    ledger.record_job(job_id, lambda j, by: j.progress(200, 400, by), CommandMeta("importer"))

    job = finished_at_next_start(ledger, settings, job_id)

    shown = [
        (e.done, e.total)
        for e in (ledger.mapper.to_domain_event(s) for s in ledger.stored_events(job_id))
        if isinstance(e, Job.Progressed)
    ]
    assert shown[0] == (200, 400) and shown[-1] == (400, 400)
    assert all(b[0] >= a[0] for a, b in zip(shown, shown[1:], strict=False)), shown
    assert (job.status, job.done, job.total) == ("finished", 400, 400)


def test_a_job_stopped_with_its_process_stays_running_and_the_next_start_finishes_it(
    ledger, settings
):
    runner = JobRunner(ledger, settings)
    job_id = stored_import_job(runner, 50)
    # The process is stopping while the job runs: it stops at its first progress point, the
    # count of the rows once its file is read, before it stores one.
    runner.stop()

    runner.run(job_id)

    assert ledger.job(job_id).status == "running"
    job = finished_at_next_start(ledger, settings, job_id)
    assert job.status == "finished"
    assert (job.result["registered"], job.result["unchanged"]) == (50, 0)


def test_an_upload_can_screen_what_it_imports_by_a_policy(client):
    client.post("/screening-policies", json={"headcount_min": 100})
    body = (HEADER + good_rows(5, start=85)).encode()  # headcounts 95 to 99: all under 100

    upload = client.post(
        "/imports?screen_with=1", content=body, headers={"Content-Type": "text/csv"}
    )
    job = finished(client, upload.headers["location"])

    assert job["result"]["registered"] == 5
    assert job["result"]["screened"] == 5
    position = client.get(upload.headers["location"]).headers["crm-position"]
    listed = client.get("/accounts", params={"min_position": position}).json()["items"]
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


@pytest.mark.parametrize("then", ["another-process-takes-it", "it-stays-free"])
def test_a_job_that_loses_its_lock_stores_nothing_more_until_it_holds_it_again(
    ledger, settings, caplog, monkeypatch, then
):
    monkeypatch.setattr("services.importing.CHUNK_ROWS", 5)  # the lock is checked between chunks
    caplog.set_level(logging.INFO, logger="crm.jobs")
    runner = JobRunner(ledger, settings)
    job_id = stored_import_job(runner, 20)
    name = f"jobs/{job_id}"
    elsewhere = Leadership(settings, name)
    took: list[bool] = []

    def lose_the_lock() -> None:  # right after the fifth company, the first chunk, is stored
        _cut_lock(settings, name)
        if then == "another-process-takes-it":
            took.append(elsewhere.try_acquire())

    when_stored(ledger, "Registered", 5, lose_the_lock)
    try:
        runner.run(job_id)
        registered = _stored(ledger, "Registered")
        left = ledger.job(job_id)
    finally:
        elsewhere.release()
    if then == "another-process-takes-it":
        assert took == [True]
        # Left to the process that holds the lock now, with no company stored after the loss
        assert (left.status, registered) == ("running", 5)
        left = finished_at_next_start(ledger, settings, job_id)  # as that process would
    # Run again from the start, the rows it stored before counted as it stored them
    assert left.status == "finished", left.error
    assert (left.result["registered"], left.result["unchanged"]) == (20, 0)
    assert _stored(ledger, "Registered") == 20
    assert "lost its lock" in caplog.text


@pytest.mark.parametrize("through", ["this-process", "another-process"])
def test_a_cancelled_job_stores_nothing_more_ends_cancelled_and_leaves_no_upload(
    ledger, settings, monkeypatch, through
):
    monkeypatch.setattr("services.importing.CHUNK_ROWS", 5)  # a cancel is found between chunks
    runner = JobRunner(ledger, settings)
    job_id = stored_import_job(runner, 20)
    upload = runner.uploads / f"{job_id}.csv"
    canceller = runner if through == "this-process" else JobRunner(ledger, settings)
    when_stored(ledger, "Registered", 5, lambda: canceller.cancel(job_id, CommandMeta("manager")))

    runner.run(job_id)

    job = ledger.job(job_id)
    assert (job.status, job.result, job.error) == ("cancelled", None, None)
    if through == "this-process":  # before its next row; another's, at its next record
        assert _stored(ledger, "Registered") == 5
    assert job.done == _stored(ledger, "Registered")  # what it did, recorded as it stopped
    assert not upload.exists()
    assert JobRunner(ledger, settings).resume() == 0  # not run again at the next start
    assert ledger.job(job_id).status == "cancelled"


def test_a_job_left_running_is_cancelled_over_http_and_an_ended_one_is_409(client, jobs, ledger):
    # A job whose process never came back to run it: left running, its upload kept
    stuck = stored_import_job(jobs, 3)
    finished_job = finished(
        client,
        client.post("/imports", content=(HEADER + good_rows(2)).encode(), headers=CSV).headers[
            "location"
        ],
    )

    cancelled = client.post(f"/jobs/{stuck}/cancel")
    again = client.post(f"/jobs/{stuck}/cancel")
    ended = client.post(f"/jobs/{finished_job['id']}/cancel")
    unknown = client.post(f"/jobs/{uuid.uuid4()}/cancel")

    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["done"]) == ("cancelled", 0)
    assert again.json() == cancelled.json() == client.get(f"/jobs/{stuck}").json()
    assert (ended.status_code, ended.json()["rule"]) == (409, "job_ended")
    assert client.get(f"/jobs/{finished_job['id']}").json()["status"] == "finished"
    assert unknown.status_code == 404
    position = int(client.get(f"/jobs/{stuck}").headers["crm-position"])
    listed = client.get("/jobs", params={"status": "cancelled", "min_position": position})
    assert [j["id"] for j in listed.json()["items"]] == [str(stuck)]
    assert listed.json()["items"][0]["ended_at"] is not None
    # The next start runs it no more, and removes its upload
    assert jobs.resume() == 0
    assert list(jobs.uploads.glob("*.csv")) == []


def test_a_cancel_answers_once_the_import_running_here_has_stopped_with_what_it_stored(
    client, ledger
):
    stored_some, cancel_stored = threading.Event(), threading.Event()

    def hold_the_import() -> None:  # in the writer's thread, the first rows stored
        stored_some.set()
        assert cancel_stored.wait(60), "the cancel was not stored in time"

    when_stored(ledger, "Registered", 1, hold_the_import)
    when_stored(ledger, "Job.Cancelled", 1, cancel_stored.set)
    body = (HEADER + good_rows(6000)).encode()
    job_id = client.post("/imports", content=body, headers=CSV).json()["id"]
    assert stored_some.wait(60), "the import stored nothing in time"

    cancelled = client.post(f"/jobs/{job_id}/cancel")

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    # Not its progress as last recorded, a second or less before: every row it stored
    assert cancelled.json()["done"] == _stored(ledger, "Registered") < 6000
    assert client.get(f"/jobs/{job_id}").json() == cancelled.json()


def test_an_import_cancelled_while_it_waits_its_turn_stops_without_taking_it(client, jobs):
    for _ in range(IMPORTS_AT_ONCE):  # as imports running would
        assert jobs.importing.acquire(blocking=False)
    try:
        body = (HEADER + good_rows(3)).encode()
        job_id = client.post("/imports", content=body, headers=CSV).json()["id"]

        cancelled = client.post(f"/jobs/{job_id}/cancel")

        assert (cancelled.json()["status"], cancelled.json()["done"]) == ("cancelled", 0)
        assert f"job-{job_id}" not in {t.name for t in threading.enumerate()}
    finally:
        for _ in range(IMPORTS_AT_ONCE):
            jobs.importing.release()


def _cut_lock(settings, name: str) -> None:
    """Takes a lock from the process that holds it without its knowing: on PostgreSQL its
    connection is cut (as a restart of the server would), on SQLite its file is removed."""
    if settings.database_url is None:
        (settings.data_dir / f"{name}.lock").unlink()
        return
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        cut = admin.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (f"crm-{name}",),
        ).fetchall()
    assert cut == [(True,)]


def _stored(ledger, topic: str) -> int:
    """How many stored events have a topic ending with `topic`."""
    stored = ledger.recorder.select_notifications(1, 1_000_000)
    return sum(n.topic.endswith(topic) for n in stored)


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


CSV = {"Content-Type": "text/csv"}


def test_an_upload_beyond_those_a_process_receives_at_once_is_503_busy(client, jobs, ledger):
    # Given as many uploads being received as a process takes at once
    held = [jobs.receiving.acquire(blocking=False) for _ in range(UPLOADS_AT_ONCE)]
    assert all(held)
    try:
        busy = client.post("/imports", content=(HEADER + good_rows(2)).encode(), headers=CSV)
    finally:
        for _ in held:
            jobs.receiving.release()

    # Then one more is refused for now, storing nothing, and taken once one has ended
    assert busy.status_code == 503, busy.text
    assert busy.json()["type"] == "urn:crm:problem:busy"
    assert busy.headers["Retry-After"].isdigit()
    assert ledger.recorder.max_notification_id() is None
    taken = client.post("/imports", content=(HEADER + good_rows(2)).encode(), headers=CSV)
    assert finished(client, taken.headers["location"])["result"]["registered"] == 2


def test_an_import_beyond_those_a_process_runs_at_once_waits_its_turn(client, jobs, caplog):
    # Given as many imports running as a process runs at once
    caplog.set_level("INFO", logger="crm.jobs")
    held = [jobs.importing.acquire(blocking=False) for _ in range(IMPORTS_AT_ONCE)]
    assert all(held)
    try:
        # When another is uploaded
        upload = client.post("/imports", content=(HEADER + good_rows(2)).encode(), headers=CSV)
        job_id = upload.headers["location"].rsplit("/", 1)[1]

        # Then it waits its turn, running at 0 rows
        deadline = time.monotonic() + 30
        while f"import {job_id} waits for its turn" not in caplog.text:
            assert time.monotonic() < deadline, "the import did not wait"
            time.sleep(0.02)  # polling the job's log
        assert client.get(upload.headers["location"]).json()["done"] == 0
    finally:
        for _ in held:
            jobs.importing.release()
    # And runs once one has ended
    assert finished(client, upload.headers["location"])["result"]["registered"] == 2


def test_an_upload_beyond_the_imports_a_process_holds_unfinished_is_503_busy(client, jobs):
    # Given as many imports accepted as a process holds, waiting their turn (none may run)
    held = [jobs.importing.acquire(blocking=False) for _ in range(IMPORTS_AT_ONCE)]
    assert all(held)
    try:
        waiting = [
            client.post("/imports", content=(HEADER + good_rows(1)).encode(), headers=CSV)
            for _ in range(IMPORTS_HELD)
        ]
        # When one more is uploaded
        refused = client.post("/imports", content=(HEADER + good_rows(1)).encode(), headers=CSV)
    finally:
        for _ in held:
            jobs.importing.release()

    # Then it is refused for now, and taken once those held have ended
    assert [w.status_code for w in waiting] == [202] * IMPORTS_HELD
    assert refused.status_code == 503, refused.text
    assert refused.json()["type"] == "urn:crm:problem:busy"
    assert f"holds {IMPORTS_HELD} imports not finished" in refused.json()["detail"]
    for upload in waiting:
        finished(client, upload.headers["location"])
    taken = client.post("/imports", content=(HEADER + good_rows(2)).encode(), headers=CSV)
    assert taken.status_code == 202
    assert finished(client, taken.headers["location"])["status"] == "finished"


def test_imports_accepted_while_the_process_stops_give_their_places_back_and_run_at_next_start(
    client, jobs, ledger, settings
):
    # Given a process that has begun to stop: its job runner starts no job any more
    jobs.stop()

    # When more uploads arrive than the imports it holds unfinished
    uploads = [
        client.post("/imports", content=(HEADER + good_rows(1)).encode(), headers=CSV)
        for _ in range(IMPORTS_HELD + 1)
    ]

    # Then each is accepted (none holds a place no job will give back), and stays running
    assert [u.status_code for u in uploads] == [202] * (IMPORTS_HELD + 1), uploads[-1].text
    ids = [uuid.UUID(u.json()["id"]) for u in uploads]
    assert {ledger.job(i).status for i in ids} == {"running"}
    # And the next start runs every one of them
    restarted = JobRunner(ledger, settings)
    assert restarted.resume() == IMPORTS_HELD + 1
    restarted.wait(60)
    assert {ledger.job(i).status for i in ids} == {"finished"}


def test_an_app_started_again_after_a_stop_runs_the_imports_it_accepts(ledger, projector, settings):
    jobs = JobRunner(ledger, settings)
    app = create_app(ledger, projector, settings, jobs=jobs)
    with TestClient(app, base_url=LOCAL):
        pass  # started and stopped, as a test client entered once

    with TestClient(app, base_url=LOCAL) as client:
        upload = client.post("/imports", content=(HEADER + good_rows(3)).encode(), headers=CSV)
        assert upload.status_code == 202, upload.text
        assert finished(client, upload.headers["location"])["result"]["registered"] == 3


def test_an_upload_that_does_not_arrive_in_time_is_408_and_gives_its_place_back(
    client, jobs, ledger, monkeypatch
):
    # Given an upload whose body stops coming after its first bytes, and little time for it
    monkeypatch.setattr(api_jobs, "UPLOAD_SECONDS", 0.2)
    answer: dict[str, Any] = {}

    async def upload() -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": HEADER.encode(), "more_body": True}
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]

        scope = asgi_scope("POST", "/imports", b"text/csv", 100_000)
        await client.app(scope, receive, send)

    # When it is sent
    client.blocking_portal.call(upload)

    # Then it is answered 408, stores nothing, and its place is free again
    assert answer["status"] == 408
    assert ledger.recorder.max_notification_id() is None
    places = [jobs.receiving.acquire(blocking=False) for _ in range(UPLOADS_AT_ONCE)]
    for taken in places:
        if taken:
            jobs.receiving.release()
    assert all(places)


def test_an_import_whose_upload_another_replica_keeps_is_left_for_it_not_failed(
    ledger, settings, caplog
):
    # Given an import job received by a replica that stopped, its upload kept in that replica's
    # data directory, which this one does not share
    runner = JobRunner(ledger, settings)
    job_id = stored_import_job(runner, 20)
    upload = runner.uploads / f"{job_id}.csv"
    kept_elsewhere = upload.read_bytes()
    upload.unlink()

    # When this replica starts, and resumes the unfinished jobs
    runner.resume()
    runner.wait(60)

    # Then the job is left running, nothing imported, and the log says why
    assert ledger.job(job_id).status == "running"
    assert ledger.job(job_id).done == 0
    assert f"import job {job_id}: its upload is not in" in caplog.text
    # and the replica that received it finishes it when it starts again
    upload.write_bytes(kept_elsewhere)
    assert finished_at_next_start(ledger, settings, job_id).status == "finished"


def test_an_upload_on_a_volume_mounted_elsewhere_is_found_in_this_replicas_data_directory(
    ledger, settings
):
    # Given an import job whose upload the receiving replica kept at a path this replica does
    # not have, in the data directory both share (mounted elsewhere here)
    runner = JobRunner(ledger, settings)
    job_id = stored_import_job(runner, 20, file="/mnt/crm-of-another-replica/imports/{}.csv")

    # When this replica resumes it, it imports every row, and removes the upload once done
    job = finished_at_next_start(ledger, settings, job_id)
    assert (job.status, job.result["registered"]) == ("finished", 20)
    assert not (runner.uploads / f"{job_id}.csv").exists()
