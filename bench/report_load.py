"""Reports under load: C clients asking at once for the same report, which they share, beside
one client asking alone; through `crm serve --no-workers`. A script, not a test.

    uv run python bench/report_load.py [--accounts 100000] [--clients 8] [--seconds 20]
        [--rounds 2] [--postgres URL] [--json OUT]

The accounts are seeded as bench/reports.py seeds them (a year of moves), and the read models
caught up in this process. Then rounds alternate, each asking for the stage report as it
stands now, as fast as it is answered, for --seconds: one client alone, then C clients at once.
An API process makes one report at a time, so without sharing C clients would be answered at
the rate of one; sharing, up to C times that. The figure is reports answered per second in
each, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.projections import bench_settings, close_store, print_figures  # noqa: E402
from bench.reports import seed  # noqa: E402
from bench.write_path import (  # noqa: E402
    Requests,
    Server,
    crm_argv,
    crm_env,
    figures,
    free_port,
    run_load,
)
from services.projector import Projector  # noqa: E402
from services.store import open_ledger, open_read_models  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000, help="default: %(default)s")
    parser.add_argument("--clients", type=int, default=8, help="default: %(default)s")
    parser.add_argument("--seconds", type=float, default=20.0, help="default: %(default)s")
    parser.add_argument("--rounds", type=int, default=2, help="of each kind (default: 2)")
    parser.add_argument("--postgres", help="a PostgreSQL URL; a fresh schema is used, then dropped")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    console = Console(width=150)
    settings = bench_settings(args.postgres)
    ledger = open_ledger(settings)
    projector = Projector(ledger, open_read_models(settings), listen_url=settings.database_url)
    projector.setup()
    now = datetime.now(UTC)
    with Progress(console=console, transient=True) as progress:
        seed(ledger, 0, args.accounts, progress, now)
    projector.catch_up()
    projector.database.dispose()
    port = free_port()
    env = crm_env(settings.data_dir, settings.database_url, settings.database_schema)
    log = Path(tempfile.mkdtemp(prefix="crm-report-load-")) / "api.log"
    api = Server("crm serve --no-workers", [*crm_argv(port), "--no-workers"], env, log, port)
    rows: list[dict[str, Any]] = []
    api.start()
    try:
        api.wait_ready(600)
        stages = Requests("GET", ["/reports/stages"], [None])
        for _ in range(args.rounds):
            for clients in (1, args.clients):
                load = run_load(api.base, stages, clients, 2.0, args.seconds, 1)
                rows.append({"clients": clients} | figures("", settings.store_name, load))
                console.print(f"  {clients} client(s): {rows[-1]['commands_per_s']} reports/s")
    finally:
        api.stop()
        close_store(ledger, settings)

    table = Table(
        title=f"The stage report asked for {args.seconds:g} s at a time, "
        f"{args.accounts:,} accounts on {settings.store_name}"
    )
    for column in ("clients", "reports/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["clients"]),
            f"{row['commands_per_s']:,.1f}",
            f"{row['p50_ms']:,.0f}",
            f"{row['p99_ms']:,.0f}",
            str(row["errors"]),
        )
    rate = {
        clients: statistics.mean(r["commands_per_s"] for r in rows if r["clients"] == clients)
        for clients in (1, args.clients)
    }
    print_figures(console, table, settings.store_name, rows, args.json)
    console.print(f"{args.clients} clients / 1: {rate[args.clients] / rate[1]:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
