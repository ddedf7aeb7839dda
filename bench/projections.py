"""Read-model speed: the rate of rebuilding every read model (in one pass, as `crm rebuild`
does) beside the raw rate of reading and decoding the same notification log, and leaderboard
query latency, at several sizes. A script, not a test.

    uv run python bench/projections.py --accounts 10000,100000 [--postgres URL] [--json OUT]

Accounts are seeded through the domain in bulk (the same events the API writes: registered,
screened, bant_scored, stage_changed), many aggregates to a save.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from domain.account import Account, Attribution, BantRating, Firmographics  # noqa: E402
from domain.vocabulary import ScreeningOutcome  # noqa: E402
from projections import accounts  # noqa: E402
from projections.account_queries import (  # noqa: E402
    ACTIVE_STAGES,
    LEADERBOARD_ORDER,
    Filters,
    cursor_key,
    encode_cursor,
    leaderboard,
)
from projections.generations import live_generation  # noqa: E402
from services.gc_policy import collect_garbage_rarely  # noqa: E402
from services.projector import Projector  # noqa: E402
from services.settings import Settings  # noqa: E402
from services.store import drop_schema, open_ledger, open_read_models  # noqa: E402

INDUSTRIES = ["software", "manufacturing", "retail", "logistics", "energy"]
COUNTRIES = ["DE", "FR", "NL", "PL", "SE"]
SAVE_BATCH = 500


def seed(ledger, start: int, count: int, progress: Progress, re_ratings: int = 0) -> None:
    """Registers, screens and rates accounts start…start+count-1 (4 events each), then rates
    each of them `re_ratings` more times (one event each)."""
    rng = random.Random(start)
    by = Attribution("bench", datetime.now(UTC))

    def account(i: int) -> Account:
        account = Account.register(firmographics(i, rng), by)
        account.screen(ScreeningOutcome.QUALIFIED, ["industry"], None, by)
        for _ in range(1 + re_ratings):
            account.score_bant(BantRating(*(rng.randint(1, 5) for _ in range(4))), by)
        return account

    save_in_batches(ledger, map(account, range(start, start + count)), count, progress)


def firmographics(i: int, rng: random.Random) -> Firmographics:
    """Company i's, the same whichever script seeds it."""
    return Firmographics(
        f"Company {i:07d}",
        f"company{i}.example",
        rng.choice(INDUSTRIES),
        rng.randint(10, 5000),
        rng.randint(10**5, 10**9),
        "EUR",
        rng.choice(COUNTRIES),
        rng.uniform(-5, 40),
        "bench",
    )


def save_in_batches(ledger, accounts: Iterable[Account], count: int, progress: Progress) -> None:  # type: ignore[no-untyped-def]
    """Saves the accounts made, many to a save, as a progress bar of `count` accounts."""
    task = progress.add_task(f"seed {count:,} accounts", total=count)
    made = iter(accounts)
    while batch := list(itertools.islice(made, SAVE_BATCH)):
        ledger.save(*batch)
        progress.advance(task, len(batch))
    progress.remove_task(task)


def raw_read_rate(ledger, batch_size: int = 1000) -> tuple[int, float]:
    """Events/s of reading the whole log in batches and decoding every event."""
    started = time.perf_counter()
    position, count = 0, 0
    while notifications := ledger.recorder.select_notifications(position + 1, batch_size):
        for n in notifications:
            ledger.mapper.to_domain_event(n)
        count += len(notifications)
        position = notifications[-1].id
    return count, count / (time.perf_counter() - started)


def rebuild_rate(projector: Projector) -> tuple[float, float]:
    """(events/s, seconds) of rebuilding every read model, in one pass as `crm rebuild` does."""
    collect_garbage_rarely()  # as `crm rebuild` does
    started = time.perf_counter()
    applied = projector.rebuild()
    seconds = time.perf_counter() - started
    return applied / seconds, seconds


def leaderboard_latency(projector: Projector, runs: int = 300) -> dict[str, float]:
    """p50 and p99 of the top 50, of the page after it (read by the first page's cursor, as
    the log stood then), of a page halfway down the leaderboard, and of the top 50 as of an
    instant (an auditor's read; here, the instant the seeding ended), in ms."""
    first, following, halfway, past = [], [], [], []
    instant = datetime.now(UTC)
    with projector.database.read() as conn:
        key = cursor_key(conn)
        middle = _cursor_halfway(conn, key)
    for _ in range(runs):
        started = time.perf_counter()
        with projector.database.read() as conn:
            page = leaderboard(conn, Filters(), 50, key=key)
        first.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        with projector.database.read() as conn:
            after = leaderboard(conn, Filters(), 50, cursor=page.next_cursor, key=key)
        following.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        with projector.database.read() as conn:
            deep = leaderboard(conn, Filters(), 50, cursor=middle, key=key)
        halfway.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        with projector.database.read() as conn:
            then = leaderboard(conn, Filters(), 50, as_of=instant, key=key)
        past.append((time.perf_counter() - started) * 1000)
        assert len(page.rows) == len(after.rows) == len(deep.rows) == len(then.rows) == 50
    return {
        "leaderboard_top50_p50_ms": round(statistics.median(first), 3),
        "leaderboard_top50_p99_ms": round(_p99(first), 3),
        "leaderboard_next50_p50_ms": round(statistics.median(following), 3),
        "leaderboard_next50_p99_ms": round(_p99(following), 3),
        "leaderboard_halfway50_p50_ms": round(statistics.median(halfway), 3),
        "leaderboard_halfway50_p99_ms": round(_p99(halfway), 3),
        "leaderboard_as_of50_p50_ms": round(statistics.median(past), 3),
        "leaderboard_as_of50_p99_ms": round(_p99(past), 3),
    }


