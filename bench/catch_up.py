"""One read model at a time: each rebuilt alone (`crm rebuild NAME`), and the jobs read model
filled from the first event as the first start after the release that adds it fills it, beside
the raw rate of reading and decoding the same log. A script, not a test.

    uv run python bench/catch_up.py [--accounts 250000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from bench.projections import bench_settings, close_store, raw_read_rate, seed  # noqa: E402
from projections import jobs  # noqa: E402
from projections.generations import live_generation  # noqa: E402
from services.gc_policy import collect_garbage_rarely  # noqa: E402
from services.projector import Projector  # noqa: E402
from services.store import open_ledger, open_read_models  # noqa: E402


def without_jobs_read_model(projector: Projector) -> None:
    """The read models' database as a release without the jobs read model left it."""
    with projector.database.write() as conn:
        gen = live_generation(conn, jobs.NAME)
        assert gen is not None
        jobs.drop_tables(conn, gen)
        conn.execute(text("DELETE FROM rm_generations WHERE name = :n"), {"n": jobs.NAME})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=250_000, help="default: %(default)s")
    parser.add_argument("--postgres", help="a PostgreSQL URL; a fresh schema is used, then dropped")
    args = parser.parse_args()
    console = Console(width=120)
    settings = bench_settings(args.postgres)
    ledger = open_ledger(settings)
    projector = Projector(ledger, open_read_models(settings), listen_url=settings.database_url)
    projector.setup()
    with Progress(console=console, transient=True) as progress:
        seed(ledger, 0, args.accounts, progress)
    collect_garbage_rarely()  # as `crm serve` and `crm rebuild` do
    projector.catch_up()
    events, raw = raw_read_rate(ledger)
    timed: list[tuple[str, float]] = []
    for name in projector.read_models:
        started = time.perf_counter()
        projector.rebuild(name)
        timed.append((f"rebuild {name} alone", time.perf_counter() - started))
    without_jobs_read_model(projector)
    upgraded = Projector(ledger, projector.database, listen_url=settings.database_url)
    started = time.perf_counter()
    upgraded.setup()
    upgraded.catch_up()
    timed.append(("jobs, new, filled at first start", time.perf_counter() - started))
    table = Table(title=f"One read model at a time, {events:,} events on {settings.store_name}")
    for column in ("what", "seconds", "events/s", "/ raw read"):
        table.add_column(column, justify="right")
    table.add_row("raw read and decode", f"{events / raw:.1f}", f"{raw:,.0f}", "1.00")
    for what, seconds in timed:
        rate = events / seconds
        table.add_row(what, f"{seconds:.1f}", f"{rate:,.0f}", f"{rate / raw:.2f}")
    console.print(table)
    projector.database.dispose()
    close_store(ledger, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
