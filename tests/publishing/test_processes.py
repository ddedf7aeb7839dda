"""The publisher as users run it: inside `crm serve`, and as `crm publish`, killed mid-backlog."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from contracts.events import decode_event
from services.nats_server import EmbeddedNats, free_port
from tests.api.requests import registration
from tests.processes import (
    CrmProcess,
    CrmServe,
    children_named,
    crm_child,
    crm_environment,
    run_crm,
)
from tests.publishing.conftest import stream_messages, wait_for_stream_count
from tests.publishing.test_publisher import assert_exactly, make_accounts, stored_history

ROOT = Path(__file__).parent.parent.parent


async def test_crm_publish_killed_mid_backlog_resumes_without_loss_or_duplicates(
    ledger, settings, broker
):
    await asyncio.to_thread(make_accounts, ledger, 150)  # a backlog of 600 events
    history = stored_history(ledger)
    command = [sys.executable, "-m", "services.cli", "publish"]
    env = crm_environment(settings, CRM_NATS_URL=broker.url)

    first = subprocess.Popen(command, env=env, cwd=ROOT)
    try:
        await wait_for_stream_count(broker.url, 100)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    stored_at_kill = len(await stream_messages(broker.url))
    assert stored_at_kill < len(history), "the kill should land in the middle of the backlog"

    second = subprocess.Popen(command, env=env, cwd=ROOT)
    try:
        await wait_for_stream_count(broker.url, len(history))
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
    assert_exactly(await stream_messages(broker.url), history)


@pytest.mark.parametrize("store", ["sqlite"])
def test_crm_serve_embeds_a_broker_and_publishes_what_it_stores(settings):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "--port", str(port)],
        env=crm_environment(settings),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        nats_url = None
        for line in process.stdout:  # the broker's URL is printed before the API starts
            if match := re.search(r"(nats://127\.0\.0\.1:\d+)", line):
                nats_url = match.group(1)
            if "CRM listening" in line:
                break
        assert nats_url is not None
        api = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{api}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            asyncio.run(asyncio.sleep(0.05))  # waiting for the server to accept connections
        created = httpx.post(f"{api}/accounts", json=registration())
        assert created.status_code == 201

        asyncio.run(wait_for_stream_count(nats_url, 1))
        ((subject, headers, event),) = asyncio.run(stream_messages(nats_url))
        assert subject == f"crm.accounts.{created.json()['id']}.registered"
        assert event.domain == "acme-tooling.com"
        status = httpx.get(f"{api}/status").json()
        assert status["publisher"]["connected"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) in (0, -signal.SIGTERM)
    data_dir = Path(settings.data_dir)
    assert (data_dir / "nats").is_dir()


async def test_a_subscriber_replaying_from_the_start_receives_exactly_the_stored_history(
    ledger, broker, running_publisher
):
    await asyncio.to_thread(make_accounts, ledger, 5)
    history = stored_history(ledger)
    await wait_for_stream_count(broker.url, len(history))

    def tail(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", "tail", "--url", broker.url, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    replayed = tail("--from-start", "--limit", str(len(history)))
    from_seq = tail("--from-seq", "5", "--idle", "1")
    one_account = tail(
        "--from-start", "--subject", f"crm.accounts.{history[0][0]}.>", "--idle", "1"
    )

    events = [decode_event(line.split(" ", 2)[2].encode()) for line in replayed]
    assert_exactly([(None, None, e) for e in events], history)
    assert [int(line.split(" ")[0]) for line in from_seq] == list(range(5, len(history) + 1))
    assert len(one_account) == 4


@pytest.mark.parametrize("store", ["sqlite"])
def test_crm_serve_answers_while_its_broker_does_not_and_stops_on_sigterm(settings):
    unreachable = f"nats://127.0.0.1:{free_port()}"
    server = CrmServe(settings, CRM_NATS_URL=unreachable)
    try:
        deadline = time.monotonic() + 60
        while True:  # polling a starting process until it answers
            try:
                ready = httpx.get(f"{server.url}/ready", timeout=1)
                break
            except httpx.TransportError:
                assert server.process.poll() is None, server.log_tail()
                assert time.monotonic() < deadline, f"never answered:\n{server.log_tail()}"
                time.sleep(0.1)
        created = httpx.post(f"{server.url}/accounts", json=registration())

        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"] == "unavailable"
        assert created.status_code == 201
    finally:
        code = server.stop()
    assert code in (0, -signal.SIGTERM)


@pytest.mark.parametrize("store", ["sqlite"])
def test_crm_serve_on_a_broker_that_cannot_serve_it_stops_with_one_line_saying_why(
    settings, tmp_path
):
    plain = EmbeddedNats(tmp_path / "plain", jetstream=False)
    plain.start()
    try:
        url = with_password(plain.url)
        done = run_crm(settings, "serve", "--port", str(free_port()), CRM_NATS_URL=url)
    finally:
        plain.stop()

    assert done.returncode == 2  # a setting to fix, as for any value that cannot be used
    *_, line = done.stderr.splitlines()  # crm serve may first say it is in development mode
    assert line.startswith(f"crm serve: CRM_NATS_URL {plain.url}: ")  # without the password
    assert "JetStream is not enabled" in line
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr
    assert "CRM listening" not in done.stdout


def test_crm_publish_on_a_broker_that_cannot_serve_it_stops_with_one_line_saying_why(
    settings, tmp_path
):
    plain = EmbeddedNats(tmp_path / "plain", jetstream=False)
    plain.start()
    try:
        done = run_crm(settings, "publish", CRM_NATS_URL=with_password(plain.url))
    finally:
        plain.stop()

    assert done.returncode == 2
    *_, line = done.stderr.splitlines()  # after the log's line that nothing is published
    assert line.startswith(f"crm publish: CRM_NATS_URL {plain.url}: ")  # without the password
    assert "JetStream is not enabled" in line
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr


def test_crm_publish_names_its_broker_in_its_log_without_the_password(settings, broker):
    publisher = CrmProcess(settings, "publish", CRM_NATS_URL=with_password(broker.url))
    publisher.wait_logged("publisher: active")
    assert publisher.stop() == 0

    (said,) = [line for line in publisher.log_lines() if line["message"].startswith("publishing")]
    assert said["message"].endswith(f" to {broker.url}")
    assert "hunter2" not in publisher.log_path.read_text()


def with_password(url: str) -> str:
    """A broker's URL with a user and password, which a broker without accounts ignores."""
    return url.replace("nats://", "nats://crm:hunter2@")


