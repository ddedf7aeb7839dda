"""The CRM as separate processes on PostgreSQL and a real nats-server: two API replicas, two
projectors and two publishers (one active of each, one standing by), the active ones killed
mid-load; the read models and the stream must still match the event log exactly."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest

from domain.account import Account
from services.nats_server import free_port
from tests.api.requests import qualified
from tests.operations.test_observability import samples
from tests.processes import CrmProcess, CrmServe
from tests.publishing.conftest import stream_messages, wait_for_stream_count
from tests.publishing.test_publisher import assert_exactly, stored_history

ACTIVE = "{}: active"
STANDING_BY = "{}: standing by while another process is active"


# Six processes share one test server: small pools keep them under its connection limit.
ENV = {"CRM_LOG_FORMAT": "json", "CRM_DATABASE_POOL_SIZE": "4"}


def start_worker(settings, kind: str, broker_url: str) -> CrmProcess:
    port = free_port()
    worker = CrmProcess(settings, kind, "--metrics-port", str(port), CRM_NATS_URL=broker_url, **ENV)
    worker.metrics_url = f"http://127.0.0.1:{port}/metrics"
    return worker


def scrape(worker: CrmProcess) -> dict[str, float]:
    return samples(httpx.get(worker.metrics_url, timeout=5).text)


def active_and_standby(first: CrmProcess, second: CrmProcess, kind: str):
    """Waits until one of the two is active and the other stands by; returns (active, standby)."""
    deadline = time.monotonic() + 30
    while True:
        for a, b in ((first, second), (second, first)):
            if a.logged(ACTIVE.format(kind)) and b.logged(STANDING_BY.format(kind)):
                assert not b.logged(ACTIVE.format(kind)), f"two {kind}s were active at once"
                return a, b
        assert time.monotonic() < deadline, f"no active {kind} and standby {kind} in time"
        time.sleep(0.05)  # polling the processes' log files


class Load:
    """Clients re-rating accounts through both APIs until stopped; counts what was accepted."""

    def __init__(self, apis: list[str], account_ids: list[str], clients: int = 6) -> None:
        self.apis, self.account_ids = apis, account_ids
        self.accepted: Counter[str] = Counter()  # account id -> re-ratings answered 200
        self.failures: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def total(self) -> int:
        with self._lock:
            return sum(self.accepted.values())

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        # A connection idle for longer than the API's 5 s keep-alive may be closed by the API
        # just as the client reuses it; dropping idle ones sooner leaves any transport error a
        # real failure (an acknowledgement lost, so the count below could not be trusted).
        limits = httpx.Limits(keepalive_expiry=1)
        clients = [httpx.Client(base_url=api, timeout=30, limits=limits) for api in self.apis]
        try:
            while not self.stop.is_set():
                account_id = rng.choice(self.account_ids)
                rating = {k: rng.randint(1, 5) for k in ("budget", "authority", "need", "timing")}
                answer = rng.choice(clients).put(f"/accounts/{account_id}/bant", json=rating)
                if answer.status_code == 200:
                    with self._lock:
                        self.accepted[account_id] += 1
                elif answer.status_code != 503:  # busy: the client may retry; nothing stored
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")
        except Exception as error:  # a thread that dies would otherwise go unnoticed
            self.failures.append(f"client {seed}: {error!r}")
        finally:
            for client in clients:
                client.close()

    def wait_for(self, more: int, seconds: float = 60) -> None:
        target = self.total() + more
        deadline = time.monotonic() + seconds
        while self.total() < target:
            assert not self.failures, self.failures[:3]
            assert time.monotonic() < deadline, "the load stalled"
            time.sleep(0.05)  # polling the clients' count


def wait_until_caught_up(api: str, ledger, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    head = ledger.recorder.max_notification_id()
    while True:
        status = httpx.get(f"{api}/status").json()
        if all(p == head for p in status["read_models"].values()):
            return status
        assert time.monotonic() < deadline, f"read models behind the log: {status}"
        time.sleep(0.05)  # polling the read models' positions


@pytest.mark.parametrize("store", ["postgresql"])
def test_two_apis_with_a_projector_and_a_publisher_killed_mid_load_lose_nothing(
    settings, ledger, broker
):
    projectors = [start_worker(settings, "project", broker.url) for _ in range(2)]
    publishers = [start_worker(settings, "publish", broker.url) for _ in range(2)]
    apis = [CrmServe(settings, "--no-workers", **ENV) for _ in range(2)]
    processes = [*projectors, *publishers, *apis]
    try:
        for api in apis:
            api.wait_ready()
        active_projector, standby_projector = active_and_standby(*projectors, "projector")
        active_publisher, standby_publisher = active_and_standby(*publishers, "publisher")
        with httpx.Client(base_url=apis[0].url) as one, httpx.Client(base_url=apis[1].url) as two:
            accounts = [
                qualified(client, name=f"Co {i}", domain=f"co{i}-{uuid.uuid4().hex[:8]}.com")["id"]
                for i, client in enumerate([one, two] * 10)
            ]

        with Load([api.url for api in apis], accounts) as load:
            load.wait_for(100)
            active_projector.kill()
            active_publisher.kill()
            standby_projector.wait_logged(ACTIVE.format("projector"))
            standby_publisher.wait_logged(ACTIVE.format("publisher"))
            # The killed ones come back, and now stand by.
            restarted_projector = start_worker(settings, "project", broker.url)
            restarted_publisher = start_worker(settings, "publish", broker.url)
            processes += [restarted_projector, restarted_publisher]
            restarted_projector.wait_logged(STANDING_BY.format("projector"))
            restarted_publisher.wait_logged(STANDING_BY.format("publisher"))
            load.wait_for(100)
        assert not load.failures, load.failures[:3]

        # Every acknowledged re-rating is in the log, once.
        for account_id in accounts:
            account = ledger.account(uuid.UUID(account_id))
            rated = [e for e in ledger.history(account.id, limit=1000) if _is_rating(e)]
            assert len(rated) == load.accepted[account_id]

        # The stream holds the log exactly: every event once, each account's in order.
        history = stored_history(ledger)
        asyncio.run(wait_for_stream_count(broker.url, len(history), timeout=60))
        assert_exactly(asyncio.run(stream_messages(broker.url)), history)

        # The read models, as either API serves them, match the aggregates.
        wait_until_caught_up(apis[0].url, ledger)
        for api in apis:
            listed = httpx.get(f"{api.url}/accounts", params={"limit": 100}).json()["items"]
            assert len(listed) == len(accounts)
            for row in listed:
                account = ledger.account(uuid.UUID(row["account_id"]))
                assert row["score"] == account.bant.score
                assert row["abm_stage"] == account.stage.value

        # Each worker serves its metrics: one publisher is active, the read models have no lag.
        living = [p for p in processes if p.process.poll() is None]
        publishing = [p for p in living if p in publishers or p is restarted_publisher]
        active = [p for p in publishing if scrape(p)["crm_publisher_active"] == 1]
        assert len(active) == 1
        assert scrape(active[0])["crm_events_published_total"] > 0
        projecting = [p for p in living if p in projectors or p is restarted_projector]
        assert [scrape(p)["crm_projector_active"] for p in projecting].count(1) == 1
        for projector in projecting:
            found = scrape(projector)
            assert found['crm_read_model_lag_events{read_model="accounts"}'] == 0
            assert found['crm_db_pool_size{pool="projector"}'] >= 1
        # An API that does not publish reports no publisher figures (zeros would mislead).
        api_metrics = samples(httpx.get(f"{apis[0].url}/metrics", timeout=5).text)
        assert "crm_publisher_active" not in api_metrics
        assert "crm_publish_backlog_events" not in api_metrics
        # Nor the pool it used only to create the read models' tables.
        assert not [k for k in api_metrics if 'pool="projector"' in k]
        assert api_metrics['crm_db_pool_size{pool="read_models"}'] >= 1
        assert api_metrics["crm_event_log_position"] >= len(history)
    finally:
        for process in processes:
            if process.process.poll() is None:
                process.stop()


@pytest.mark.parametrize("store", ["postgresql"])
def test_an_api_replica_sees_what_another_replica_wrote_to_an_account_it_has_cached(settings):
    one, two = (CrmServe(settings, "--no-workers", **ENV) for _ in range(2))
    try:
        with (
            httpx.Client(base_url=one.wait_ready().url) as a,
            httpx.Client(base_url=two.wait_ready().url) as b,
        ):
            account = qualified(a)
            path = f"/accounts/{account['id']}"
            seen = a.get(path)  # now in replica one's cache
            rating = {"budget": 5, "authority": 5, "need": 5, "timing": 5}
            assert b.put(f"{path}/bant", json=rating).status_code == 200

            fresh = a.get(path)
            assert fresh.headers["etag"] != seen.headers["etag"]
            assert fresh.json()["bant"]["budget"] == 5
            stale = a.put(f"{path}/bant", json=rating, headers={"If-Match": seen.headers["etag"]})
            assert stale.status_code == 412
    finally:
        one.stop()
        two.stop()


def _is_rating(event: Account.Event) -> bool:
    return isinstance(event, Account.BantScored)
