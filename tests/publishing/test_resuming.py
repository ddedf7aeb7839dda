"""A publisher started again resumes where it left off, whatever the stream still holds: its
messages aged out (CRM_NATS_MAX_AGE_SECONDS) in whole or in part, or its last message is not
one of the publisher's, or was deleted."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.api import StreamConfig

from domain.account import BantRating
from services.publisher import Publisher, StreamSettings
from tests.publishing.test_publisher import META, make_accounts, stored_history


class Witness:
    """Sees every message published on the stream's subjects, as a subscriber would, even the
    ones the stream has aged out since: (account id, version) of each, in arrival order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.foreign = 0
        self.nc = None

    async def start(self, url: str) -> None:
        self.nc = await nats.connect(url)
        await self.nc.subscribe("crm.accounts.>", cb=self._saw)
        await self.nc.flush()

    async def _saw(self, msg) -> None:
        headers = msg.headers or {}
        if "CRM-Position" not in headers:  # someone else's, whatever its Nats-Msg-Id
            self.foreign += 1
            return
        account_id, version = headers["Nats-Msg-Id"].rsplit(":", 1)
        self.seen.append((account_id, int(version)))

    async def saw_once_each(self, history: list[tuple[str, int]], timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.seen) < len(history):
            assert asyncio.get_running_loop().time() < deadline, "messages did not arrive"
            await asyncio.sleep(0.02)  # polling what the subscription has received
        await self.nc.flush()  # whatever else the broker sent it has arrived too
        twice = [event for event, count in Counter(self.seen).items() if count > 1]
        assert not twice, f"{len(twice)} events published again, such as {twice[:3]}"
        assert sorted(self.seen) == sorted(history), "the messages differ from the stored history"


@pytest.fixture
async def witness(broker) -> AsyncIterator[Witness]:
    witness = Witness()
    await witness.start(broker.url)
    yield witness
    await witness.nc.close()


async def publish_until_head(ledger, url: str, stream: StreamSettings, timeout=20.0) -> None:
    """Runs a publisher until it has published every stored event, then stops it."""
    publisher = Publisher(ledger, url, stream, batch_size=64)
    head = ledger.recorder.max_notification_id()
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while publisher.status.published_position < head:
            assert asyncio.get_running_loop().time() < deadline, "the publisher did not resume"
            await asyncio.sleep(0.02)  # polling the publisher's progress
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def stream_state(url: str):
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info("CRM")).state
    finally:
        await nc.close()


async def wait_until_all_expired(url: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (await stream_state(url)).messages:
        assert asyncio.get_running_loop().time() < deadline, "the messages did not age out"
        await asyncio.sleep(0.05)  # polling the broker's count of stored messages


async def test_a_stream_whose_messages_all_aged_out_resumes_where_it_left_off(
    ledger, broker, witness
):
    # Given a stream that keeps messages one second, which a publisher filled
    stream = StreamSettings(max_age_seconds=1)
    await asyncio.to_thread(make_accounts, ledger, 3)
    await publish_until_head(ledger, broker.url, stream)

    # And a quiet spell longer than that, so the stream holds no message any more
    await wait_until_all_expired(broker.url)
    assert (await stream_state(broker.url)).last_seq > 0

    # When events come and a publisher starts again
    await asyncio.to_thread(make_accounts, ledger, 3)
    await publish_until_head(ledger, broker.url, stream)

    # Then it published every new event, and none of the old ones again
    history = stored_history(ledger)
    await witness.saw_once_each(history)
    assert (await stream_state(broker.url)).last_seq == len(history)


async def test_a_publisher_killed_mid_batch_over_a_partly_aged_out_stream_resumes_exactly(
    ledger, broker, witness
):
    # Given a stream that keeps messages three seconds, which a publisher filled
    stream = StreamSettings(max_age_seconds=3)
    await asyncio.to_thread(make_accounts, ledger, 10)
    await publish_until_head(ledger, broker.url, stream)
    end = ledger.recorder.max_notification_id()
    # And a quiet spell longer than that
    await wait_until_all_expired(broker.url)

    # And a publisher killed in its next batch, whose accounts went out concurrently: the later
    # accounts' events are stored, the first account's only in part, and its is last
    await asyncio.to_thread(make_accounts, ledger, 10)
    publisher = Publisher(ledger, broker.url, stream, batch_size=64)
    events, _, _ = publisher._read(end)
    first = events[0].account_id
    nc = await nats.connect(broker.url)
    try:
        js = nc.jetstream()
        for event in [e for e in events if e.account_id != first] + events[:1]:
            await publisher._publish_one(js, event)
    finally:
        await nc.close()

    # When a publisher starts again (while that batch's messages are still kept)
    await publish_until_head(ledger, broker.url, stream)

    # Then every event is published once: the aged-out ones are not published again
    history = stored_history(ledger)
    await witness.saw_once_each(history)
    assert (await stream_state(broker.url)).last_seq == len(history)


@pytest.mark.parametrize(
    "ending, filled_by",
    [
        ("a message not the publisher's", "the publisher"),
        ("a deleted message", "the publisher"),
        ("a message not the publisher's", "an earlier version"),
    ],
)
async def test_a_stream_ending_in_a_message_not_the_publishers_resumes_where_it_left_off(
    ledger, broker, witness, ending, filled_by
):
    # Given a stream whose duplicate window (the shortest JetStream allows) cannot hide a copy,
    # filled with more than one batch of events, by a publisher or by hand as an earlier
    # version of it did (which kept no record of its position)
    nc = await nats.connect(broker.url)
    try:
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(name="CRM", subjects=["crm.accounts.>"], duplicate_window=0.1)
        )
        await asyncio.to_thread(make_accounts, ledger, 30)
        if filled_by == "the publisher":
            await publish_until_head(ledger, broker.url, StreamSettings())
        else:
            publisher = Publisher(ledger, broker.url, StreamSettings(), batch_size=64)
            position = 0
            while (batch := publisher._read(position))[1] != position:
                for event in batch[0]:
                    await publisher._publish_one(js, event)
                position = batch[1]

        # And at its end a message someone published by hand, without the position header,
        # or the last message deleted
        if ending == "a deleted message":
            await js.delete_msg("CRM", (await js.stream_info("CRM")).state.last_seq)
        else:
            await js.publish("crm.accounts.note", b"hello", stream="CRM")
    finally:
        await nc.close()
    await asyncio.sleep(0.2)  # longer than the duplicate window

    # When events come and a publisher starts again
    await asyncio.to_thread(make_accounts, ledger, 3)
    await publish_until_head(ledger, broker.url, StreamSettings())

    # Then it published every new event, and none of the earlier ones again
    history = stored_history(ledger)
    deleted = ending == "a deleted message"
    await witness.saw_once_each(history)
    assert (await stream_state(broker.url)).last_seq == len(history) + (0 if deleted else 1)


