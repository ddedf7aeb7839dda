"""PostgreSQL goes away under the running service: requests answer 503 with Retry-After, and
the service recovers by itself when the database is back, with no restart. A service starting
while the database turns connections away for a moment waits for them."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pgserver
import psutil
import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from litestar.testing import TestClient
from pgserver._commands import pg_ctl
from psycopg import sql

from domain.account import Firmographics
from domain.ledger import CommandMeta
from domain.vocabulary import ScreeningOutcome
from services.api.app import create_app
from services.jobs import JobRunner
from services.leadership import Leadership
from services.projector import Projector
from services.settings import Settings
from services.store import open_ledger, open_read_models
from tests.api.requests import LOCAL, registration
from tests.projecting import BackgroundProjector
from tests.screening.test_jobs import stored_import_job, when_stored


@pytest.fixture
def own_postgres():
    """A PostgreSQL of this test's own, so it can be stopped and started again."""
    server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="crm-outage-")), cleanup_mode="stop")
    yield server
    server.cleanup()


def _stop(server) -> None:
    pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)


def _until(condition, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def client(own_postgres, tmp_path) -> Iterator[TestClient]:
    """The API on that PostgreSQL, with its projector in the background."""
    settings = Settings(
        data_dir=tmp_path, database_url=own_postgres.get_uri(), database_pool_size=4
    )
    ledger = open_ledger(settings)
    projector = Projector(ledger, open_read_models(settings), listen_url=settings.database_url)
    projector.setup()
    background = BackgroundProjector(projector, Leadership(settings, "projector"))
    app = create_app(
        ledger, projector, settings, on_startup=[background.start], on_shutdown=[background.stop]
    )
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        client.ledger = ledger  # type: ignore[attr-defined]
        yield client
    projector.database.dispose()
    ledger.close()


def test_requests_get_503_while_the_database_is_away_and_succeed_once_it_is_back(
    own_postgres, client
):
    account = client.post("/accounts", json=registration(domain="before.com")).json()["id"]
    # A page read before: the page cache holds a connection for its checks, which dies
    assert client.get("/accounts").status_code == 200

    _stop(own_postgres)
    started = time.monotonic()
    write = client.put(
        f"/accounts/{account}/bant", json={"budget": 1, "authority": 1, "need": 1, "timing": 1}
    )
    read = client.get(f"/accounts/{account}")
    listing = client.get("/accounts")
    ready = client.get("/ready")
    print(f"four requests answered in {time.monotonic() - started:.1f}s while away")

    for answer in (write, read, listing):
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"].isdigit()
        assert answer.json()["type"] == "urn:crm:problem:store-unavailable"
    assert ready.status_code == 503

    own_postgres.ensure_postgres_running()
    assert _until(lambda: client.get("/ready").status_code == 200)
    after = client.post("/accounts", json=registration(domain="after.com"))
    assert after.status_code == 201, after.text
    position = int(after.headers["crm-position"])
    listed = client.get("/accounts", params={"min_position": position})
    assert {a["domain"] for a in listed.json()["items"]} == {"before.com", "after.com"}
    # A page read with no position to wait for is checked on a new connection
    listed = client.get("/accounts")
    assert listed.status_code == 200, listed.text
    assert {a["domain"] for a in listed.json()["items"]} == {"before.com", "after.com"}

    # The database restarts between two reads: the second is answered all the same
    _stop(own_postgres)
    own_postgres.ensure_postgres_running()
    assert client.get("/accounts").json() == listed.json()


def test_the_projector_warns_of_the_database_gone_without_a_traceback_and_carries_on(
    own_postgres, client, caplog
):
    caplog.set_level(logging.INFO, logger="crm.projector")

    def said() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "crm.projector"]

    # When the database goes away under the running projector, and comes back
    client.post("/accounts", json=registration(domain="before.com"))
    _stop(own_postgres)
    assert _until(lambda: any("lost the database" in r.getMessage() for r in said()))
    own_postgres.ensure_postgres_running()
    assert _until(lambda: client.get("/ready").status_code == 200)
    after = client.post("/accounts", json=registration(domain="after.com"))
    position = after.headers["crm-position"]

    # Then it catches up by itself, having said so in warnings: an outage the service rides
    # out pages nobody, as an error with a traceback would
    listed = client.get("/accounts", params={"min_position": position}).json()
    assert {a["domain"] for a in listed["items"]} == {"before.com", "after.com"}
    assert all(r.levelno < logging.ERROR and not r.exc_info for r in said()), said()


