"""W2: command latency on an account with a long history against one with a short history.
A script, not a test.

    uv run python bench/command_latency.py [--long 10000] [--commands 300] [--postgres URL]

Both accounts are seeded through the domain (the events the API writes: registered, screened,
then BANT ratings), the long one in saves of 1,000 events. Then the same command, a BANT
re-rating, runs on each account in turn through the ledger, with the aggregate cache this
service runs with and, for comparison, without it.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain.account import Account, Attribution, BantRating, Firmographics  # noqa: E402
from domain.ledger import CommandMeta  # noqa: E402
from domain.vocabulary import ScreeningOutcome  # noqa: E402
from services.settings import Settings  # noqa: E402
from services.store import drop_schema, open_ledger  # noqa: E402

SHORT = 10


def seed(ledger, name: str, events: int) -> object:
    by = Attribution("bench", datetime.now(UTC))
    account = Account.register(
        Firmographics(name, f"{name}.example", "software", 100, 10**6, "EUR", "DE", 5.0, "bench"),
        by,
    )
    account.screen(ScreeningOutcome.QUALIFIED, ["industry"], None, by)
    n = 0
    while account.version + len(account.pending_events) < events:
        account.score_bant(BantRating(1 + n % 5, 3, 3, 3, {}), by)
        n += 1
        if len(account.pending_events) >= 1000:
            ledger.save(account)
    ledger.save(account)
    return account.id


def measure(ledger, account_id, commands: int) -> list[float]:
    meta = CommandMeta("bench", reason="re-rating")
    took = []
    for n in range(commands):
        started = time.perf_counter()
        ledger.score_bant(account_id, BantRating(1 + n % 5, 2, 4, 3, {}), meta)
        took.append(time.perf_counter() - started)
    return took


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if q < 100 else max(values) * 1000


def run(settings: Settings, long: int, commands: int, cache: bool) -> dict[str, float]:
    if not cache:
        settings = replace(settings, aggregate_cache_size=0)
    ledger = open_ledger(settings)
    try:
        tag = secrets.token_hex(3)
        short_id = seed(ledger, f"short-{tag}", SHORT)
        long_id = seed(ledger, f"long-{tag}", long)
        measure(ledger, short_id, 20)  # warm both: the first load fills the cache
        measure(ledger, long_id, 20)
        short = measure(ledger, short_id, commands)
        long_ = measure(ledger, long_id, commands)
    finally:
        ledger.close()
    return {
        "short_p50": p(short, 50),
        "short_p99": p(short, 99),
        "long_p50": p(long_, 50),
        "long_p99": p(long_, 99),
        "ratio_p50": p(long_, 50) / p(short, 50),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", type=int, default=10_000, help="events of the long account")
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--postgres", metavar="URL", help="also measure on this PostgreSQL")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    results = []
    stores = [("sqlite", Settings(data_dir=Path(tempfile.mkdtemp(prefix="crm-w2-"))))]
    if args.postgres:
        schema = f"bench_w2_{secrets.token_hex(3)}"
        stores.append(("postgresql", Settings(database_url=args.postgres, database_schema=schema)))
    print(f"W2: a command on an account with {args.long:,} events against one with {SHORT}")
    print("store     cache  short p50/p99 ms  long p50/p99 ms  long/short p50  target <= 1.5")
    try:
        for name, settings in stores:
            for cache in (True, False):
                r = run(settings, args.long, args.commands, cache)
                results.append({"store": name, "cache": cache, **r})
                verdict = "met" if r["ratio_p50"] <= 1.5 else "not met"
                print(
                    f"{name:9} {'on' if cache else 'off':5}  "
                    f"{r['short_p50']:6.2f} / {r['short_p99']:6.2f}   "
                    f"{r['long_p50']:7.2f} / {r['long_p99']:7.2f}   "
                    f"{r['ratio_p50']:12.2f}x  {verdict if cache else '(baseline)'}"
                )
    finally:
        for name, settings in stores:
            if name == "postgresql":
                drop_schema(args.postgres, settings.database_schema)
    if args.json:
        args.json.write_text(json.dumps({"long_events": args.long, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
