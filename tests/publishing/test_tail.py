"""`crm tail` when it cannot read: a sequence the stream never has, a broker that does not
answer, a subject no stream holds. One line and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import nats
import pytest

from contracts.events import decode_event
from services.cli import build_parser
from services.nats_server import free_port
from tests.processes import ROOT


def crm_tail(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "tail", *args],
        env={key: value for key, value in os.environ.items() if key != "CRM_NATS_URL"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_stream_sequence_below_1_is_refused_as_an_argument(broker):
    done = crm_tail("--url", broker.url, "--from-seq", "0")

    assert done.returncode == 2
    assert "argument --from-seq: stream sequences start at 1, not 0" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--limit", "-1", "argument --limit: give at least 1, not -1"),
        ("--limit", "0", "argument --limit: give at least 1, not 0"),
        ("--idle", "-1", "argument --idle: give a number of seconds above 0, not -1"),
        ("--idle", "0", "argument --idle: give a number of seconds above 0, not 0"),
    ],
)
def test_a_limit_or_idle_time_below_1_or_0_is_refused_as_an_argument(option, value, says):
    done = crm_tail("--url", f"nats://127.0.0.1:{free_port()}", option, value)

    assert done.returncode == 2
    assert f"crm tail: error: {says}\n" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("bogus://", "--url must list servers such as nats://host:4222, not 'bogus://'"),
        ("nats://u:hunter2@a:four", "--url has a port that is not a number: 'nats://a:four'"),
    ],
)
def test_a_url_that_names_no_broker_is_refused_as_an_argument(url, says):
    done = crm_tail("--url", url, "--limit", "1")

    assert done.returncode == 2
    assert f"crm tail: error: argument --url: {says}\n" in done.stderr
    assert "hunter2" not in done.stderr


def test_a_broker_that_does_not_answer_ends_the_tail_with_one_line_and_exit_1():
    started = time.monotonic()
    done = crm_tail("--url", f"nats://crm:s3cret@127.0.0.1:{free_port()}", "--from-start")

    assert done.returncode == 1
    assert time.monotonic() - started < 30  # a bounded attempt, not a retry for ever
    (line,) = done.stderr.splitlines()
    assert line.startswith("crm tail: no NATS server answered at 127.0.0.1:")
    assert "s3cret" not in line  # a password in the URL is not echoed
    assert done.stdout == ""


def test_a_subject_that_no_stream_holds_ends_the_tail_with_one_line_and_exit_1(broker):
    done = crm_tail("--url", broker.url, "--from-start", "--idle", "1")

    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    server = broker.url.removeprefix("nats://")
    assert line == f"crm tail: no stream on {server} holds crm.accounts.>"


@pytest.mark.parametrize(
    ("since", "means"),
    [
        ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, tzinfo=UTC)),
        ("2026-03-01t12:00:00z", datetime(2026, 3, 1, 12, tzinfo=UTC)),  # RFC 3339 allows it
        ("2026-03-01T13:00+01:00", datetime(2026, 3, 1, 12, tzinfo=UTC)),
    ],
)
def test_since_takes_an_rfc_3339_instant(since, means):
    assert build_parser().parse_args(["tail", "--since", since]).since == means


def test_since_without_an_offset_is_refused_as_an_argument():
    done = crm_tail("--url", f"nats://127.0.0.1:{free_port()}", "--since", "2026-03-01T12:00")

    assert done.returncode == 2
    assert "argument --since: give an offset" in done.stderr


def test_since_that_is_no_instant_is_refused_saying_what_it_takes():
    done = crm_tail("--url", f"nats://127.0.0.1:{free_port()}", "--since", "yesterday")

    assert done.returncode == 2
    assert "argument --since: 'yesterday' is not an RFC 3339 instant" in done.stderr


def test_since_beyond_the_instants_held_is_refused_saying_so():
    done = crm_tail("--url", f"nats://127.0.0.1:{free_port()}", "--since", "9999-12-31T23:59-01:00")

    assert done.returncode == 2
    assert "is beyond the instants this service can hold (years 1 to 9999" in done.stderr


def test_a_message_that_is_not_an_event_is_named_and_the_tail_reads_on(broker):
    golden = Path(__file__).parent / "golden" / "crm.account.registered.v1.json"
    event = msgspec.json.encode(decode_event(golden.read_bytes()))

    async def publish() -> None:
        nc = await nats.connect(broker.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="CRM", subjects=["crm.accounts.>"])
            await js.publish("crm.accounts.by-hand.note", b"not an event")
            await js.publish("crm.accounts.by-hand.note", b'{"type": "crm.account.unknown.v9"}')
            await js.publish("crm.accounts.acme.registered", event)
        finally:
            await nc.close()

    asyncio.run(publish())
    done = crm_tail("--url", broker.url, "--from-start", "--limit", "1")

    assert done.returncode == 0
    assert "Traceback" not in done.stderr
    first, second = done.stderr.splitlines()
    assert first.startswith("crm tail: message 1 on crm.accounts.by-hand.note does not match")
    assert second.startswith("crm tail: message 2 on crm.accounts.by-hand.note does not match")
    (line,) = done.stdout.splitlines()
    assert line.startswith("3 crm.accounts.acme.registered {")
