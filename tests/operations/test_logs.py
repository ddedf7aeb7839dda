"""Log lines: written whole and in order, those of an event loop together once it has run
what was ready, and none lost at exit."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from services.logs import configure, log_fields


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What the process's log has written so far (the handler writes to `sys.stderr`)."""
    configure("json")
    written: list[str] = []

    def so_far() -> str:
        written.append(capsys.readouterr().err)
        return "".join(written)

    yield so_far


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_lines_logged_on_an_event_loop_are_written_together_once_it_has_run(stderr):
    log = logging.getLogger("crm.requests")

    async def answer_a_batch() -> str:
        for n in range(3):
            log.info("answer %d", n, extra={"fields": {"request_id": f"r{n}"}})
        written_meanwhile = stderr()
        await asyncio.sleep(0)  # the loop runs what was ready, the write among it
        return written_meanwhile

    assert asyncio.run(answer_a_batch()) == ""
    written = lines(stderr())
    assert [line["message"] for line in written] == ["answer 0", "answer 1", "answer 2"]
    assert [line["request_id"] for line in written] == ["r0", "r1", "r2"]


def test_lines_logged_outside_an_event_loop_are_written_at_once(stderr):
    logging.getLogger("crm.projector").info("applied %d events", 5)
    (line,) = lines(stderr())
    assert line["message"] == "applied 5 events" and line["logger"] == "crm.projector"


def test_a_request_line_built_directly_reads_as_the_same_line_logged_as_a_record(stderr):
    log = logging.getLogger("crm.requests")
    fields = {"request_id": "r1", "status": 200, "duration_ms": 0.25, "key": None}

    log_fields(log, logging.INFO, "GET /health 200", fields)
    log.info("GET /health 200", extra={"fields": fields})

    direct, record = lines(stderr())
    assert direct.keys() == record.keys()
    assert {k: v for k, v in direct.items() if k != "time"} == {
        "level": "info",
        "logger": "crm.requests",
        "message": "GET /health 200",
        **fields,
    }
    assert record["time"] >= direct["time"]


def test_request_lines_honour_the_level_and_reach_a_filter_added_on_the_way(stderr):
    log = logging.getLogger("crm.requests")
    seen: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        seen.append(record.getMessage())
        return record.fields["status"] >= 500  # type: ignore[attr-defined]

    log.addFilter(keep)
    try:
        log_fields(log, logging.INFO, "GET /a 200", {"status": 200})
        log_fields(log, logging.INFO, "GET /b 503", {"status": 503})
    finally:
        log.removeFilter(keep)
    logging.getLogger().setLevel(logging.WARNING)
    log_fields(log, logging.INFO, "GET /c 200", {"status": 200})

    assert seen == ["GET /a 200", "GET /b 503"]
    assert [line["message"] for line in lines(stderr())] == ["GET /b 503"]


def test_lines_still_waiting_for_their_loop_are_written_at_exit():
    program = (
        "import asyncio, logging, sys\n"
        "from services.logs import configure\n"
        "configure('json')\n"
        "async def answer():\n"
        "    for n in range(100):\n"
        "        logging.getLogger('crm.requests').info('line %d', n)\n"
        "    sys.exit(0)\n"  # out of the loop before it runs the write
        "asyncio.new_event_loop().run_until_complete(answer())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [line["message"] for line in lines(done.stderr)] == [f"line {n}" for n in range(100)]


def test_a_text_line_shows_control_characters_a_request_sent_as_escapes(capsys):
    """A path may carry %0A or %1B: written as they are, they would start a forged line or
    recolour an operator's terminal; the JSON lines escape them already."""
    configure("text")
    path = "/accounts/x\n2026-01-01 00:00:00,000 INFO crm.requests forged\x1b[2J"

    log_fields(logging.getLogger("crm.requests"), logging.INFO, f"GET {path} 404", {"path": path})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("crm.api").exception("failed on %s", path)

    written = capsys.readouterr().err.splitlines()
    assert written[0].endswith(
        "GET /accounts/x\\n2026-01-01 00:00:00,000 INFO crm.requests forged\\x1b[2J 404"
        " path=/accounts/x\\n2026-01-01 00:00:00,000 INFO crm.requests forged\\x1b[2J"
    )
    assert written[1].endswith(
        "failed on /accounts/x\\n2026-01-01 00:00:00,000 INFO crm.requests forged\\x1b[2J"
    )
    assert written[2] == "Traceback (most recent call last):"  # a traceback keeps its lines
    assert not any("\x1b" in line for line in written)
