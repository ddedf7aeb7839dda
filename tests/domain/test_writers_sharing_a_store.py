"""Two ledgers writing the same accounts of one store at once, as two API replicas (or an
import beside the server) do: no command is lost or applied twice, and every chain holds."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import pytest

from domain.account import Account, BantRating, Firmographics
from domain.errors import Contention
from domain.ledger import AccountLedger, CommandMeta
from domain.receipts import IdempotencyKey
from domain.vocabulary import ScreeningOutcome
from services.audit import Audit
from services.store import open_ledger

META = CommandMeta("marta")


@pytest.fixture
def other_process(settings, clock):
    other = open_ledger(settings, clock=clock)
    yield other
    other.close()


def _outreach_ready(ledger: AccountLedger, name: str):
    details = Firmographics(name, f"{name}.com", "it", 50, 10**6, "EUR", "DE", 0.1, "fair")
    account_id = ledger.register(details, META).account.id
    ledger.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], None, META)
    ledger.score_bant(account_id, BantRating(3, 3, 3, 3, {}), META)
    return account_id


def _at_once(*work: Callable[[], None]) -> list[BaseException]:
    start = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        start.wait()
        try:
            job()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def _sent(ledger: AccountLedger, account_id) -> int:
    return ledger.account(account_id).materials_sent


def test_two_ledgers_sending_to_the_same_accounts_lose_nothing(ledger, other_process):
    accounts = [_outreach_ready(ledger, f"shared{i}") for i in range(4)]
    rounds = 12
    stored = {account_id: 0 for account_id in accounts}  # commands answered as stored
    counting = threading.Lock()

    def send(through: AccountLedger) -> Callable[[], None]:
        def job() -> None:
            for n in range(rounds):
                futures = [
                    (a, through.submit(a, META, Account.send_material, f"m{n}", "email", None))
                    for a in accounts
                ]
                for account_id, future in futures:
                    try:
                        future.result(timeout=60)
                    except Contention:
                        continue  # refused, to be sent again: it must have stored nothing
                    with counting:
                        stored[account_id] += 1

        return job

    errors = _at_once(send(ledger), send(other_process), send(ledger), send(other_process))

    assert errors == []
    assert sum(stored.values()) > len(accounts) * rounds
    assert [_sent(ledger, a) for a in accounts] == [stored[a] for a in accounts]
    assert [_sent(other_process, a) for a in accounts] == [stored[a] for a in accounts]
    assert Audit(ledger).verify_all().verified


def test_a_key_sent_to_two_ledgers_at_once_is_applied_once(ledger, other_process):
    accounts = [_outreach_ready(ledger, f"keyed{i}") for i in range(6)]
    for account_id in accounts:  # cached by both
        other_process.account(account_id)
        other_process.send_material(account_id, "warm-up", "email", None, META)
        ledger.send_material(account_id, "warm-up", "email", None, META)
    results: dict[str, list] = {"a": [], "b": []}

    def send(through: AccountLedger, into: list) -> Callable[[], None]:
        def job() -> None:
            futures = []
            for n, account_id in enumerate(accounts):
                meta = CommandMeta("marta", idempotency=IdempotencyKey(f"k{n}", "sha256:aa"))
                futures.append(
                    through.submit(account_id, meta, Account.send_material, "deck", "email", None)
                )
            into.extend(f.result(timeout=60) for f in futures)

        return job

    errors = _at_once(send(ledger, results["a"]), send(other_process, results["b"]))

    assert errors == []
    assert [_sent(ledger, a) for a in accounts] == [3] * len(accounts)
    for first, second in zip(results["a"], results["b"], strict=True):
        assert sorted([first.replayed, second.replayed]) == [False, True]
        assert first.account.version == second.account.version
    assert Audit(ledger).verify_all().verified


def test_a_key_sent_twice_at_once_over_http_stores_once(client):
    from tests.api.requests import qualified

    account = qualified(client, domain="at-once.com")
    body = {"budget": 3, "authority": 3, "need": 3, "timing": 3}
    answers: list = []

    def rate() -> None:
        headers = {"Idempotency-Key": "rate-at-once"}
        answers.append(client.put(f"/accounts/{account['id']}/bant", json=body, headers=headers))

    errors = _at_once(*[rate] * 6)

    assert errors == []
    assert [a.status_code for a in answers] == [200] * 6
    assert sum(a.headers.get("idempotent-replayed") != "true" for a in answers) == 1
    assert len({a.headers["etag"] for a in answers}) == 1
    events = client.get(f"/accounts/{account['id']}/history").json()["items"]
    assert [e["type"] for e in events].count("bant_scored") == 1


def test_policies_created_on_many_threads_beside_account_commands_keep_their_chains(
    ledger, other_process
):
    from domain.screening_policy import Criteria

    accounts = [_outreach_ready(ledger, f"beside{i}") for i in range(3)]
    created: list[int] = []

    def create(through: AccountLedger, writer: int) -> Callable[[], None]:
        def job() -> None:
            for n in range(5):
                key = IdempotencyKey(f"policy-{writer}-{n}", f"sha256:{writer}-{n}")
                meta = CommandMeta("marta", idempotency=key)
                criteria = Criteria(headcount_min=writer * 100 + n)
                try:
                    created.append(through.create_policy(criteria, meta).value)
                except Contention:
                    pass  # refused, to be sent again: it must have stored nothing
                for account_id in accounts:
                    through.send_material(account_id, f"p{n}", "email", None, META)

        return job

    errors = _at_once(*(create(lg, w) for w, lg in enumerate([ledger, other_process] * 2)))

    assert errors == []
    assert len(created) > 10
    assert sorted(created) == list(range(1, len(created) + 1))
    assert max(ledger.screening_policies().versions) == len(created)
    assert [_sent(ledger, a) for a in accounts] == [20] * len(accounts)
    report = Audit(ledger).verify_all()
    assert report.verified, (report.broken, report.record_problems)


def test_a_large_batch_meeting_another_ledgers_write_stores_every_command_once(
    ledger, other_process
):
    accounts = []
    for i in range(200):
        details = Firmographics(f"big{i}", f"big{i}.com", "it", 50, 10**6, "EUR", "DE", 0.1, "f")
        account_id = ledger.register(details, META).account.id
        accounts.append(account_id)
    screened = [
        ledger.submit(a, META, Account.screen, ScreeningOutcome.QUALIFIED, ["industry"], None)
        for a in accounts
    ]
    for future in screened:
        future.result(timeout=60)  # all cached here, at the version screening left them
    moved = accounts[::7]
    for account_id in moved:  # then moved on elsewhere
        other_process.score_bant(account_id, BantRating(1, 1, 1, 1, {}), META)
    saves: list[int] = []
    ledger.on_saved.append(saves.append)

    futures = [
        ledger.submit(
            a,
            CommandMeta("marta", idempotency=IdempotencyKey(f"big-{n}", "sha256:bb")),
            Account.score_bant,
            BantRating(4, 4, 4, 4, {}),
        )
        for n, a in enumerate(accounts)
    ]
    results = [f.result(timeout=120) for f in futures]

    assert all(r.account.bant.budget == 4 and not r.replayed for r in results)
    for account_id in accounts:
        ratings = [
            e for e in ledger.history(account_id, limit=100) if isinstance(e, Account.BantScored)
        ]
        assert len(ratings) == (2 if account_id in moved else 1)
    assert len(saves) < len(accounts) // 2
    assert Audit(ledger).verify_all().verified


def test_a_company_another_ledger_registers_after_the_writer_found_it_new_is_updated(
    ledger, other_process, monkeypatch
):
    rows = [
        (Firmographics(f"New {i}", f"new{i}.com", "it", 50, 10**6, "EUR", "DE", 0.1, "f"), None)
        for i in range(20)
    ]
    asked = ledger.recorder.last_versions

    def then_registered_elsewhere(ids):
        found = asked(ids)
        # After the question, before the save: the other process registers one of them.
        other_process.register(replace(rows[7][0], name="Elsewhere", headcount=9), META)
        monkeypatch.setattr(ledger.recorder, "last_versions", asked)
        return found

    monkeypatch.setattr(ledger.recorder, "last_versions", then_registered_elsewhere)

    outcomes = ledger.import_accounts(rows, META)

    assert [outcome for outcome, _ in outcomes] == ["registered"] * 7 + ["updated"] + [
        "registered"
    ] * 12
    taken = ledger.account(outcomes[7][1])
    assert (taken.firmographics.name, taken.firmographics.headcount) == ("New 7", 50)
    registrations = [e for e in ledger.history(taken.id) if isinstance(e, Account.Registered)]
    assert len(registrations) == 1
    assert Audit(ledger).verify_all().verified
