"""A read that waits for its own write, as `crm serve` arranges it: the projector in another
process, the two sharing a page of memory (services/worker_processes.py), or in the same one."""

from __future__ import annotations

import threading

import pytest

import services.projector
from services.projector import Projector
from services.store import open_read_models
from services.worker_processes import SharedPositions, follow
from tests.read_models.test_projector_process import seed, wait_until


@pytest.mark.parametrize("where", ["child process", "same process"])
def test_a_read_waiting_for_its_write_does_not_wait_out_the_projectors_pace(
    ledger, settings, monkeypatch, where
):
    # Under steady writes a projector takes a batch at most every PACE_SECONDS; a read that
    # waits must not wait that long. With a pace longer than the read's wait, only the read
    # telling the projector to hurry lets it see its write.
    monkeypatch.setattr(services.projector, "PACE_SECONDS", 600.0)
    worker = Projector(ledger, open_read_models(settings))
    worker.setup()
    reader = worker
    positions = SharedPositions()
    done = threading.Event()
    threads = [threading.Thread(target=worker.run, args=(done,))]
    if where == "child process":
        reader = Projector(ledger, open_read_models(settings))
        reader.reported, reader.wanted = positions.projected, positions.want
        worker.on_progress.append(positions.project)
        threads.append(
            threading.Thread(
                target=follow, args=(positions, done, 0.002, worker.wake, worker.hurry)
            )
        )
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):  # the first batch after a quiet spell, then two within the pace
            seed(ledger, 1)
            head = ledger.recorder.max_notification_id()

            assert reader.wait_for("accounts", head, timeout=20) == head
            assert reader.wait_for("transitions", head, timeout=20) == head
    finally:
        done.set()
        worker.hurry()  # out of its pause, to see that it should stop
        for thread in threads:
            thread.join(30)
        reader.database.dispose()
        if reader is not worker:
            worker.database.dispose()


def test_a_read_waiting_for_a_position_the_log_has_not_reached_hurries_the_projector_once():
    # A min_position beyond the log (mistyped, or from another deployment) is waited for in
    # vain: hurried at every look, the projector would read the log every few milliseconds,
    # for ever. It is hurried when the read begins to wait, and again after each batch.
    positions = SharedPositions()
    done = threading.Event()
    commits: list[int] = []
    hurried_at: list[int] = []  # where the read models were at each hurry
    follower = threading.Thread(
        target=follow,
        args=(
            positions,
            done,
            0.001,
            commits.append,
            lambda: hurried_at.append(positions.projected()),
        ),
    )
    follower.start()

    def looked_twice_more() -> None:  # a commit seen is a look taken, whole, after the one before
        for _ in range(2):
            positions.commit(positions.committed() + 1)
            wait_until(lambda: commits[-1:] == [positions.committed()], timeout=10)

    try:
        positions.want(1_000_000)
        wait_until(lambda: hurried_at, timeout=10)
        looked_twice_more()
        assert hurried_at == [0]

        positions.project(5)  # a batch applied: the read is not answered, so hurried again
        wait_until(lambda: len(hurried_at) == 2, timeout=10)
        looked_twice_more()
        assert hurried_at == [0, 5]
    finally:
        done.set()
        follower.join(10)
