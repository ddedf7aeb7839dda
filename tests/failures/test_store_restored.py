"""A store restored from a backup under running processes: a process that remembers accounts
as they were after the backup neither leaves holes in their histories, nor publishes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from domain.account import BantRating, Firmographics
from services.publisher import Publisher, StreamSettings
from tests.audit.tampering import META, RawStore, five_events
from tests.publishing.test_publisher import make_accounts, until
from tests.publishing.test_resuming import publish_until_head, stream_state


def test_a_command_on_an_account_remembered_ahead_of_the_store_is_decided_on_the_store(
    ledger, settings
):
    # Given an account of five events this process has in memory
    account_id = five_events(ledger, "acme.example")
    # And a restore that takes the store back to its first three
    RawStore(settings, ledger).delete(account_id, from_version=4)

    # When it is rated again through the same process
    result = ledger.score_bant(account_id, BantRating(5, 5, 5, 5, {}), META)

    # Then the rating follows the events the store holds: no hole in the history
    versions = [e.originator_version for e in ledger.recorder.select_events(account_id)]
    assert versions == list(range(1, result.account.version + 1))
    assert result.account.version > 3
    assert ledger.account(account_id).bant == BantRating(5, 5, 5, 5, {})


def test_a_row_remembered_as_stored_but_lost_in_a_restore_is_stored_again_on_re_import(
    ledger, settings
):
    rows = [
        (Firmographics(f"Co {i}", f"co{i}.example", "it", 50, 10**6, "EUR", "DE", 0.1, "f"), None)
        for i in range(5)
    ]
    ledger.import_accounts(rows, META)
    grown = [(replace(details, headcount=99), None) for details, _ in rows]
    updated = ledger.import_accounts(grown, META)  # this process remembers every account so
    # A restore takes one account back to before its update
    lost = updated[2][1]
    RawStore(settings, ledger).delete(lost, from_version=2)

    again = ledger.import_accounts(grown, META)

    assert [outcome for outcome, _ in again] == ["unchanged"] * 2 + ["updated"] + ["unchanged"] * 2
    assert ledger.account(lost).firmographics.headcount == 99
    versions = [e.originator_version for e in ledger.recorder.select_events(lost)]
    assert versions == [1, 2]


@pytest.mark.parametrize("when", ["before a publisher starts", "under a running publisher"])
async def test_a_log_restored_to_before_what_its_stream_holds_publishes_nothing_and_says_why(
    ledger, settings, broker, caplog, when
):
    # Given a stream a publisher filled
    *_, last = await asyncio.to_thread(make_accounts, ledger, 3)
    await publish_until_head(ledger, broker.url, StreamSettings())
    published = (await stream_state(broker.url)).last_seq
    caplog.set_level(logging.ERROR, logger="crm.publisher")
    publisher = Publisher(ledger, broker.url, StreamSettings(), batch_size=64)
    stop = asyncio.Event()
    task = None
    if when == "under a running publisher":
        task = asyncio.create_task(publisher.run(stop))
        await until(lambda: publisher.status.connected)

    # When the store is restored to before the last account's events, and gets new ones
    RawStore(settings, ledger).delete(last)
    await asyncio.to_thread(make_accounts, ledger, 1)
    task = task or asyncio.create_task(publisher.run(stop))
    try:
        await until(lambda: "restored from a backup" in caplog.text)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)

    # Then nothing more was published: the new events take ids subscribers hold for others
    assert (await stream_state(broker.url)).last_seq == published
    assert "Delete the stream" in caplog.text
