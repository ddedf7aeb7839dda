"""A JetStream acknowledgement lost on the way back: the message is stored, the publisher does
not learn it, and the broker is away for longer than the stream's duplicate window before the
publisher can try again. The message is stored once all the same."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import nats
import pytest
from nats.js.api import StreamConfig

from services.publisher import Publisher, StreamSettings
from tests.failures.relay import Relay, recv
from tests.publishing.conftest import stream_messages, wait_for_stream_count
from tests.publishing.test_publisher import assert_exactly, make_accounts, stored_history


class AckLosingRelay(Relay):
    """Relays connections to nats-server. Armed, it passes the next publish to the server,
    and drops that connection when the server acknowledges it (it has stored the message),
    instead of passing the acknowledgement back."""

    def _sends(self, data: bytes, doomed: threading.Event) -> bool:
        if self.armed.is_set() and b"HPUB crm.accounts." in data:
            self.armed.clear()
            doomed.set()
        return True

    def _down(self, server: socket.socket, client: socket.socket, doomed: threading.Event) -> None:
        while data := recv(server):
            if doomed.is_set() and b'"seq"' in data:  # JetStream's acknowledgement
                self.drop(client, server)
                return
            try:
                client.sendall(data)
            except OSError:
                return


@pytest.fixture
def relay(broker) -> Iterator[AckLosingRelay]:
    relay = AckLosingRelay((broker.host, broker.port))
    yield relay
    relay.close()


async def test_a_message_whose_ack_was_lost_is_not_stored_again_after_the_duplicate_window(
    ledger, broker, relay
):
    # Given a stream whose duplicate window (the shortest JetStream allows) stands for a broker
    # away longer than two minutes, and a publisher reaching it through the relay
    nc = await nats.connect(broker.url)
    await nc.jetstream().add_stream(
        StreamConfig(name="CRM", subjects=["crm.accounts.>"], duplicate_window=0.1)
    )
    await nc.close()
    publisher = Publisher(ledger, f"nats://127.0.0.1:{relay.port}", StreamSettings(), batch_size=64)
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        await asyncio.to_thread(make_accounts, ledger, 1)
        await wait_for_stream_count(broker.url, len(stored_history(ledger)))

        # When the acknowledgement of the next event's message is lost
        relay.armed.set()
        await asyncio.to_thread(make_accounts, ledger, 1)
        history = stored_history(ledger)
        head = ledger.recorder.max_notification_id()
        while publisher.status.published_position < head:
            await asyncio.sleep(0.02)  # polling the publisher's progress
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)

    # Then the stream holds that event once, as every other
    assert relay.dropped.is_set()
    assert_exactly(await stream_messages(broker.url), history)
