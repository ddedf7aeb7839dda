"""Fixtures shared by every tier: a real SQLite file and a real PostgreSQL for each test.

PostgreSQL comes from `CRM_TEST_DATABASE_URL` when set (CI points it at the machine's server);
otherwise the tests start their own private server with `pgserver`. Either way this run gets a
database of its own, and each test a schema of its own. A missing server fails the tests.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from litestar.testing import TestClient

from domain.ledger import AccountLedger
from services.api.app import create_app
from services.jobs import JobRunner
from services.leadership import Leadership
from services.nats_server import EmbeddedNats
from services.projector import Projector
from services.settings import Settings
from services.store import open_ledger, open_read_models
from tests.api.requests import LOCAL
from tests.processes import CrmProcess
from tests.projecting import BackgroundProjector

STORES = ["sqlite", "postgres"]


class Clock:
    """A clock the tests move by hand, so instants in history are known in advance."""

    def __init__(self, start: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)  # every event gets its own instant
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """A test that runs a command in-process (`main([...])`) sets up the process's logging;
    left so, later tests' background threads would log onto the run's own output."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def no_process_left_running() -> Iterator[None]:
    yield
    CrmProcess.kill_leftovers()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The URL of a PostgreSQL database that belongs to this test run alone."""
    configured = os.environ.get("CRM_TEST_DATABASE_URL")
    server = None
    if configured:
        admin_url = configured
    else:
        import pgserver

        server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="crm-pg-")), cleanup_mode="stop")
        admin_url = server.get_uri()
    dbname = f"crm_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    parts = urlsplit(admin_url)
    yield urlunsplit(parts._replace(path=f"/{dbname}"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    if server is not None:
        server.cleanup()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    if store == "sqlite":
        return Settings(data_dir=tmp_path / "data")
    url = request.getfixturevalue("postgres_server_url")
    return Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        database_schema=f"t_{secrets.token_hex(6)}",
        database_pool_size=8,
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A real nats-server per test, on a free loopback port, that tests can kill and restart."""
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(settings: Settings, clock: Clock) -> Iterator[AccountLedger]:
    ledger = open_ledger(settings, clock=clock)
    yield ledger
    ledger.close()


@pytest.fixture
def projector(ledger: AccountLedger, settings: Settings) -> Iterator[Projector]:
    projector = Projector(ledger, open_read_models(settings), listen_url=settings.database_url)
    projector.setup()
    yield projector
    projector.database.dispose()


@pytest.fixture
def jobs(ledger: AccountLedger, settings: Settings) -> JobRunner:
    """The `client`'s job runner: a test waits for the jobs its requests started on it."""
    return JobRunner(ledger, settings)


@pytest.fixture
def client(
    ledger: AccountLedger, projector: Projector, settings: Settings, jobs: JobRunner
) -> Iterator[TestClient]:
    background = BackgroundProjector(projector, Leadership(settings, "projector"))
    app = create_app(
        ledger,
        projector,
        settings,
        jobs=jobs,
        on_startup=[background.start],
        on_shutdown=[background.stop],
    )
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        yield client
