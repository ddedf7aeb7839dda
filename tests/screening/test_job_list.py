"""The list of background jobs (`GET /jobs`): every import and policy apply, newest first, for
a client that no longer has a job's id."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from domain.ledger import CommandMeta
from projections.account_queries import Filters, account_list, cursor_key
from projections.jobs import JobFilters, job_page
from services.jobs import APPLY_POLICY
from services.projector import READ_MODELS, Projector
from services.store import open_read_models
from tests.audit.tampering import RawStore
from tests.domain.scenario import ACME
from tests.screening.test_import import HEADER, good_rows
from tests.screening.test_jobs import finished

CSV = {"Content-Type": "text/csv"}


def upload(client, body: str, **params) -> str:
    response = client.post("/imports", content=body, headers=CSV, params=params)
    assert response.status_code == 202, response.text
    return response.headers["location"]


def ended(client, location: str) -> tuple[dict, int]:
    """The job once it ended, and the position its events reached."""
    job = finished(client, location)
    return job, int(client.get(location).headers["crm-position"])


def listed(client, **params) -> dict:
    response = client.get("/jobs", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_jobs_are_listed_newest_first_with_their_options_progress_and_counts(client):
    imported, _ = ended(client, upload(client, HEADER + good_rows(3)))
    dry_run, _ = ended(client, upload(client, HEADER + good_rows(4), dry_run="true"))
    refused, position = ended(client, upload(client, "Company,Industry\nAcme,retail\n"))
    assert refused["status"] == "failed"

    page = listed(client, min_position=position)

    assert page["min_position_reached"] is True
    assert page["next_cursor"] is None
    assert [j["id"] for j in page["items"]] == [refused["id"], dry_run["id"], imported["id"]]
    newest, middle, oldest = page["items"]
    assert (oldest["kind"], oldest["status"], oldest["done"], oldest["total"]) == (
        "import",
        "finished",
        3,
        3,
    )
    assert oldest["counts"] == {
        "registered": 3,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "errors_total": 0,
    }
    assert oldest["options"] == {}  # the upload's path on the server is not shown
    assert oldest["actor"] == "anonymous"  # no API keys configured: development mode
    assert "result" not in oldest  # its rows' errors and changes are the job's own to show
    assert middle["options"] == {"dry_run": True}
    assert (middle["counts"]["registered"], middle["counts"]["unchanged"]) == (1, 3)
    assert (newest["status"], newest["error"], newest["total"]) == (
        "failed",
        refused["error"],
        None,
    )
    for job in page["items"]:
        started, ended_at = (datetime.fromisoformat(job[k]) for k in ("started_at", "ended_at"))
        assert started <= ended_at


def test_a_running_job_is_listed_with_its_progress_and_a_policy_apply_with_its_version(
    client, ledger
):
    # A policy apply recorded as started and as far as 2 of 3 accounts (no runner runs it)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    params = {"version": 2, "account_ids": ids, "reason": "Q3 list", "request_id": "r-1"}
    job = ledger.start_job(APPLY_POLICY, params, CommandMeta("ops")).value
    ledger.record_job(job.id, lambda j, by: j.progress(2, 3, by))
    position = ledger.recorder.max_notification_id()

    (item,) = listed(client, min_position=position)["items"]

    assert item["id"] == str(job.id)
    assert (item["kind"], item["status"], item["done"], item["total"]) == (
        "apply_policy",
        "running",
        2,
        3,
    )
    assert item["options"] == {"version": 2, "accounts": 3}
    assert (item["actor"], item["ended_at"], item["counts"], item["error"]) == (
        "ops",
        None,
        None,
        None,
    )


def test_filters_narrow_the_list_and_a_cursor_pages_through_it_with_the_same(client, ledger):
    locations = [upload(client, HEADER + good_rows(1)) for _ in range(3)]
    jobs = [ended(client, location) for location in locations]
    ids = [job["id"] for job, _ in jobs]
    running = ledger.start_job(APPLY_POLICY, {"version": 1, "account_ids": []}, CommandMeta("ops"))
    position = ledger.recorder.max_notification_id()

    first = listed(client, kind="import", status="finished", limit=2, min_position=position)
    assert [j["id"] for j in first["items"]] == ids[:0:-1]
    second = listed(client, kind="import", status="finished", limit=2, cursor=first["next_cursor"])
    assert [j["id"] for j in second["items"]] == ids[:1]
    assert second["next_cursor"] is None
    assert [j["id"] for j in listed(client, status="running")["items"]] == [str(running.value.id)]
    assert listed(client, kind="apply_policy", status="finished")["items"] == []

    # A cursor goes only with the filters of its first page, and only as this service issued it
    other = client.get("/jobs", params={"kind": "import", "cursor": first["next_cursor"]})
    assert other.status_code == 400
    assert "other filters" in other.json()["detail"]
    made_up = client.get("/jobs", params={"cursor": "eyJiIjo5OTl9.abc"})
    assert made_up.status_code == 400
    assert made_up.json()["errors"][0]["field"] == "cursor"
    assert client.get("/jobs", params={"cursor": ""}).status_code == 400


@pytest.mark.parametrize(
    "query, field",
    [
        ({"kind": "export"}, "kind"),
        ({"status": "done"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"kind": "null"}, "kind"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(client, query, field):
    response = client.get("/jobs", params=query)

    assert response.status_code == 400, response.text
    assert field in {e["field"] for e in response.json()["errors"]}


def test_jobs_started_before_the_list_existed_are_listed_once_it_is_set_up(ledger, settings):
    # A store whose read models were built by a release without the jobs read model
    earlier = {name: model for name, model in READ_MODELS.items() if name != "jobs"}
    before = Projector(ledger, open_read_models(settings), read_models=earlier)
    before.setup()
    job = ledger.start_job("import", {"strict": True}, CommandMeta("importer")).value
    ledger.record_job(job.id, lambda j, by: j.fail("OSError", by))
    assert before.catch_up() > 0
    before.database.dispose()

    upgraded = Projector(ledger, open_read_models(settings))
    upgraded.setup()
    upgraded.catch_up()

    with upgraded.database.read() as conn:
        page = job_page(conn, JobFilters(), 10, key=cursor_key(conn))
    upgraded.database.dispose()
    assert [(r["job_id"], r["status"], r["options"]) for r in page.rows] == [
        (str(job.id), "failed", '{"strict": true}')
    ]


def test_a_job_event_that_cannot_be_read_is_passed_over_and_holds_no_read_model_up(
    ledger, projector, settings, caplog
):
    # Given a job whose end was edited behind the ledger's back, and an account registered
    # after it
    job = ledger.start_job("import", {"strict": True}, CommandMeta("marta")).value
    ledger.record_job(job.id, lambda j, by: j.fail("OSError", by))
    RawStore(settings, ledger).garble_state(job.id, 2)
    registered = ledger.register(ACME, CommandMeta("marta")).account

    # When the read models catch up
    projector.catch_up()

    # Then every read model reached the head: the account is listed, the job as it started
    head = ledger.recorder.max_notification_id()
    assert {name: projector.position(name) for name in projector.read_models} == {
        name: head for name in projector.read_models
    }
    with projector.database.read() as conn:
        listed_accounts = account_list(conn, Filters(), 10, key=cursor_key(conn)).rows
        (row,) = job_page(conn, JobFilters(), 10, key=cursor_key(conn)).rows
    assert [r["account_id"] for r in listed_accounts] == [str(registered.id)]
    assert (row["job_id"], row["status"]) == (str(job.id), "running")
    assert "passed over an unreadable" in caplog.text


@pytest.mark.parametrize(
    "edit",
    [
        (b'"done":1', b'"done":"many"'),
        (b'"done":1', b'"done":1.5'),
        (b'"done":1', b'"done":99999999999999999999999'),
        (b'"total":2', b'"total":-2'),
    ],
)
def test_a_job_event_whose_values_no_job_can_have_is_passed_over(ledger, projector, settings, edit):
    # Given a job's progress edited to a count no job can have, then its end
    job = ledger.start_job("import", {}, CommandMeta("marta")).value
    ledger.record_job(job.id, lambda j, by: j.progress(1, 2, by))
    ledger.record_job(job.id, lambda j, by: j.finish({"registered": 2}, by))
    RawStore(settings, ledger).change_state(job.id, 2, lambda state: state.replace(*edit))

    projector.catch_up()

    # Then the job is listed without the edited event, and the read models reached the head
    assert projector.position("jobs") == ledger.recorder.max_notification_id()
    with projector.database.read() as conn:
        (row,) = job_page(conn, JobFilters(), 10, key=cursor_key(conn)).rows
    assert (row["status"], row["done"], row["total"]) == ("finished", 0, 0)


def test_a_job_ended_with_a_result_that_is_not_one_stays_listed_as_it_was(
    ledger, projector, settings
):
    job = ledger.start_job("import", {}, CommandMeta("marta")).value
    ledger.record_job(job.id, lambda j, by: j.finish({"registered": 1}, by))
    RawStore(settings, ledger).change_state(
        job.id, 2, lambda s: s.replace(b'"result":{"registered":1}', b'"result":null')
    )

    projector.catch_up()

    with projector.database.read() as conn:
        (row,) = job_page(conn, JobFilters(), 10, key=cursor_key(conn)).rows
    assert (row["status"], row["counts"]) == ("running", None)