async def stream_with_a_note(ledger, url: str, window: float, msg_id) -> uuid.UUID:
    """Accounts (Acme first) in a stream with the duplicate window given, which a publisher
    filled; then, as the last message about Acme, one another team published on its subjects
    with the `Nats-Msg-Id` `msg_id(acme)`. Returns Acme's id."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(name="CRM", subjects=["crm.accounts.>"], duplicate_window=window)
        )
        acme, *_ = await asyncio.to_thread(make_accounts, ledger, 3)
        await publish_until_head(ledger, url, StreamSettings())
        headers = {"Nats-Msg-Id": msg_id(acme)}
        await js.publish(f"crm.accounts.{acme}.note", b"{}", stream="CRM", headers=headers)
    finally:
        await nc.close()
    return acme


@pytest.mark.parametrize("msg_id", ["its own id", "the account's id and a version ahead"])
async def test_a_message_not_the_publishers_on_an_accounts_subjects_neither_stops_nor_skips(
    ledger, broker, witness, msg_id
):
    # Given a stream whose duplicate window cannot hide a copy, which a publisher filled, and
    # as the last message about Acme one another team published on its subjects
    acme = await stream_with_a_note(
        ledger,
        broker.url,
        0.1,
        lambda acme: str(uuid.uuid4()) if msg_id == "its own id" else f"{acme}:9999",
    )
    await asyncio.sleep(0.2)  # longer than the duplicate window

    # When Acme is re-rated and a publisher starts again
    await asyncio.to_thread(ledger.score_bant, acme, BantRating(5, 5, 5, 5), META)
    await publish_until_head(ledger, broker.url, StreamSettings())

    # Then the re-rating went out, and nothing before it again
    history = stored_history(ledger)
    await witness.saw_once_each(history)
    assert (await stream_state(broker.url)).last_seq == len(history) + 1


async def test_an_event_whose_id_another_message_took_is_published_once_the_window_passes(
    ledger, broker
):
    # Given a stream with a duplicate window of a second, which a publisher filled, and a
    # message someone else published under the id of Acme's next event
    acme = await stream_with_a_note(
        ledger, broker.url, 1.0, lambda acme: f"{acme}:{ledger.account(acme).version + 1}"
    )

    # When Acme is re-rated within the window, and a publisher publishes it
    await asyncio.to_thread(ledger.score_bant, acme, BantRating(5, 5, 5, 5), META)
    await publish_until_head(ledger, broker.url, StreamSettings())

    # Then the stream holds the re-rating (JetStream took it once the window had passed): it
    # was not counted as published when JetStream refused it as a duplicate of the other one
    assert sorted(await publishers_messages(broker.url)) == sorted(stored_history(ledger))


async def test_a_stream_created_again_by_hand_receives_every_event_again(ledger, broker):
    # Given a stream a publisher filled
    await asyncio.to_thread(make_accounts, ledger, 3)
    await publish_until_head(ledger, broker.url, StreamSettings())

    # When someone deletes it and creates it again, and it gets as many messages (not the
    # publisher's) as the old one had, before a publisher starts again
    nc = await nats.connect(broker.url)
    try:
        js = nc.jetstream()
        last_seq = (await js.stream_info("CRM")).state.last_seq
        await js.delete_stream("CRM")
        await js.add_stream(StreamConfig(name="CRM", subjects=["crm.accounts.>"]))
        for _ in range(last_seq):
            await js.publish("crm.accounts.note", b"hello", stream="CRM")
    finally:
        await nc.close()
    await asyncio.to_thread(make_accounts, ledger, 2)
    await publish_until_head(ledger, broker.url, StreamSettings())

    # Then the new stream holds every event once: the old stream's record was not taken for it
    history = stored_history(ledger)
    assert sorted(await publishers_messages(broker.url)) == sorted(history)


async def publishers_messages(url: str) -> list[tuple[str, int]]:
    """(account id, version) of each message of the publisher's in the stream."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info("CRM")).state
        found = []
        for seq in range(state.first_seq, state.last_seq + 1):
            headers = (await js.get_msg("CRM", seq=seq)).headers or {}
            if "CRM-Position" in headers:
                account_id, version = headers["Nats-Msg-Id"].rsplit(":", 1)
                found.append((account_id, int(version)))
        return found
    finally:
        await nc.close()
