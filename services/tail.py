"""`crm tail`: reads the account event stream as another service would, live or from the past."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

import msgspec
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.events import decode_event
from services.publisher import nats_servers

log = logging.getLogger("crm.tail")
CONNECT_SECONDS = 5.0  # how long `crm tail` tries to reach a broker before it gives up


class BrokerUnavailable(Exception):
    """No server the URL lists answered in time, or none holds a stream for the subject."""


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
    cancelled. Every body is decoded against the contracts first, as a subscriber would: one
    that does not decode is named on stderr and left out.
    """
    nc = await _connect(url)
    printed = 0
    try:
        js = nc.jetstream()
        try:
            subscription = await js.subscribe(subject, ordered_consumer=True, config=config)
        except nats.js.errors.NotFoundError:
            raise BrokerUnavailable(f"no stream on {_servers(url)} holds {subject}") from None
        while limit is None or printed < limit:
            try:
                msg = await subscription.next_msg(timeout=idle_seconds or 3600)
            except nats.errors.TimeoutError:
                if idle_seconds is not None:
                    break
                continue
            try:
                decode_event(msg.data)
            except msgspec.MsgspecError as error:
                # Not the CRM's (published by hand under its subjects) or of a newer contract:
                # said once, and the tail reads on.
                print(
                    f"crm tail: message {msg.metadata.sequence.stream} on {msg.subject} does "
                    f"not match the event contracts ({error}); left out",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            print(
                f"{msg.metadata.sequence.stream} {msg.subject} {msg.data.decode()}",
                file=out,
                flush=True,
            )
            printed += 1
    finally:
        await nc.close()
    return printed


async def _connect(url: str) -> Any:
    """A connection, or BrokerUnavailable after CONNECT_SECONDS. Once connected, the client
    reconnects for as long as the tail runs, saying so in a line per failed attempt."""
    connected = False

    async def report(error: Exception) -> None:
        if connected:  # the failed attempts to connect end in one line, BrokerUnavailable
            log.warning("NATS at %s: %s", _servers(url), error or type(error).__name__)

    try:
        nc = await asyncio.wait_for(
            # nats-py retries a first connection too; the deadline bounds it.
            nats.connect(nats_servers(url), max_reconnect_attempts=-1, error_cb=report),
            CONNECT_SECONDS,
        )
    except (TimeoutError, OSError, nats.errors.Error) as error:
        message = f"no NATS server answered at {_servers(url)} within {CONNECT_SECONDS:g} s"
        raise BrokerUnavailable(message) from error
    connected = True
    return nc


def _servers(url: str) -> str:
    """The servers as host:port, without any user or password the URL holds."""
    parts = [urlsplit(s if "://" in s else f"nats://{s}") for s in nats_servers(url)]
    return ", ".join(f"{part.hostname}:{part.port or 4222}" for part in parts)


def run_tail(
    url: str, subject: str, config: ConsumerConfig, limit: int | None, idle_seconds: float | None
) -> int:
    try:
        asyncio.run(tail(url, subject, config, limit, idle_seconds))
    except KeyboardInterrupt:
        pass
    except BrokerUnavailable as error:
        print(f"crm tail: {error}", file=sys.stderr)
        return 1
    return 0
