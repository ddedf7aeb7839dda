"""Group commit: one transaction for many commands, and a conflict fails only its own command."""

from __future__ import annotations

import threading

import pytest
from eventsourcing.persistence import IntegrityError

from domain.account import BantRating, Firmographics
from domain.group_commit import Pending
from domain.ledger import CommandMeta
from domain.vocabulary import ScreeningOutcome
from services.audit import Audit

META = CommandMeta("marta")


def _qualified(ledger, name: str):
    details = Firmographics(name, f"{name}.com", "it", 50, 10**6, "EUR", "DE", 0.1, "fair")
    account_id = ledger.register(details, META).account.id
    ledger.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], None, META)
    return account_id


def _rated(ledger, account_id, budget: int) -> Pending:
    account = ledger.account(account_id)
    account.score_bant(BantRating(budget, 3, 3, 3, {}), ledger.attribution(META))
    return Pending(account.collect_events())


def test_a_conflict_in_a_group_fails_only_its_own_command(ledger):
    a, b, c = (_qualified(ledger, name) for name in ("alpha", "beta", "gamma"))
    stale = _rated(ledger, c, 1)
    ledger.score_bant(c, BantRating(5, 5, 5, 5, {}), META)  # another writer got there first
    group = [_rated(ledger, a, 2), stale, _rated(ledger, b, 4)]
    twin = _rated(ledger, a, 3)  # the same version of `alpha` as the first command

    ledger.group_commit.commit([*group, twin])

    assert group[0].done.result() and group[2].done.result()
    with pytest.raises(IntegrityError):
        stale.done.result()
    with pytest.raises(IntegrityError):
        twin.done.result()
    assert ledger.account(a).bant.budget == 2 and ledger.account(b).bant.budget == 4
    assert ledger.account(c).bant.budget == 5


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
