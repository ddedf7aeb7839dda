"""Bulk import speed: rows per second for a generated target list. A script, not a test.

    uv run python bench/import_rate.py [--rows 100000] [--postgres URL]

Imports the file into a fresh store (every row new), then again (every row unchanged), then
once more through a new ledger, as `crm import` or a restarted server would (nothing of it
cached), and a fourth time through that ledger; prints the rates beside the rate of parsing
and checking the file alone, and what the check of its lock that an import job makes before
each chunk of rows adds to a row of each run.
"""

from __future__ import annotations

import argparse
import platform
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain.ledger import CommandMeta  # noqa: E402
from services.gc_policy import collect_garbage_rarely  # noqa: E402
from services.importing import CHUNK_ROWS, FIELDS, import_rows, parse  # noqa: E402
from services.leadership import Leadership  # noqa: E402
from services.settings import Settings  # noqa: E402
from services.store import drop_schema, open_ledger  # noqa: E402

HEADER = ",".join(FIELDS) + "\n"
FIRST = "first import (all new)"
AGAIN = "second import (all unchanged)"
AGAIN_ELSEWHERE = "third, by a new process (all unchanged, none cached)"
AGAIN_THERE = "fourth, by that process again (all unchanged)"


def target_list(rows: int) -> bytes:
    lines = [HEADER]
    for i in range(rows):
        lines.append(
            f"Company {i},company{i}.example,{('software', 'retail', 'energy')[i % 3]},"
            f"{10 + i % 5000},{1000 * i},EUR,{('DE', 'FR', 'PL')[i % 3]},,{i % 40 / 2},list\n"
        )
    return "".join(lines).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", help="a PostgreSQL URL; a fresh schema is used, then dropped")
    args = parser.parse_args()
    data = target_list(args.rows)
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-import-"))
    settings = Settings(data_dir=workdir)
    if args.postgres:
        settings = Settings(
            data_dir=workdir,
            database_url=args.postgres,
            database_schema=f"bench_{secrets.token_hex(4)}",
        )
    ledger = open_ledger(settings)
    collect_garbage_rarely()  # as `crm import` and `crm serve` do
    console = Console(width=120)
    started = time.perf_counter()
    rejected: list = []
    parse(data, None, rejected.extend)
    assert not rejected, rejected[:3]
    parse_rate = args.rows / (time.perf_counter() - started)
    rates = {}
    try:
        for run in (FIRST, AGAIN, AGAIN_ELSEWHERE, AGAIN_THERE):
            if run == AGAIN_ELSEWHERE:  # as `crm import` or a restarted server: nothing cached
                ledger.close()
                ledger = open_ledger(settings)
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(run, total=args.rows)
                started = time.perf_counter()
                report = import_rows(
                    ledger,
                    data,
                    CommandMeta("bench"),
                    progress=lambda done, total, t=task: progress.update(t, completed=done),
                )
                rates[run] = args.rows / (time.perf_counter() - started)
            assert report.rejected == 0
        check_seconds = lock_check_seconds(settings)
    finally:
        ledger.close()
        if args.postgres:
            drop_schema(args.postgres, settings.database_schema)
    table = Table(title=f"Import of {args.rows:,} rows on {settings.store_name}")
    table.add_column("run")
    table.add_column("rows/s", justify="right")
    table.add_row("parse and check only", f"{parse_rate:,.0f}")
    for run, rate in rates.items():
        table.add_row(run, f"{rate:,.0f}")
    console.print(table)
    shares = ", ".join(
        f"{check_seconds * rate / CHUNK_ROWS:.3%} of a row of the {run}"
        for run, rate in rates.items()
    )
    console.print(
        f"A job's lock check, before each {CHUNK_ROWS} rows: {check_seconds * 1e6:.1f} µs, "
        f"{shares}."
    )
    console.print(
        f"{platform.machine()}, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    return 0


def lock_check_seconds(settings: Settings, checks: int = 20_000) -> float:
    """The time of one check that an import job still holds its lock (made before each chunk)."""
    claim = Leadership(settings, "jobs/bench")
    assert claim.try_acquire()
    try:
        started = time.perf_counter()
        for _ in range(checks):
            claim.held()
        return (time.perf_counter() - started) / checks
    finally:
        claim.release()
        claim.discard()


if __name__ == "__main__":
    sys.exit(main())
