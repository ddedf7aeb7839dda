"""One active projector or publisher per store: the lock, its hand-over, and its loss."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from services.leadership import Leadership, lead_in_thread


def test_a_second_worker_stands_by_until_the_first_lets_go(settings):
    first, second = Leadership(settings, "projector"), Leadership(settings, "projector")

    assert first.acquire(lambda: False)
    assert not second.acquire(after(3), retry=0.01)
    assert first.held()
    first.release()
    assert second.acquire(lambda: False)
    assert second.held()
    second.release()


def after(tries: int):
    """A `stopping` that turns true after the given number of questions."""
    asked = iter(range(tries))
    return lambda: next(asked, None) is None


def test_workers_of_other_kinds_and_other_schemas_do_not_block_each_other(settings):
    projector, publisher = Leadership(settings, "projector"), Leadership(settings, "publisher")
    try:
        assert projector.acquire(lambda: False)
        assert publisher.acquire(lambda: False)
    finally:
        projector.release()
        publisher.release()


@pytest.mark.parametrize("store", ["sqlite"])
def test_a_worker_whose_lock_file_is_removed_stops_and_the_other_takes_over(settings):
    first, second = Leadership(settings, "projector"), Leadership(settings, "projector")
    assert first.acquire(lambda: False)

    # An operator "cleans up" the lock file after a crash: the next worker to ask makes a new
    # one and takes it, so the first no longer holds the lock that the others ask for.
    (settings.data_dir / "projector.lock").unlink()
    assert second.acquire(lambda: False)
    try:
        assert not first.held()
        assert not first.acquire(after(3), retry=0.01)  # it stands by
        assert second.held()
    finally:
        first.release()
        second.release()


@pytest.mark.parametrize("store", ["postgresql"])
def test_a_worker_whose_lock_connection_is_cut_stops_and_one_worker_takes_over(settings):
    stop = threading.Event()
    guard = threading.Lock()
    sessions: list[str] = []  # who started working, in order
    working_now: set[str] = set()
    overlaps: list[set[str]] = []
    leaderships: dict[str, Leadership] = {}

    def work_of(name: str):
        def work(until: threading.Event) -> None:
            with guard:
                sessions.append(name)
                working_now.add(name)
                if len(working_now) > 1:
                    overlaps.append(set(working_now))
            until.wait()
            with guard:
                working_now.discard(name)

        return work

    threads = []

    def start(name: str) -> None:
        leaderships[name] = Leadership(settings, "publisher")
        thread = threading.Thread(
            target=lead_in_thread, args=(leaderships[name], stop, work_of(name)), daemon=True
        )
        thread.start()
        threads.append(thread)

    try:
        start("first")
        _until(lambda: sessions == ["first"])
        start("second")
        _until(lambda: leaderships["second"]._held is None and len(threads) == 2)

        pid = leaderships["first"]._held.info.backend_pid
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        _until(lambda: len(sessions) == 2)  # the first stopped, and one of the two took over
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not overlaps, f"two were active at once: {overlaps}"


def _until(condition, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.02)  # polling threads that work and wait on their own
