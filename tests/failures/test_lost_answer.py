"""A connection to PostgreSQL lost during a save: before the save reached the server, or after
the server committed it but before the service heard so. Either way the command is stored at
most once, and the chains of what is stored after it still hold."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit, urlunsplit
from uuid import UUID

import pytest
from eventsourcing.persistence import OperationalError

from domain.account import BantRating, Firmographics
from domain.ledger import AccountLedger, CommandMeta
from domain.vocabulary import ScreeningOutcome
from services.audit import Audit
from services.jobs import JobRunner
from services.settings import Settings
from services.store import open_ledger
from tests.failures.relay import Relay, recv
from tests.screening.test_import import HEADER, good_rows

META = CommandMeta("marta")
READY_FOR_QUERY = b"Z\x00\x00\x00\x05"  # the server's last message for a query


class AnswerLosingRelay(Relay):
    """Relays connections to PostgreSQL. Armed, it passes the next INSERT to the server, waits
    until the server has finished it (committed), and then drops that connection instead of
    passing the answer back; `unsent` drops the connection before passing the INSERT on."""

    unsent = False

    def _sends(self, data: bytes, doomed: threading.Event) -> bool:
        if self.armed.is_set() and b"INSERT INTO" in data:
            self.armed.clear()
            if self.unsent:
                return False
            doomed.set()
        return True

    def _down(self, server: socket.socket, client: socket.socket, doomed: threading.Event) -> None:
        withheld = b""
        while data := recv(server):
            if not doomed.is_set():
                try:
                    client.sendall(data)
                except OSError:
                    return
                continue
            withheld += data
            if READY_FOR_QUERY in withheld:  # the server is done with the save: it committed
                self.drop(client, server)  # before the client can learn of it
                return


@pytest.fixture
def relayed(settings: Settings) -> Iterator[tuple[Settings, AnswerLosingRelay]]:
    url = urlsplit(settings.database_url)
    socket_dir = parse_qs(url.query).get("host", [None])[0]
    if socket_dir is not None and socket_dir.startswith("/"):
        upstream: str | tuple[str, int] = f"{socket_dir}/.s.PGSQL.{url.port or 5432}"
    else:
        upstream = (url.hostname or "127.0.0.1", url.port or 5432)
    relay = AnswerLosingRelay(upstream)
    credentials = url.netloc.rsplit("@", 1)[0] + "@" if "@" in url.netloc else ""
    netloc = f"{credentials}127.0.0.1:{relay.port}"
    proxied = urlunsplit(url._replace(netloc=netloc, query=""))
    yield replace(settings, database_url=proxied), relay
    relay.close()


@pytest.fixture
def relayed_ledger(relayed, clock) -> Iterator[tuple[AccountLedger, AnswerLosingRelay]]:
    settings, relay = relayed
    ledger = open_ledger(settings, clock=clock)
    yield ledger, relay
    ledger.close()


def _qualified(ledger: AccountLedger, name: str) -> UUID:
    details = Firmographics(name, f"{name}.com", "it", 50, 10**6, "EUR", "DE", 0.1, "fair")
    account_id = ledger.register(details, META).account.id
    ledger.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], None, META)
    return account_id


@pytest.mark.parametrize("store", ["postgres"])  # only a networked store loses an answer
def test_a_committed_save_whose_answer_is_lost_is_not_applied_twice(relayed_ledger):
    ledger, relay = relayed_ledger
    account_id = _qualified(ledger, "lost")
    ledger.score_bant(account_id, BantRating(3, 3, 3, 3, {}), META)

    relay.armed.set()
    try:
        ledger.send_material(account_id, "deck", "email", None, META)
    except OperationalError:
        pass  # not knowing whether it committed, the service may say it failed
    assert relay.dropped.is_set()

    assert ledger.account(account_id).materials_sent == 1
    assert Audit(ledger).verify_all().verified


@pytest.mark.parametrize("store", ["postgres"])  # only a networked store loses an answer
def test_a_save_lost_before_it_reached_the_server_stores_nothing_and_leaves_no_head(
    relayed_ledger,
):
    ledger, relay = relayed_ledger
    account_id = _qualified(ledger, "unsent")
    before = ledger.account(account_id).version

    relay.unsent = True
    relay.armed.set()
    with pytest.raises(OperationalError):
        ledger.score_bant(account_id, BantRating(1, 1, 1, 1, {}), META)
    assert relay.dropped.is_set()
    assert ledger.account(account_id).version == before

    # The same versions are written again, with other content (other instants): the chain
    # links to what is stored, not to what the failed save would have stored.
    ledger.score_bant(account_id, BantRating(2, 2, 2, 2, {}), META)
    ledger.send_material(account_id, "deck", "email", None, META)
    assert ledger.account(account_id).bant.budget == 2
    assert Audit(ledger).verify_all().verified


@pytest.mark.parametrize("store", ["postgres"])  # only a networked store loses an answer
@pytest.mark.parametrize("unsent", [True, False], ids=["save-unsent", "answer-lost"])
def test_an_upload_keeps_its_file_exactly_when_its_job_may_be_stored(relayed, clock, unsent):
    settings, relay = relayed
    ledger = open_ledger(settings, clock=clock)
    try:
        runner = JobRunner(ledger, settings)
        relay.unsent = unsent
        relay.armed.set()  # the next INSERT is the job's Started event
        with pytest.raises(OperationalError):
            runner.submit_import((HEADER + good_rows(3)).encode(), META, False, None)
        assert relay.dropped.is_set()

        kept = list((settings.data_dir / "imports").iterdir())
        if unsent:  # no job refers to it
            assert kept == []
            assert runner.resume() == 0
        else:  # the job is stored: the next start runs it, on its file
            assert len(kept) == 1
            assert runner.resume() == 1
            runner.wait(60)
            (job,) = [ledger.job(UUID(p.stem)) for p in kept]
            assert (job.status, job.result["registered"]) == ("finished", 3)
    finally:
        ledger.close()
