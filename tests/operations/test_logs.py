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

from services.logs import configure


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What the process's log has written so far (the handler writes to `sys.stderr`)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure("json")
    written: list[str] = []

    def so_far() -> str:
        written.append(capsys.readouterr().err)
        return "".join(written)

    yield so_far
    root.handlers[:] = handlers
    root.setLevel(level)


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
