"""An API process makes one report at a time: the next waits its turn, up to
CRM_REPORT_WAIT_SECONDS, and other reads are answered meanwhile."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from litestar.testing import TestClient

from services.api.app import create_app
from services.api.read_models import Reads
from tests.api.requests import registration

MAKING = "a report being made"


def serving(ledger, projector, settings, wait: float) -> Iterator[tuple[TestClient, Reads]]:
    app = create_app(ledger, projector, dataclasses.replace(settings, report_wait_seconds=wait))
    with TestClient(app, raise_server_exceptions=False) as client:
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
