"""An API process makes one report at a time: the next waits its turn, up to
CRM_REPORT_WAIT_SECONDS, and other reads are answered meanwhile; the same report asked while
one waits or is being made shares its answer."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from litestar.testing import TestClient

from services.api import read_models
from services.api.app import create_app
from services.api.read_models import Reads
from tests.api.requests import LOCAL, registration

MAKING = "a report being made"


def serving(ledger, projector, settings, wait: float) -> Iterator[tuple[TestClient, Reads]]:
    app = create_app(ledger, projector, dataclasses.replace(settings, report_wait_seconds=wait))
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        reads = app.dependencies["reads"].dependency()
        assert client.post("/accounts", json=registration()).status_code == 201
        projector.catch_up()
        yield client, reads


@pytest.fixture
def impatient(ledger, projector, settings) -> Iterator[tuple[TestClient, Reads]]:
    yield from serving(ledger, projector, settings, 0)


@pytest.fixture
def patient(ledger, projector, settings) -> Iterator[tuple[TestClient, Reads]]:
    yield from serving(ledger, projector, settings, 60)


def test_a_report_asked_while_another_is_made_answers_busy_after_the_wait(impatient):
    client, reads = impatient
    # Given a report being made in the process
    client.blocking_portal.call(reads.reports.acquire_on_behalf_of, MAKING)

    # When another is asked for, with no time to wait, and the leaderboard as well
    busy = client.get("/reports/stages")
    board = client.get("/leaderboards/bant")

    # Then the report answers 503 busy, to retry, while the leaderboard answers
    assert busy.status_code == 503
    assert busy.json()["type"] == "urn:crm:problem:busy"
    assert int(busy.headers["retry-after"]) >= 1
    assert board.status_code == 200
    # and once the first is made, a report answers again
    client.blocking_portal.call(reads.reports.release_on_behalf_of, MAKING)
    assert client.get("/reports/stages").json()["groups"][0]["current"]["identified"] == 1


def test_a_screening_dry_run_takes_its_turn_with_the_reports(impatient):
    client, reads = impatient
    assert client.post("/screening-policies", json={"headcount_min": 1}).status_code == 201
    # Given a report being made in the process
    client.blocking_portal.call(reads.reports.acquire_on_behalf_of, MAKING)

    # When a dry-run is asked for, with no time to wait
    busy = client.post("/screening-policies/1/dry-run", json={})

    # Then it answers 503 busy, and once the report is made, it is made
    assert busy.status_code == 503, busy.text
    assert busy.json()["type"] == "urn:crm:problem:busy"
    client.blocking_portal.call(reads.reports.release_on_behalf_of, MAKING)
    made = client.post("/screening-policies/1/dry-run", json={})
    assert made.status_code == 200, made.text
    assert made.json()["dry_run"] is True


def test_a_report_asked_while_another_is_made_waits_its_turn(patient):
    client, reads = patient
    # Given a report being made in the process
    client.blocking_portal.call(reads.reports.acquire_on_behalf_of, MAKING)

    # When another is asked for, and waits
    with ThreadPoolExecutor(1) as pool:
        asked = pool.submit(client.get, "/reports/funnel")
        deadline = time.monotonic() + 30
        while reads.reports.statistics().tasks_waiting == 0:
            assert not asked.done(), asked.result().text
            assert time.monotonic() < deadline, "the report did not wait for its turn"
            time.sleep(0.01)  # a look every 10 ms, until it waits

        # Then it is made once the first one is
        client.blocking_portal.call(reads.reports.release_on_behalf_of, MAKING)
        answer = asked.result(timeout=30)
    assert answer.status_code == 200
    assert answer.json()["groups"][0]["current"]["see"] == 1


class CountedReports:
    """The reports the process makes, counted; with `hold`, the first one made waits for
    `released` before it is answered."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold: bool = False) -> None:
        self.made = 0
        self.hold = hold
        self.holding = threading.Event()
        self.released = threading.Event()
        make = read_models.report

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.made += 1
            figures = make(*args, **kwargs)
            if self.hold and self.made == 1:
                self.holding.set()
                assert self.released.wait(30), "the test did not release the report"
            return figures

        monkeypatch.setattr(read_models, "report", counted)


def wait_until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)  # a look every 10 ms


def sharing(reads: Reads) -> int:
    return sum(flight.sharing for flight in reads.flights.values())


def test_the_same_report_asked_while_it_waits_is_made_once_for_all(patient, monkeypatch):
    client, reads = patient
    reports = CountedReports(monkeypatch)
    # Given a report being made in the process, and one waiting for its turn
    client.blocking_portal.call(reads.reports.acquire_on_behalf_of, MAKING)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(client.get, "/reports/stages?group_by=industry")
        wait_until(lambda: reads.reports.statistics().tasks_waiting == 1, "it did not wait")

        # When the same report is asked twice more, and another report once
        same = [pool.submit(client.get, "/reports/stages?group_by=industry") for _ in range(2)]
        wait_until(lambda: sharing(reads) == 2, "the same report did not share the first")
        other = pool.submit(client.get, "/reports/stages?group_by=country")
        wait_until(lambda: reads.reports.statistics().tasks_waiting == 2, "other did not wait")
        client.blocking_portal.call(reads.reports.release_on_behalf_of, MAKING)
        answers = [asked.result(timeout=30) for asked in (first, *same, other)]

    # Then the three asking the same get one answer, made once; the other its own
    assert [answer.status_code for answer in answers] == [200] * 4
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert answers[0].json()["groups"][0]["group"] == "manufacturing"
    assert answers[3].json()["groups"][0]["group"] == "DE"
    assert reports.made == 2
    metrics = client.get("/metrics").text
    assert 'crm_reports_total{answer="shared"}' in metrics


def test_reports_that_wait_for_a_write_share_one_made_after_it_not_before(
    patient, projector, monkeypatch
):
    client, reads = patient
    reports = CountedReports(monkeypatch, hold=True)
    with ThreadPoolExecutor(3) as pool:
        # Given a report made and not yet answered
        first = pool.submit(client.get, "/reports/stages")
        assert reports.holding.wait(30), "the report was not made"
        # When another account is registered, and the same report asked twice with its position
        response = client.post("/accounts", json=registration(domain="globex.example"))
        projector.catch_up()
        position = int(response.headers["CRM-Position"])
        waiting = [
            pool.submit(client.get, f"/reports/stages?min_position={position}") for _ in range(2)
        ]
        wait_until(lambda: sharing(reads) == 2, "the reports did not wait for the first")
        reports.released.set()
        earlier, *later = [asked.result(timeout=30) for asked in (first, *waiting)]

    # Then the first shows one account; the two that waited both, from one report made after
    assert earlier.json()["groups"][0]["current"]["identified"] == 1
    for answer in later:
        assert answer.json()["groups"][0]["current"]["identified"] == 2
        assert answer.json()["position"] >= position
    assert reports.made == 2
