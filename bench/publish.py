"""Publishing speed: the sustained publish rate beside the sustained command rate, in one run,
and commit → ack lag while commands run at that rate. A script, not a test.

    uv run python bench/publish.py [--seconds 10] [--writers 16] [--postgres URL]

Commands (BANT re-ratings over seeded accounts) run in threads through the ledger, as the API
runs them; the publisher and a private nats-server (JetStream, file storage) run beside them.
1. command rate: writers alone, publisher stopped (the backlog builds up in the log): the
   ledger's own rate, without HTTP, above what the API sustains;
2. publish rate: the publisher drains that backlog alone, set beside both the ledger's rate
   and --rate;
3. lag: writers and publisher together, the writers paced at --rate commands/s (the highest
   sustained command rate over HTTP, W1, which `make bench` passes; unpaced without it);
   commit → ack p50/p99 from the publisher.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import secrets
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain.account import Account, Attribution, BantRating, Firmographics  # noqa: E402
from domain.ledger import CommandMeta  # noqa: E402
from domain.vocabulary import ScreeningOutcome  # noqa: E402
from services.nats_server import EmbeddedNats  # noqa: E402
from services.publisher import Publisher  # noqa: E402
from services.settings import Settings  # noqa: E402
from services.store import drop_schema, open_ledger  # noqa: E402


def seed(ledger, count: int) -> list:
    by = Attribution("bench", datetime.now(UTC))
    accounts = []
    for i in range(count):
        account = Account.register(
            Firmographics(
                f"Company {i}", f"pub{i}.example", "software", 100, 10**6, "EUR", "DE", 5.0, "bench"
            ),
            by,
        )
        account.screen(ScreeningOutcome.QUALIFIED, ["industry"], None, by)
        accounts.append(account)
    for start in range(0, count, 500):
        ledger.save(*accounts[start : start + 500])
    return [a.id for a in accounts]


def command_load(
    ledger, ids: list, writers: int, seconds: float, rate: float | None = None
) -> tuple[int, float]:
    """Runs BANT re-ratings from `writers` threads for `seconds`, together at most `rate` a
    second when given; returns (count, rate)."""
    stop = time.monotonic() + seconds
    counts = [0] * writers
    meta = CommandMeta("bench")
    interval = writers / rate if rate else 0.0  # each writer's share of the pace

    def write(slot: int) -> None:
        rng = random.Random(slot)
        due = time.monotonic() + interval * slot / writers
        while time.monotonic() < stop:
            if interval:
                time.sleep(max(0.0, due - time.monotonic()))  # pacing, not synchronisation
                due += interval
            rating = BantRating(*(rng.randint(1, 5) for _ in range(4)))
            ledger.score_bant(rng.choice(ids), rating, meta)
            counts[slot] += 1

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), sum(counts) / (time.monotonic() - started)


async def drain(publisher: Publisher, head: int) -> tuple[int, float]:
    """Runs the publisher until it has published up to `head`; returns (events, rate)."""
    stop = asyncio.Event()
    before = publisher.status.published
    started = time.monotonic()
    task = asyncio.create_task(publisher.run(stop))
    while publisher.status.published_position < head:
        await asyncio.sleep(0.01)  # sampling progress of the background task
    elapsed = time.monotonic() - started
    stop.set()
    await task
    events = publisher.status.published - before
    return events, events / elapsed


async def together(
    publisher: Publisher, ledger, ids, writers: int, seconds: float, pace: float | None
):
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    # The lag is that of a running publisher: its start (connecting, finding where the stream
    # ends) is over, and what was in the log before is published, before the writers start.
    start_head = ledger.recorder.max_notification_id() or 0
    while not publisher.status.connected or publisher.status.published_position < start_head:
        await asyncio.sleep(0.01)  # sampling progress of the background task
    publisher.status.lags_ms.clear()
    count, rate = await asyncio.to_thread(command_load, ledger, ids, writers, seconds, pace)
    head = ledger.recorder.max_notification_id()
    while publisher.status.published_position < head:
        await asyncio.sleep(0.01)
    stop.set()
    await task
    return rate, publisher.status.lag_percentile(0.5), publisher.status.lag_percentile(0.99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument(
        "--rate", type=float, help="commands/s while the lag is measured (default: unpaced)"
    )
    parser.add_argument("--postgres", help="a PostgreSQL URL; a fresh schema is used, then dropped")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-publish-"))
    settings = (
        Settings(
            database_url=args.postgres,
            database_schema=f"bench_{secrets.token_hex(4)}",
            data_dir=workdir,
        )
        if args.postgres
        else Settings(data_dir=workdir)
    )
    broker = EmbeddedNats(workdir / "nats")
    broker.start()
    ledger = open_ledger(settings)
    try:
        ids = seed(ledger, args.accounts)
        publisher = Publisher(ledger, broker.url)
        asyncio.run(drain(publisher, ledger.recorder.max_notification_id()))  # the seed
        commands, command_rate = command_load(ledger, ids, args.writers, args.seconds)
        events, publish_rate = asyncio.run(drain(publisher, ledger.recorder.max_notification_id()))
        rate_together, p50, p99 = asyncio.run(
            together(publisher, ledger, ids, args.writers, args.seconds, args.rate)
        )
    finally:
        ledger.close()
        if args.postgres:
            drop_schema(args.postgres, settings.database_schema)
        broker.stop()
    table = Table(
        title=f"Publishing on {settings.store_name} (nats-server, JetStream file storage)"
    )
    for column in ("what", "figure"):
        table.add_column(column)
    table.add_row("commands/s (writers alone)", f"{command_rate:,.0f} ({commands:,} commands)")
    table.add_row("events/s published (draining alone)", f"{publish_rate:,.0f} ({events:,} events)")
    table.add_row(
        "publish rate / event rate of commands",
        f"{publish_rate / (command_rate * events / max(commands, 1)):.2f}",
    )
    table.add_row("publish rate / command rate", f"{publish_rate / command_rate:.2f}")
    if args.rate:
        table.add_row("publish rate / the --rate (W1)", f"{publish_rate / args.rate:.2f}")
    table.add_row(
        "commands/s with the publisher running",
        f"{rate_together:,.0f}" + (f" (paced at {args.rate:,.0f})" if args.rate else ""),
    )
    table.add_row("commit → ack p50 / p99 (ms)", f"{p50:.1f} / {p99:.1f}")
    console = Console(width=120)
    console.print(table)
    console.print(
        f"{platform.machine()}, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.writers} writers"
    )
    if args.json:
        figures = {
            "store": settings.store_name,
            "command_rate": command_rate,
            "publish_rate": publish_rate,
            "publish_to_command_rate": publish_rate / command_rate,
            "publish_to_paced_rate": publish_rate / args.rate if args.rate else None,
            "command_rate_with_publisher": rate_together,
            "paced_at": args.rate,
            "lag_p50_ms": p50,
            "lag_p99_ms": p99,
        }
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