def test_after_a_long_outage_the_first_command_once_the_database_is_back_succeeds(
    own_postgres, client
):
    account = client.post("/accounts", json=registration(domain="before.com")).json()["id"]
    pool = client.ledger.recorder.datastore.pool

    # Given an outage long enough that the pool stopped trying to connect by itself
    _stop(own_postgres)
    assert client.get("/ready").status_code == 503  # its connections found lost
    assert _until(lambda: pool.get_stats()["pool_size"] == 0, 30), "the pool never gave up"

    # When the database is back
    own_postgres.ensure_postgres_running()

    # Then the first command connects at once, rather than wait for a late attempt
    screened = client.post(f"/accounts/{account}/screening", json={"outcome": "qualified"})
    assert screened.status_code == 200, screened.text


def test_pooled_connections_the_server_ended_are_replaced_before_a_statement_uses_them(
    own_postgres, tmp_path
):
    settings = Settings(
        data_dir=tmp_path, database_url=own_postgres.get_uri(), database_pool_size=4
    )
    ledger = open_ledger(settings)
    try:
        meta = CommandMeta("marta")
        company = Firmographics("Acme", "acme.com", "it", 50, 10**6, "EUR", "DE", 0.1, "fair")
        account_id = ledger.register(company, meta).account.id
        # Every connection of the pool ended by the server while idle, as a restart, an
        # administrator or a failover would end them: more than a statement's two attempts
        with psycopg.connect(own_postgres.get_uri(), autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            ).fetchall()
        assert len(ended) == 4 and all(done for (done,) in ended), ended

        account = ledger.account(account_id)
        screened = ledger.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], None, meta)
    finally:
        ledger.close()
    assert account.version == 1
    assert screened.account.version == 2


def test_a_process_holding_over_a_thousand_files_checks_its_connections_all_the_same(
    own_postgres, tmp_path
):
    # Taken first, so that the connections below get descriptors numbered over 1024
    # (which `select` refuses)
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    settings = Settings(
        data_dir=tmp_path, database_url=own_postgres.get_uri(), database_pool_size=2
    )
    try:
        ledger = open_ledger(settings)
        lock = Leadership(settings, "projector")
        try:
            assert lock.try_acquire()
            meta = CommandMeta("marta")
            company = Firmographics("Acme", "acme.com", "it", 50, 10**6, "EUR", "DE", 0.1, "x")
            account_id = ledger.register(company, meta).account.id

            assert ledger.account(account_id).version == 1
            assert lock.held()
        finally:
            lock.release()
            ledger.close()
    finally:
        for fd in held:
            os.close(fd)
    assert min(held) < 1024 < max(held)


def test_a_page_read_answers_503_when_the_database_stops_answering_and_200_once_it_answers(
    own_postgres, client
):
    registered = client.post("/accounts", json=registration(domain="frozen.com"))
    position = registered.headers["crm-position"]
    assert client.get("/accounts", params={"min_position": position}).status_code == 200
    listed = client.get("/accounts")  # kept, and checked on a connection the page cache holds
    assert [a["domain"] for a in listed.json()["items"]] == ["frozen.com"]

    # Every process of the database stops, as in a network partition: connections stay
    # open and nothing answers on them.
    server = psutil.Process(
        int((Path(own_postgres.pgdata) / "postmaster.pid").read_text().split()[0])
    )
    processes = [server, *server.children(recursive=True)]
    for process in processes:
        process.suspend()
    pool = ThreadPoolExecutor(1)
    try:
        read = pool.submit(client.get, "/accounts").result(timeout=120)  # not for ever
    finally:
        for process in processes:
            process.resume()
        pool.shutdown()
    assert read.status_code == 503, read.text
    assert read.json()["type"] == "urn:crm:problem:store-unavailable"

    read = client.get("/accounts")
    assert read.status_code == 200, read.text
    assert read.json() == listed.json()


