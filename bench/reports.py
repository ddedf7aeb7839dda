"""Report speed: the stage and funnel reports beside the raw read of the moves they count (the
same rows of the `transitions` read model, in the same order, fetched and dropped), at several
sizes, and the most memory a report held at once. A script, not a test.

    uv run python bench/reports.py --accounts 10000,100000 [--postgres URL] [--json OUT]

Accounts are seeded through the domain in bulk, their events a few hours to a month apart
over the year before the run, so that the reports' windows, periods and visits hold real
spreads: every account is registered, screened and rated (prioritized); three in four reach
outreach, half warm_up, and of those half are won and a quarter lost; the funnel follows.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.projections import (  # noqa: E402
    bench_settings,
    close_store,
    firmographics,
    print_figures,
    save_in_batches,
    store_arguments,
)
from domain.account import Account, Attribution, BantRating  # noqa: E402
from domain.vocabulary import FunnelState, Reaction, ScreeningOutcome  # noqa: E402
from projections import transitions  # noqa: E402
from projections.generations import live_generation  # noqa: E402
from projections.reports import Window, moves, report  # noqa: E402
from services.gc_policy import collect_garbage_rarely  # noqa: E402
from services.projector import Projector  # noqa: E402
from services.store import open_ledger, open_read_models  # noqa: E402

RUNS = 5


def seed(ledger, start: int, count: int, progress: Progress, now: datetime) -> None:  # type: ignore[no-untyped-def]
    """Accounts start…start+count-1 and their way through the stages, as described above."""
    rng = random.Random(start)

    def account(i: int) -> Account:
        at = now - timedelta(days=365) + timedelta(seconds=rng.uniform(0, 300 * 86400))

        def by(hours: float, reason: str | None = None) -> Attribution:
            nonlocal at
            at += timedelta(hours=hours)
            return Attribution("bench", at, reason)

        account = Account.register(firmographics(i, rng), by(0))
        account.screen(ScreeningOutcome.QUALIFIED, ["industry"], None, by(rng.uniform(1, 48)))
        rating = BantRating(*(rng.randint(1, 5) for _ in range(4)))
        account.score_bant(rating, by(rng.uniform(1, 96)))
        way = rng.random()
        if way < 0.75:
            account.send_material("deck", "email", None, by(rng.uniform(24, 240)))
            account.move_funnel(FunnelState.THINK, by(rng.uniform(1, 72)))
        if way < 0.5:
            account.receive_response(Reaction.POSITIVE, None, by(rng.uniform(24, 480)))
            account.move_funnel(FunnelState.DO, by(rng.uniform(1, 72)))
            if way < 0.25:
                account.win_deal(None, None, by(rng.uniform(24, 720)))
                account.move_funnel(FunnelState.CARE, by(rng.uniform(1, 72)))
            elif way < 0.375:
                account.lose_deal(by(rng.uniform(24, 720), "budget cut"))
        return account

    save_in_batches(ledger, map(account, range(start, start + count)), count, progress)


def raw_read_ms(projector: Projector, kind: str, as_of: datetime) -> float:
    """The baseline: reading the moves a report counts, in its order, and nothing else."""
    started = time.perf_counter()
    with projector.database.read() as conn:
        for _ in moves(conn, live_generation(conn, transitions.NAME), kind, as_of):
            pass
    return (time.perf_counter() - started) * 1000


def report_ms(projector: Projector, kind: str, window: Window) -> float:
    started = time.perf_counter()
    with projector.database.read() as conn:
        figures = report(conn, kind, window)
    assert figures["groups"], "a report over seeded accounts shows them"
    return (time.perf_counter() - started) * 1000


def report_peak_mb(projector: Projector, kind: str, window: Window) -> float:
    """The most memory one report held at once (Python's allocations, traced: slower, so
    measured in a run of its own)."""
    tracemalloc.start()
    try:
        with projector.database.read() as conn:
            report(conn, kind, window)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> int:
    args = store_arguments(__doc__.splitlines()[0])
    console = Console(width=150)
    settings = bench_settings(args.postgres)
    ledger = open_ledger(settings)
    projector = Projector(ledger, open_read_models(settings), listen_url=settings.database_url)
    projector.setup()
    collect_garbage_rarely()  # as `crm serve` does
    now = datetime.now(UTC)
    year = Window(now - timedelta(days=365), now, now, "month")
    figures, seeded = [], 0
    with Progress(console=console, transient=True) as progress:
        for size in args.sizes:
            seed(ledger, seeded, size - seeded, progress, now)
            seeded = size
            projector.catch_up()
            row = {"accounts": size}
            for kind in (transitions.STAGE, transitions.FUNNEL):
                for name, window in (("", year), ("_by_industry", _grouped(year))):
                    raw = [raw_read_ms(projector, kind, now) for _ in range(RUNS)]
                    made = [report_ms(projector, kind, window) for _ in range(RUNS)]
                    row[f"{kind}{name}_ms"] = round(statistics.median(made), 1)
                    row[f"{kind}{name}_raw_read_ms"] = round(statistics.median(raw), 1)
                    row[f"{kind}{name}_peak_mb"] = round(report_peak_mb(projector, kind, window), 1)
            figures.append(row)
    table = Table(title=f"Reports over the year before, on {settings.store_name} (p50 of {RUNS})")
    columns = ("accounts", "report", "raw read ms", "report ms", "report / raw", "report's peak MB")
    for column in columns:
        table.add_column(column, justify="right")
    for f in figures:
        for kind in (transitions.STAGE, transitions.FUNNEL):
            for name, label in (("", ""), ("_by_industry", ", by industry")):
                raw, made = f[f"{kind}{name}_raw_read_ms"], f[f"{kind}{name}_ms"]
                table.add_row(
                    f"{f['accounts']:,}",
                    f"{kind}{label}",
                    f"{raw:,.1f}",
                    f"{made:,.1f}",
                    f"{made / raw:.2f}",
                    f"{f[f'{kind}{name}_peak_mb']:,.1f}",
                )
    print_figures(console, table, settings.store_name, figures, args.json)
    projector.database.dispose()
    close_store(ledger, settings)
    return 0


def _grouped(window: Window) -> Window:
    return Window(window.start, window.end, window.as_of, window.period, "industry")


if __name__ == "__main__":
    sys.exit(main())