def test_crm_publish_stops_on_sigterm_while_its_broker_does_not_answer(settings):
    publisher = CrmProcess(settings, "publish", CRM_NATS_URL=f"nats://127.0.0.1:{free_port()}")
    publisher.wait_logged("publisher: active")

    assert publisher.stop() == 0


@pytest.mark.parametrize("store", ["sqlite"])
@pytest.mark.parametrize("child", ["nats-server", "publisher", "projector"])
def test_crm_serve_starts_its_broker_publisher_or_projector_process_again_when_it_dies(
    settings, child
):
    server = CrmServe(settings, CRM_READ_WAIT_SECONDS="60").wait_ready()
    try:
        ((broker_pid, cmdline),) = children_named(server.process.pid, "nats-server")
        nats_url = f"nats://127.0.0.1:{cmdline[cmdline.index('-p') + 1]}"
        killed = {
            "nats-server": broker_pid,
            "publisher": crm_child(server.process.pid, "publish"),
            "projector": crm_child(server.process.pid, "project"),
        }[child]

        os.kill(killed, signal.SIGKILL)
        created = httpx.post(f"{server.url}/accounts", json=registration())

        assert created.status_code == 201
        server.wait_ready(60)  # ready again once the child is back
        asyncio.run(wait_for_stream_count(nats_url, 1, timeout=60))
        ((subject, _, _),) = asyncio.run(stream_messages(nats_url))
        assert subject.startswith(f"crm.accounts.{created.json()['id']}.")
        assert httpx.get(f"{server.url}/status").json()["publisher"]["state"] == "ok"
        # The account list shows the new account once a projector has applied it.
        position = created.headers["CRM-Position"]
        listed = httpx.get(f"{server.url}/accounts", params={"min_position": position}, timeout=60)
        assert listed.json()["min_position_reached"] is True
        assert [a["account_id"] for a in listed.json()["items"]] == [created.json()["id"]]
    finally:
        server.stop()


@pytest.mark.parametrize("store", ["sqlite"])
def test_crm_serve_reports_the_backlog_while_its_publisher_process_does_not_answer(settings):
    server = CrmServe(settings).wait_ready()
    try:
        # Given an account its publisher has published
        first = httpx.post(f"{server.url}/accounts", json=registration())
        published = int(first.headers["CRM-Position"])
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/status").json()["publisher"]["backlog"]:
            assert time.monotonic() < deadline, "the publisher did not publish the account"
            time.sleep(0.05)  # polling the publisher's progress as an operator would

        # When its publisher's process stops answering, and another account comes meanwhile
        publisher = crm_child(server.process.pid, "publish")
        os.kill(publisher, signal.SIGSTOP)
        try:
            second = httpx.post(
                f"{server.url}/accounts", json=registration(name="Beta", domain="beta.example")
            )
            head = int(second.headers["CRM-Position"])
            status = httpx.get(f"{server.url}/status", timeout=10).json()["publisher"]
            metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        finally:
            os.kill(publisher, signal.SIGCONT)

        # Then /status and /metrics count the backlog from what it last said it published
        assert status["state"] == "unavailable"
        assert (status["published_position"], status["head_position"]) == (published, head)
        assert status["backlog"] == head - published > 0
        assert f"\ncrm_publish_backlog_events {float(head - published)}\n" in metrics
        assert "\ncrm_publisher_active 0.0\n" in metrics
        assert "\ncrm_events_published_total " in metrics  # its last count, kept
    finally:
        server.stop()
