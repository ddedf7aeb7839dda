"""`crm project` as its own process: killed in the middle of a catch-up, it resumes exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from domain.account import BantRating, Firmographics
from domain.ledger import CommandMeta
from domain.vocabulary import ScreeningOutcome
from projections.generations import live_generation
from tests.processes import run_crm
from tests.read_models.snapshots import all_rows

ROOT = Path(__file__).parent.parent.parent
META = CommandMeta("seed")


def seed(ledger, accounts: int) -> int:
    for i in range(accounts):
        details = Firmographics(
            f"Co {i}", f"{uuid.uuid4().hex}.com", "it", 10, 1, "EUR", "DE", 1.0, "test"
        )
        account_id = ledger.register(details, META).account.id
        ledger.screen(account_id, ScreeningOutcome.QUALIFIED, [], None, META)
        ledger.score_bant(account_id, BantRating(1 + i % 5, 2, 3, 4), META)
    return ledger.recorder.max_notification_id()


def start_projector(settings, batch_size: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "CRM_DATA_DIR": str(settings.data_dir),
        "CRM_PROJECTOR_BATCH_SIZE": str(batch_size),
    }
    if settings.database_url:
        env |= {
            "CRM_DATABASE_URL": settings.database_url,
            "CRM_DATABASE_SCHEMA": settings.database_schema,
        }
    return subprocess.Popen([sys.executable, "-m", "services.cli", "project"], env=env, cwd=ROOT)


def position(projector, name="accounts") -> int:
    with projector.database.read() as conn:
        gen = live_generation(conn, name)
    return gen.position if gen else 0


def wait_until(condition, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)  # polling another process's progress in the database


def test_a_projector_killed_mid_catch_up_resumes_without_doubling_or_skipping(
    ledger, projector, settings
):
    head = seed(ledger, 300)  # 1,200 events
    process = start_projector(settings, batch_size=10)
    try:
        wait_until(lambda: position(projector) >= 100)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    killed_at = position(projector)
    assert 0 < killed_at < head, "the kill should land in the middle of the catch-up"

    process = start_projector(settings, batch_size=10)
    try:
        wait_until(lambda: all(position(projector, n) == head for n in projector.read_models))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    resumed = all_rows(projector)

    for name in projector.read_models:
        projector.rebuild(name)
    assert all_rows(projector) == resumed
    assert len(resumed["accounts"]) == 300 * 2  # identified, then prioritized with its score
    assert len(resumed["transitions"]) == 300 * 3


def test_crm_rebuild_replays_into_fresh_tables_and_reports_progress(ledger, projector, settings):
    head = seed(ledger, 50)
    projector.catch_up()
    before = all_rows(projector)

    done = run_crm(settings, "rebuild", "accounts")

    assert done.returncode == 0, done.stderr
    assert f"accounts: rebuilt from {head} events and made live" in done.stdout
    assert "events/s" in done.stdout
    with projector.database.read() as conn:
        assert live_generation(conn, "accounts").generation == 2
    assert all_rows(projector) == before