def _cursor_halfway(conn, key: bytes) -> str:  # type: ignore[no-untyped-def]
    """The cursor a client paging from the top would hold halfway down the leaderboard (made
    here rather than by reading every page before it)."""
    position = leaderboard(conn, Filters(), 1, key=key).position
    ranked = (
        f"FROM {accounts.table(live_generation(conn, accounts.NAME))} WHERE to_pos IS NULL"
        f" AND score IS NOT NULL AND abm_stage IN {tuple(ACTIVE_STAGES)}"
    )
    (count,) = conn.execute(text(f"SELECT count(*) {ranked}")).one()
    columns = ", ".join(c for c, _ in LEADERBOARD_ORDER)
    order = ", ".join(f"{c} {d}" for c, d in LEADERBOARD_ORDER)
    row = conn.execute(
        text(f"SELECT {columns} {ranked} ORDER BY {order} LIMIT 1 OFFSET {count // 2 - 1}")
    ).one()
    state = {"p": position, "t": None, "f": Filters().fingerprint(), "r": count // 2}
    return encode_cursor(key, {**state, "k": list(row)}, LEADERBOARD_ORDER)


def _p99(timings: list[float]) -> float:
    return sorted(timings)[int(0.99 * len(timings)) - 1]


def store_arguments(description: str) -> argparse.Namespace:
    """The arguments of a script that grows one store through several sizes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--accounts",
        default="10000,100000",
        help="comma-separated sizes, grown in one store (default: %(default)s)",
    )
    parser.add_argument("--postgres", help="a PostgreSQL URL; a fresh schema is used, then dropped")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    args.sizes = sorted(int(s) for s in args.accounts.split(","))
    return args


def bench_settings(postgres: str | None) -> Settings:
    """A fresh store: a schema of its own on PostgreSQL, else a new directory."""
    if postgres:
        return Settings(database_url=postgres, database_schema=f"bench_{secrets.token_hex(4)}")
    return Settings(data_dir=Path(tempfile.mkdtemp(prefix="crm-bench-")))


def print_figures(
    console: Console, table: Table, store: str, figures: list[dict], out: Path | None
) -> None:
    """The table, the machine it ran on, and the figures as JSON when asked."""
    console.print(table)
    console.print(
        f"{platform.node()}: {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    if out:
        out.write_text(json.dumps({"store": store, "figures": figures}, indent=2))


def close_store(ledger, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """Closes the ledger, and drops a PostgreSQL store's schema (a directory is left)."""
    ledger.close()
    if settings.database_url:
        drop_schema(settings.database_url, settings.database_schema)


def main() -> int:
    args = store_arguments(__doc__.splitlines()[0])
    sizes = args.sizes
    console = Console(width=150)
    settings = bench_settings(args.postgres)
    ledger = open_ledger(settings)
    projector = Projector(ledger, open_read_models(settings), listen_url=settings.database_url)
    projector.setup()
    figures = []
    seeded = 0
    with Progress(console=console, transient=True) as progress:
        for size in sizes:
            seed(ledger, seeded, size - seeded, progress)
            seeded = size
            events, raw = raw_read_rate(ledger)
            rebuild, seconds = rebuild_rate(projector)
            figures.append(
                {
                    "accounts": size,
                    "events": events,
                    "raw_read_events_per_s": round(raw),
                    "rebuild_events_per_s": round(rebuild),
                    "rebuild_seconds": round(seconds, 1),
                    "rebuild_to_raw_ratio": round(rebuild / raw, 3),
                    **leaderboard_latency(projector),
                }
            )
    table = Table(title=f"Read models on {settings.store_name}")
    for column in (
        "accounts",
        "events",
        "raw read ev/s",
        "rebuild ev/s",
        "rebuild s",
        "rebuild / raw",
        "top 50 p50 / p99 ms",
        "next 50 p50 / p99 ms",
        "50 halfway p50 / p99 ms",
        "top 50 as_of p50 / p99 ms",
    ):
        table.add_column(column, justify="right")
    for f in figures:
        table.add_row(
            f"{f['accounts']:,}",
            f"{f['events']:,}",
            f"{f['raw_read_events_per_s']:,}",
            f"{f['rebuild_events_per_s']:,}",
            f"{f['rebuild_seconds']:,.1f}",
            f"{f['rebuild_to_raw_ratio']:.3f}",
            f"{f['leaderboard_top50_p50_ms']:.2f} / {f['leaderboard_top50_p99_ms']:.2f}",
            f"{f['leaderboard_next50_p50_ms']:.2f} / {f['leaderboard_next50_p99_ms']:.2f}",
            f"{f['leaderboard_halfway50_p50_ms']:.2f} / {f['leaderboard_halfway50_p99_ms']:.2f}",
            f"{f['leaderboard_as_of50_p50_ms']:.2f} / {f['leaderboard_as_of50_p99_ms']:.2f}",
        )
    print_figures(console, table, settings.store_name, figures, args.json)
    projector.database.dispose()
    close_store(ledger, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
