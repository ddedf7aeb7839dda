"""What an operator sees: Prometheus metrics, one JSON log line per request with the request
id that the events record, and readiness per dependency."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import httpx
import pytest

from tests.api.requests import qualified, register, registration
from tests.processes import CrmServe, crm_child


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, for every sample line of an exposition."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_metrics_count_requests_by_route_commands_by_type_and_refusals_by_rule(client, ledger):
    account = qualified(client)
    rating = {"budget": 4, "authority": 3, "need": 5, "timing": 2}
    assert client.put(f"/accounts/{account['id']}/bant", json=rating).status_code == 200
    unscreened = register(client, domain="not-screened.example")
    assert client.put(f"/accounts/{unscreened['id']}/bant", json=rating).status_code == 409

    answer = client.get("/metrics")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(answer.text)
    assert found['crm_commands_total{command="score_bant"}'] >= 1
    assert found['crm_commands_refused_total{rule="bant_requires_qualified"}'] >= 1
    route = 'path="/accounts/{account_id}/bant"'
    assert any(route in k and 'status_code="409"' in k for k in found if "requests_total" in k)
    assert any(route in k and k.startswith("crm_request_duration_seconds_bucket") for k in found), (
        "no latency histogram by route"
    )
    head = found["crm_event_log_position"]
    assert head == ledger.recorder.max_notification_id()
    for model in ("accounts", "transitions"):
        position = found[f'crm_read_model_position{{read_model="{model}"}}']
        assert found[f'crm_read_model_lag_events{{read_model="{model}"}}'] == head - position
    assert found['crm_db_pool_size{pool="read_models"}'] >= 1
    assert found["crm_store_up"] == 1


def test_every_request_logs_one_json_line_with_its_id_which_its_events_record(settings):
    server = CrmServe(settings, CRM_LOG_FORMAT="json").wait_ready()
    try:
        made = httpx.post(
            f"{server.url}/accounts",
            json=registration(domain="logged.example"),
            headers={"X-Request-ID": "trace-42"},
        )
        assert made.status_code == 201
        assert made.headers["x-request-id"] == "trace-42"
        missing = httpx.get(f"{server.url}/nowhere")
        assert missing.status_code == 404
        history = httpx.get(f"{server.url}/accounts/{made.json()['id']}/history").json()
        account_url = f"{server.url}/accounts/{made.json()['id']}"
        head = httpx.head(account_url, headers={"X-Request-ID": "head-7"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == httpx.get(account_url).headers["content-length"]
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            raw.sendall(b"NOT HTTP\r\n\r\n")
            assert raw.recv(1000).startswith(b"HTTP/1.1 400")
    finally:
        assert server.stop() in (0, -15)

    assert history["items"][0]["request_id"] == "trace-42"
    lines = [line for line in server.log_lines() if line.get("logger") == "crm.requests"]
    (mine,) = [line for line in lines if line.get("request_id") == "trace-42"]
    assert mine["method"] == "POST" and mine["route"] == "/accounts" and mine["status"] == 201
    assert mine["duration_ms"] > 0 and mine["level"] == "info"
    assert mine["client"] == "127.0.0.1"  # whose requests they are, a run of 401s too
    (head_line,) = [line for line in lines if line.get("request_id") == "head-7"]
    assert head_line["method"] == "HEAD" and head_line["route"] == "/accounts/{account_id}"
    unknown = [line for line in lines if line["path"] == "/nowhere"]
    assert len(unknown) == 1 and unknown[0]["status"] == 404
    assert unknown[0]["request_id"] == missing.headers["x-request-id"]
    # The HTTP server's own complaint is a JSON line like the others, not a line of text.
    text = [line for line in server.log_path.read_text().splitlines() if "Invalid HTTP" in line]
    assert [json.loads(line)["level"] for line in text] == ["warning"]


@pytest.mark.parametrize("store", ["postgres"])
def test_ready_reports_each_dependency_and_turns_unready_while_the_broker_is_down(settings, broker):
    active = CrmServe(settings, CRM_NATS_URL=broker.url).wait_ready()
    second = CrmServe(settings, CRM_NATS_URL=broker.url).wait_ready()
    api_only = CrmServe(settings, "--no-workers").wait_ready()
    try:
        assert httpx.get(f"{active.url}/ready").json()["checks"] == {
            "store": "ok",
            "read_models": "ok",
            "projector": "ok",
            "broker": "ok",
        }
        # The second process's publisher stands by while the first publishes: still ready.
        assert httpx.get(f"{second.url}/ready").json()["checks"]["broker"] == "standby"
        assert httpx.get(f"{api_only.url}/ready").json()["checks"] == {
            "store": "ok",
            "read_models": "ok",
        }

        broker.stop()
        down = _until(active.url, lambda r: r.status_code == 503)
        assert down.json()["checks"]["broker"] == "unavailable"
        assert down.json()["checks"]["store"] == "ok"
        assert httpx.get(f"{api_only.url}/ready").status_code == 200  # it needs no broker

        broker.start()
        assert _until(active.url, lambda r: r.status_code == 200).json()["status"] == "ready"
    finally:
        for server in (active, second, api_only):
            server.stop()


@pytest.mark.parametrize(("child", "check"), [("project", "projector"), ("publish", "broker")])
def test_ready_turns_unready_while_a_worker_process_is_down_and_ready_once_it_is_back(
    settings, child, check
):
    server = CrmServe(settings).wait_ready()
    try:
        os.kill(crm_child(server.process.pid, child), signal.SIGKILL)

        down = _until(server.url, lambda r: r.status_code == 503)
        assert down.json()["checks"][check] == "unavailable"
        assert down.json()["checks"]["store"] == "ok"
        up = _until(server.url, lambda r: r.status_code == 200)
        assert up.json()["checks"][check] == "ok"
        status = httpx.get(f"{server.url}/status").json()
        assert (status["projector"], status["publisher"]["state"]) == ("ok", "ok")
    finally:
        server.stop()


def _until(url: str, condition, seconds: float = 30) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        answer = httpx.get(f"{url}/ready")
        if condition(answer):
            return answer
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.1)  # polling another process's readiness


@pytest.mark.parametrize("store", ["postgres"])  # a fresh schema holds no table yet
def test_the_store_collector_reads_nothing_until_scraped(ledger, settings, caplog):
    from prometheus_client import CollectorRegistry, generate_latest

    from services.api.metrics import StoreCollector
    from services.projector import Projector
    from services.store import open_read_models

    projector = Projector(ledger, open_read_models(settings))  # its tables not made yet
    registry = CollectorRegistry(auto_describe=True)  # as prometheus_client.REGISTRY
    try:
        registry.register(StoreCollector(projector, projects=True))  # as `crm project` starts
        said_at_start = [r.getMessage() for r in caplog.records if r.name == "crm.metrics"]
        projector.setup()
        scraped = samples(generate_latest(registry).decode())
    finally:
        projector.database.dispose()

    assert said_at_start == []
    assert scraped["crm_store_up"] == 1
