"""The account writer: many commands to a transaction, each with its own outcome, and cached
accounts that never make a command act on stale state (other processes write the same store)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, wait
from dataclasses import replace
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from domain.account import Account, BantRating, Firmographics
from domain.account_writer import Change
from domain.errors import RuleViolation, VersionMismatch
from domain.ledger import AccountLedger, CommandMeta
from domain.receipts import IdempotencyKey
from domain.vocabulary import AbmStage, ScreeningOutcome
from services.api.command_meta import LoopReply
from services.audit import Audit
from services.store import open_ledger

META = CommandMeta("marta")


def _company(name: str) -> Firmographics:
    return Firmographics(name, f"{name}.com", "it", 50, 10**6, "EUR", "DE", 0.1, "fair")


def _registered(ledger: AccountLedger, name: str):
    return ledger.register(_company(name), META).account.id


def _qualified(ledger: AccountLedger, name: str):
    account_id = _registered(ledger, name)
    ledger.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], None, META)
    return account_id


def _rating(budget: int) -> BantRating:
    return BantRating(budget, 3, 3, 3, {})


@pytest.fixture
def other_process(settings, clock):
    """A second ledger on the same store, as another API replica would be."""
    other = open_ledger(settings, clock=clock)
    yield other
    other.close()


def test_commands_waiting_together_are_stored_in_few_transactions(ledger):
    accounts = [_qualified(ledger, f"acct{i}") for i in range(40)]
    saves: list[int] = []
    ledger.on_saved.append(saves.append)

    futures = [
        ledger.submit(a, META, Account.score_bant, _rating(1 + i % 5))
        for i, a in enumerate(accounts)
    ]
    results = [f.result(timeout=30) for f in futures]

    assert [r.account.bant.budget for r in results] == [1 + i % 5 for i in range(40)]
    assert len(saves) <= len(accounts) // 2
    assert sorted(r.position for r in results) == sorted({r.position for r in results})


def test_a_refused_command_does_not_hold_back_the_others_of_its_batch(ledger):
    ready, fresh = _qualified(ledger, "ready"), _registered(ledger, "fresh")
    also = _qualified(ledger, "also")

    futures = [
        ledger.submit(account_id, META, Account.score_bant, _rating(4))
        for account_id in (ready, fresh, also)
    ]

    assert futures[0].result(timeout=30).account.bant.budget == 4
    with pytest.raises(RuleViolation) as refusal:
        futures[1].result(timeout=30)
    assert refusal.value.rule == "bant_requires_qualified"
    assert futures[2].result(timeout=30).account.bant.budget == 4
    assert ledger.account(fresh).version == 1


def test_two_commands_on_one_account_are_applied_one_after_the_other(ledger):
    account_id = _qualified(ledger, "twice")
    version = ledger.account(account_id).version

    first = ledger.submit(account_id, META, Account.score_bant, _rating(2))
    second = ledger.submit(account_id, META, Account.score_bant, _rating(5))

    assert first.result(timeout=30).account.version == version + 2  # rated, then prioritised
    assert first.result().account.bant.budget == 2  # as the first command left it
    assert second.result(timeout=30).account.version == version + 3
    assert ledger.account(account_id).bant.budget == 5


def test_a_key_sent_twice_in_one_batch_is_applied_once(ledger):
    account_id = _qualified(ledger, "keyed")
    meta = CommandMeta("marta", idempotency=IdempotencyKey("k-1", "sha256:aa"))

    first = ledger.submit(account_id, meta, Account.score_bant, _rating(3))
    retry = ledger.submit(account_id, meta, Account.score_bant, _rating(3))

    assert not first.result(timeout=30).replayed
    assert retry.result(timeout=30).replayed
    assert retry.result().account.version == first.result().account.version
    ratings = [e for e in ledger.history(account_id) if isinstance(e, Account.BantScored)]
    assert len(ratings) == 1


def test_a_cached_account_written_by_another_process_is_rated_on_top_of_that_write(
    ledger, other_process
):
    account_id = _qualified(ledger, "shared")
    ledger.score_bant(account_id, _rating(1), META)  # cached here
    moved_on = other_process.score_bant(account_id, _rating(2), META).account.version

    result = ledger.score_bant(account_id, _rating(3), META)

    assert result.account.version == moved_on + 1
    assert ledger.account(account_id).bant.budget == 3
    assert Audit(ledger).verify_account(account_id).verified


def test_commands_colliding_with_another_process_are_stored_together_once_decided_again(
    ledger, other_process
):
    accounts = [_qualified(ledger, f"shared{i}") for i in range(30)]
    for account_id in accounts:
        ledger.score_bant(account_id, _rating(1), META)  # cached here
        other_process.score_bant(account_id, _rating(2), META)  # then moved on elsewhere
    moved_on = [other_process.account(a).version for a in accounts]
    saves: list[int] = []
    ledger.on_saved.append(saves.append)

    futures = [ledger.submit(a, META, Account.score_bant, _rating(3)) for a in accounts]
    results = [f.result(timeout=30) for f in futures]

    assert all(r.account.bant.budget == 3 for r in results)
    assert [r.account.version for r in results] == [v + 1 for v in moved_on]
    assert len(saves) <= len(accounts) // 2


def test_a_version_expected_from_another_process_is_accepted_and_an_old_one_refused(
    ledger, other_process
):
    account_id = _qualified(ledger, "expected")
    ledger.score_bant(account_id, _rating(1), META)
    cached = ledger.account(account_id).version
    moved_on = other_process.score_bant(account_id, _rating(2), META).account.version

    with pytest.raises(VersionMismatch):
        ledger.score_bant(account_id, _rating(3), CommandMeta("marta", expected_version=cached))
    result = ledger.score_bant(
        account_id, _rating(4), CommandMeta("marta", expected_version=moved_on)
    )
    assert result.account.version == moved_on + 1


def test_a_rule_is_not_decided_on_a_cached_account_another_process_has_moved_on(
    ledger, other_process
):
    account_id = _registered(ledger, "screened-elsewhere")  # cached here, not yet qualified
    other_process.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], None, META)

    result = ledger.score_bant(account_id, _rating(5), META)

    assert result.account.stage is AbmStage.PRIORITIZED


def test_a_change_to_nothing_on_a_cached_account_another_process_moved_on_is_decided_again(
    ledger, other_process
):
    ((_, account_id),) = ledger.import_accounts([(_company("moved"), None)], META)  # cached here
    other_process.import_accounts([(replace(_company("moved"), headcount=99), None)], META)

    # As cached here the row changes nothing; as stored it takes the headcount back
    again = ledger.import_accounts([(_company("moved"), None)], META)
    unchanged = ledger.import_accounts([(_company("moved"), None)], META)

    assert again == [("updated", account_id)]
    assert unchanged == [("unchanged", account_id)]
    assert other_process.account(account_id).firmographics.headcount == 50


def test_changes_to_nothing_in_one_batch_are_checked_together_and_those_moved_on_redecided(
    ledger, other_process
):
    rows = [(_company(f"batch{i}"), None) for i in range(30)]
    first = ledger.import_accounts(rows, META)  # cached here
    moved = range(0, 30, 3)
    other_process.import_accounts([(replace(rows[i][0], headcount=99), None) for i in moved], META)

    again = ledger.import_accounts(rows, META)

    assert again == [
        ("updated" if i in moved else "unchanged", account_id)
        for i, (_, account_id) in enumerate(first)
    ]
    assert {other_process.account(a).firmographics.headcount for _, a in first} == {50}


def test_accounts_not_cached_are_read_together_up_to_a_share_of_events_the_rest_alone(
    ledger, other_process, monkeypatch
):
    monkeypatch.setattr("domain.account_writer.READ_TOGETHER_EVENTS", 4)
    rows = [(_company(f"short{i}"), None) for i in range(4)]
    ledger.import_accounts([*rows, (_company("long"), None)], META)
    for headcount in (60, 70, 80):  # the long one: four events
        ledger.import_accounts([(replace(_company("long"), headcount=headcount), None)], META)
    read_alone: list[object] = []
    read_one = other_process.recorder.select_events

    def counted(originator_id, **kwargs):
        read_alone.append(originator_id)
        return read_one(originator_id, **kwargs)

    monkeypatch.setattr(other_process.recorder, "select_events", counted)
    grown = [
        (replace(details, headcount=99), None) for details, _ in [*rows, (_company("long"), None)]
    ]

    outcomes = other_process.import_accounts(grown, META)  # nothing of them cached there

    assert [outcome for outcome, _ in outcomes] == ["updated"] * 5
    long_id = outcomes[4][1]
    assert set(read_alone) == {long_id}  # the short ones' four events were the share
    assert [e.originator_version for e in ledger.recorder.select_events(long_id)] == [1, 2, 3, 4, 5]
    assert {ledger.account(a).firmographics.headcount for _, a in outcomes} == {99}
    assert Audit(ledger).verify_all().verified


def test_the_store_answers_for_more_accounts_than_one_statement_holds(ledger):
    # Past the SQLite recorder's 500 ids a statement, so its answers span several statements.
    stored = {uuid4(): 1 + n % 3 for n in range(1_201)}
    ledger.recorder.insert_events(
        [
            StoredEvent(originator_id, version, "tests:Noted", b"{}")
            for originator_id, last in stored.items()
            for version in range(1, last + 1)
        ]
    )
    asked = [*stored, uuid4(), uuid4()]  # the last two have no events

    assert ledger.recorder.last_versions(asked) == stored
    events = ledger.recorder.select_events_of(asked)
    assert {a: [e.originator_version for e in events[a]] for a in events} == {
        a: list(range(1, last + 1)) for a, last in stored.items()
    }


def test_concurrent_commands_are_all_stored_and_their_chains_hold(ledger):
    accounts = [_qualified(ledger, f"acct{i}") for i in range(6)]
    errors: list[BaseException] = []

    def rate(writer: int) -> None:
        try:
            for n in range(15):
                account_id = accounts[(writer + n) % len(accounts)]
                ledger.score_bant(account_id, BantRating(1 + n % 5, 2, 3, 4, {}), META)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=rate, args=(w,)) for w in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    ratings = sum(
        1
        for a in accounts
        for e in ledger.history(a, limit=1000)
        if type(e).__name__ == "BantScored"
    )
    assert ratings == 16 * 15
    assert all(Audit(ledger).verify_account(a).verified for a in accounts)


def test_an_answer_that_cannot_be_delivered_does_not_fail_the_rest_of_its_batch(ledger):
    blocker, gone, waiting = (_qualified(ledger, name) for name in ("blocker", "gone", "waiting"))
    release = threading.Event()

    def held(account, by):
        release.wait(timeout=30)
        return account

    # A request whose event loop closed while its command waited, as at shutdown.
    closed_loop = asyncio.new_event_loop()
    gone_reply = closed_loop.run_until_complete(_loop_reply())
    closed_loop.close()

    first = ledger.writer.submit(Change(blocker, META, held))
    # Both wait while the writer is held, so they are decided and stored in one batch.
    ledger.submit(gone, META, Account.score_bant, _rating(2), reply=gone_reply)
    after = ledger.submit(waiting, META, Account.score_bant, _rating(4))
    release.set()

    first.result(timeout=30)
    assert after.result(timeout=30).account.bant.budget == 4
    assert ledger.account(gone).bant.budget == 2


async def _loop_reply() -> LoopReply:
    return LoopReply()


def test_every_command_submitted_while_the_ledger_closes_is_answered(settings, clock):
    closing = open_ledger(settings, clock=clock)
    accounts = [_qualified(closing, f"closing{i}") for i in range(8)]
    replies: list[Future] = []
    refused: list[RuntimeError] = []
    started = threading.Barrier(len(accounts) + 1)

    def send(account_id) -> None:
        started.wait(timeout=30)
        n = 0
        while True:  # until the ledger refuses: it is closing
            n += 1
            try:
                reply = closing.submit(account_id, META, Account.score_bant, _rating(1 + n % 5))
            except RuntimeError as error:
                refused.append(error)
                return
            replies.append(reply)

    threads = [threading.Thread(target=send, args=(a,)) for a in accounts]
    for thread in threads:
        thread.start()
    started.wait(timeout=30)
    closing.close()
    for thread in threads:
        thread.join()

    # Each command is either stored or refused; none is left waiting.
    wait(replies, timeout=30)
    assert all(reply.done() for reply in replies)
    assert len(refused) == len(accounts)
