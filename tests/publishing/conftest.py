"""The publisher running in the test process, and reading what the stream holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest

from contracts.events import decode_event
from services.publisher import Publisher, StreamSettings


@pytest.fixture
async def running_publisher(ledger, broker) -> AsyncIterator[Publisher]:
    publisher = Publisher(ledger, broker.url, StreamSettings(), batch_size=64)
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    yield publisher
    stop.set()
    await asyncio.wait_for(task, 15)


async def stream_messages(url: str, stream: str = "CRM") -> list:
    """Every message in the stream, in stream order, as (subject, headers, event)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq=seq)
            messages.append((msg.subject, msg.headers, decode_event(msg.data)))
        return messages
    finally:
        await nc.close()


async def wait_for_stream_count(url: str, count: int, timeout: float = 30.0) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                info = await js.stream_info("CRM")
                if info.state.messages >= count:
                    return
            except nats.js.errors.NotFoundError:
                pass
            assert asyncio.get_running_loop().time() < deadline, "stream did not fill in time"
            await asyncio.sleep(0.02)  # polling the broker's count of stored messages
    finally:
        await nc.close()