def test_a_start_waits_for_its_pool_while_the_database_turns_connections_away(
    postgres_server_url, tmp_path
):
    role = f"crm_busy_{secrets.token_hex(3)}"
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        database = admin.info.dbname
        # One connection for the role: the start's set-up lock takes it, and the pool's are
        # turned away until the limit is lifted, later than a request would wait (2 s).
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 1").format(sql.Identifier(role))
        )
        admin.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(role)
            )
        )
    parts = urlsplit(postgres_server_url)
    host = parts.netloc.rpartition("@")[2]
    settings = Settings(
        data_dir=tmp_path,
        database_url=urlunsplit(parts._replace(netloc=f"{role}@{host}")),
        database_schema=f"t_{secrets.token_hex(6)}",
        database_pool_size=2,
    )
    lifted = threading.Event()

    def lift() -> None:
        with psycopg.connect(postgres_server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT -1").format(sql.Identifier(role)))
        lifted.set()

    timer = threading.Timer(3, lift)
    timer.start()
    try:
        ledger = open_ledger(settings)
        try:
            assert lifted.is_set()  # no pooled connection could be had before
            details = Firmographics("Acme", "acme.com", "it", 10, 1, "EUR", "DE", 0.1, "fair")
            account = ledger.register(details, CommandMeta("starter")).account.id
            assert ledger.account(account).version == 1
        finally:
            ledger.close()
    finally:
        timer.cancel()
        timer.join()
        with psycopg.connect(postgres_server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_commands_queued_while_the_database_is_away_are_refused_without_asking_it_each(
    own_postgres, tmp_path
):
    """Each command asked alone would hold the ones behind it for the store's whole timeout,
    one after the other: twenty waiting clients were answered over 80 s."""
    settings = Settings(
        data_dir=tmp_path, database_url=own_postgres.get_uri(), database_pool_size=2
    )
    ledger = open_ledger(settings)
    try:
        _stop(own_postgres)
        pool = ledger.recorder.datastore.pool
        pool.pop_stats()
        # The writer takes the first, and while the store keeps it waiting the rest queue up
        replies = [
            ledger.submit_registration(
                Firmographics(f"Co {i}", f"co{i}.com", "it", 10, 1, "EUR", "DE", 1.0, "x"),
                CommandMeta("ops"),
            )
            for i in range(8)
        ]
        futures.wait(replies, timeout=120)

        refusals = [reply.exception(timeout=0) for reply in replies]
        asked = pool.get_stats().get("requests_num", 0)
    finally:
        own_postgres.ensure_postgres_running()
        ledger.close()

    assert all(isinstance(error, OperationalError) for error in refusals), refusals
    # Two batches at most (the first alone), each asking the store once, with one retry
    assert asked <= 4, asked


@pytest.mark.parametrize("away", ["before-its-claim", "while-it-imports"])
def test_an_import_job_that_finds_the_database_away_runs_once_it_is_back(
    own_postgres, tmp_path, caplog, monkeypatch, away
):
    monkeypatch.setattr("services.importing.CHUNK_ROWS", 2)  # the database goes between chunks
    caplog.set_level(logging.WARNING, logger="crm.jobs")
    settings = Settings(
        data_dir=tmp_path, database_url=own_postgres.get_uri(), database_pool_size=2
    )
    ledger = open_ledger(settings)
    try:
        runner = JobRunner(ledger, settings)
        job_id = stored_import_job(runner, 5)
        if away == "before-its-claim":
            _stop(own_postgres)
        else:  # stopped in the writer's thread, right after the first chunk is stored
            when_stored(ledger, "Registered", 2, lambda: _stop(own_postgres))
        job = threading.Thread(target=runner.run, args=(job_id,))
        job.start()

        # The job says it waits for the database, and runs once it is back
        assert _until(lambda: "the store does not answer" in caplog.text)
        own_postgres.ensure_postgres_running()
        job.join(120)
        assert not job.is_alive()
        ended = ledger.job(job_id)
    finally:
        own_postgres.ensure_postgres_running()
        ledger.close()
    assert ended.status == "finished", ended.error
    # Counted as a run that no outage cut short would count it
    assert (ended.result["registered"], ended.result["unchanged"]) == (5, 0)
    assert (ended.done, ended.total) == (5, 5)
