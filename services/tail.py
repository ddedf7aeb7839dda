"""`crm tail`: reads the account event stream as another service would, live or from the past."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import TextIO

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.events import decode_event
from services.publisher import nats_servers


def deliver_from(from_start: bool, from_seq: int | None, since: datetime | None) -> ConsumerConfig:
    if from_start:
        return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    if from_seq is not None:
        return ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=from_seq
        )
    if since is not None:
        return ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since.isoformat()
        )
    return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)


async def tail(
    url: str,
    subject: str,
    config: ConsumerConfig,
    limit: int | None = None,
    idle_seconds: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Prints `<stream seq> <subject> <JSON body>` per message; returns how many it printed.

    Stops after `limit` messages, or when no message came for `idle_seconds`, else runs until
    cancelled. Every body is decoded against the contracts first, as a subscriber would.
    """
    nc = await nats.connect(nats_servers(url))
    printed = 0
    try:
        js = nc.jetstream()
        subscription = await js.subscribe(subject, ordered_consumer=True, config=config)
        while limit is None or printed < limit:
            try:
                msg = await subscription.next_msg(timeout=idle_seconds or 3600)
            except nats.errors.TimeoutError:
                if idle_seconds is not None:
                    break
                continue
            decode_event(msg.data)
            print(
                f"{msg.metadata.sequence.stream} {msg.subject} {msg.data.decode()}",
                file=out,
                flush=True,
            )
            printed += 1
    finally:
        await nc.close()
    return printed


def run_tail(
    url: str, subject: str, config: ConsumerConfig, limit: int | None, idle_seconds: float | None
) -> int:
    try:
        asyncio.run(tail(url, subject, config, limit, idle_seconds))
    except KeyboardInterrupt:
        pass
    return 0
