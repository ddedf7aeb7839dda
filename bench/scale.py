"""The service at scale: leaderboard latency and requests/s through the API beside a bare
Litestar GET (R1), and the resident memory of `crm serve` (M1), on a store of N accounts.
A script, not a test.

    uv run python bench/scale.py [--accounts 1000000] [--events-per-account 5]
        [--data-dir DIR] [--postgres URL] [--clients 16] [--seconds 10] [--runs 500]
        [--rounds 3] [--memory-seconds 120] [--json OUT]

1. N accounts are seeded through the domain in bulk (bench/projections.py: registered,
   screened, rated, moved to "prioritized", then re-rated until each has E events), and the
   read models are rebuilt in this process, as `crm rebuild` does (its time is printed).
   With --data-dir an existing SQLite store that already holds them is used as it is, and
   kept.
2. The bare endpoint (bench/bare_endpoint.py, `GET /leaderboards/bant` answering a fixed page of
   50 entries) and `crm serve --no-workers` (the API as a read replica runs it) run side by
   side on free loopback ports, and take load one at a time, in alternate rounds: the bare
   endpoint, the API, the bare endpoint, … --rounds times the API, and the bare endpoint last.
   Each API round's ratio is to the mean of the bare rounds on either side of it; the figure
   is the round of the lower median ratio (every round's is printed too). For each: one
   client on one keep-alive connection asks for the top 50 --runs times in a row (the latency
   inside the service, plus a loopback round trip), then C clients ask as fast as they can
   for a fixed window (requests/s). The API then takes BANT re-ratings of random accounts
   from C clients for the same window (which fills its account cache); its resident memory
   (RSS) is read after start, reads and writes.
3. `crm serve` with its workers, as `make run` starts it, on the same store: its projector
   catches up with those writes and its publisher starts on the whole log (its embedded
   broker is new). Its RSS (the API process's, its projector's and its publisher's together)
   is sampled every half second for --memory-seconds, with reads meanwhile; the peak is
   reported, the embedded nats-server's apart.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.projections import seed  # noqa: E402
from bench.write_path import (  # noqa: E402
    ROOT,
    Requests,
    Server,
    bant_ratings,
    crm_argv,
    crm_env,
    figures,
    free_port,
    run_load,
)
from domain.account import account_id_for  # noqa: E402
from services.gc_policy import collect_garbage_rarely  # noqa: E402
from services.projector import Projector  # noqa: E402
from services.settings import Settings  # noqa: E402
from services.store import drop_schema, open_ledger, open_read_models  # noqa: E402

TOP_50 = "/leaderboards/bant?limit=50"


def prepare(settings: Settings, accounts: int, events_per_account: int, console: Console) -> dict:
    ledger = open_ledger(settings)
    projector = Projector(ledger, open_read_models(settings), listen_url=settings.database_url)
    projector.setup()
    figures: dict[str, Any] = {}
    with Progress(console=console, transient=True) as progress:
        started = time.perf_counter()
        seed(ledger, 0, accounts, progress, re_ratings=max(0, events_per_account - 4))
        figures["seed_s"] = round(time.perf_counter() - started, 1)
    console.print(f"  seeded {accounts:,} accounts in {figures['seed_s']:,} s; rebuilding …")
    collect_garbage_rarely()  # as `crm rebuild` does
    started = time.perf_counter()
    events = projector.rebuild()  # every read model, as `crm rebuild` does
    seconds = time.perf_counter() - started
    figures["events"] = events
    figures["rebuild_s"] = round(seconds, 1)
    figures["rebuild_events_per_s"] = round(events / seconds)
    console.print(
        f"  read models rebuilt from {events:,} events in {seconds:,.1f} s "
        f"({events / seconds:,.0f} events/s)"
    )
    projector.database.dispose()
    ledger.close()
    # The store's new gigabytes go to disk now, not while the reads are measured (the bare
    # GET of a million-account run went at half the rate of the smaller runs' before).
    os.sync()
    return figures


def sequential_latency(port: int, path: str, runs: int) -> tuple[float, float]:
    """(p50, p99) in ms of `runs` GETs in a row on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    timings = []
    try:
        for _ in range(runs + 20):  # the first 20 warm up
            started = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            timings.append((time.perf_counter() - started) * 1000)
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status} {body[:300]!r}")
    finally:
        conn.close()
    timings = sorted(timings[20:])
    return statistics.median(timings), timings[max(0, int(0.99 * len(timings)) - 1)]


def rss_mb(pid: int) -> tuple[float, float]:
    """(MB resident of the CRM's processes, MB of its embedded nats-server): the process and
    its Python children (the projector and the publisher of `crm serve`) against the broker,
    which is not ours."""
    proc = psutil.Process(pid)
    children = proc.children(recursive=True)
    broker = sum(c.memory_info().rss for c in children if c.name() == "nats-server")
    ours = proc.memory_info().rss + sum(
        c.memory_info().rss for c in children if c.name() != "nats-server"
    )
    return round(ours / 2**20, 1), round(broker / 2**20, 1)


def measure_reads(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    p50, p99 = sequential_latency(server.port, TOP_50, args.runs)
    load = run_load(
        server.base, Requests("GET", [TOP_50], [None]), args.clients, 2.0, args.seconds, 1
    )
    row = figures(server.name, None, load)
    return {
        "top50_p50_ms": round(p50, 3),
        "top50_p99_ms": round(p99, 3),
        "requests_per_s": row["commands_per_s"],
        "load_p99_ms": row["p99_ms"],
        "errors": row["errors"],
    }


def read_figures(bare_rounds: list[dict], crm_rounds: list[dict]) -> dict[str, Any]:
    """The API's round of the lower median ratio to the bare rounds on either side of it (each
    API round lies between two), with that ratio and the bare figures beside it; and every
    round's requests/s and ratio."""
    ratios = [
        crm["requests_per_s"] / ((before["requests_per_s"] + after["requests_per_s"]) / 2)
        for crm, before, after in zip(crm_rounds, bare_rounds, bare_rounds[1:], strict=False)
    ]
    median = sorted(range(len(ratios)), key=ratios.__getitem__)[(len(ratios) - 1) // 2]
    before, after = bare_rounds[median], bare_rounds[median + 1]
    return {
        "crm": crm_rounds[median]
        | {"requests_per_s_rounds": [crm["requests_per_s"] for crm in crm_rounds]},
        "bare": {key: round((before[key] + after[key]) / 2, 3) for key in before}
        | {"requests_per_s_rounds": [bare["requests_per_s"] for bare in bare_rounds]},
        "read_ratio": round(ratios[median], 3),
        "read_ratio_rounds": [round(ratio, 3) for ratio in ratios],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000, help="default: %(default)s")
    parser.add_argument("--events-per-account", type=int, default=5, help="default: %(default)s")
    parser.add_argument("--data-dir", type=Path, help="an already seeded SQLite store to use")
    parser.add_argument("--postgres", help="a PostgreSQL URL; a fresh schema is used, then dropped")
    parser.add_argument("--clients", type=int, default=16, help="default: %(default)s")
    parser.add_argument("--seconds", type=float, default=10.0, help="default: %(default)s")
    parser.add_argument("--runs", type=int, default=500, help="sequential GETs (default: 500)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of reads through the API, each between two of the bare GET (default: 3)",
    )
    parser.add_argument(
        "--memory-seconds",
        type=float,
        default=120.0,
        help="how long to watch the memory of crm serve with its workers (default: 120)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    console = Console(width=150)
    schema = None
    if args.postgres:
        schema = f"bench_{secrets.token_hex(4)}"
        settings = Settings(database_url=args.postgres, database_schema=schema)
    else:
        settings = Settings(data_dir=args.data_dir or Path(tempfile.mkdtemp(prefix="crm-scale-")))
    result: dict[str, Any] = {
        "store": settings.store_name,
        "accounts": args.accounts,
        "events_per_account": args.events_per_account,
    }
    work = Path(tempfile.mkdtemp(prefix="crm-scale-logs-"))
    try:
        if args.data_dir is None:
            console.print(f"[bold]{settings.store_name}[/]: seeding {args.accounts:,} accounts")
            result["prepare"] = prepare(settings, args.accounts, args.events_per_account, console)

        port = free_port()
        bare = Server(
            "bare GET",
            [sys.executable, str(ROOT / "bench" / "bare_endpoint.py"), "--port", str(port)],
            dict(crm_env(settings.data_dir, None, None)),
            work / "bare.log",
            port,
        )

        def crm_server(log_name: str, *extra: str) -> Server:
            port = free_port()
            argv = [*crm_argv(port), *extra]
            env = crm_env(settings.data_dir, args.postgres, schema)
            return Server(" ".join(["crm serve", *extra]), argv, env, work / log_name, port)

        # The bare GET runs beside the API, in rounds alternated with the API's (bare, API,
        # bare, …, bare): each API round is set against the bare rounds right before and after
        # it, figures of the same minute on a machine whose speed drifts, and the lower median
        # of the rounds' ratios is the figure, so no one round disturbed by something else on
        # the machine decides it either way.
        api = crm_server("api.log", "--no-workers")
        bare.start()
        api.start()
        try:
            bare.wait_ready(30)
            result["api_ready_s"] = round(api.wait_ready(600), 1)
            assert api.process is not None
            memory = {"after_start": rss_mb(api.process.pid)[0]}
            bare_rounds, crm_rounds = [measure_reads(bare, args)], []
            for _ in range(args.rounds):
                crm_rounds.append(measure_reads(api, args))
                bare_rounds.append(measure_reads(bare, args))
            result.update(read_figures(bare_rounds, crm_rounds))
            console.print(f"  bare: {result['bare']}")
            memory["after_reads"] = rss_mb(api.process.pid)[0]
            rng = random.Random(7)
            sample = rng.sample(range(args.accounts), min(args.accounts, 20_000))
            ids = [str(account_id_for(f"company{i}.example")) for i in sample]
            writes = run_load(api.base, bant_ratings(ids), args.clients, 2.0, args.seconds, 1)
            result["api_writes"] = figures(api.name, settings.store_name, writes)
            memory["after_writes"] = rss_mb(api.process.pid)[0]
            result["api_rss_mb"] = memory
        finally:
            api.stop()
            bare.stop()

        # The whole service, as `make run` starts it: its projector catches up with the writes
        # above and its publisher starts on the whole log (the embedded broker is new).
        crm = crm_server("crm.log")
        crm.start()
        try:
            result["crm_ready_s"] = round(crm.wait_ready(600), 1)
            assert crm.process is not None
            peak, broker_peak = 0.0, 0.0
            deadline = time.monotonic() + args.memory_seconds
            while time.monotonic() < deadline:
                ours, broker = rss_mb(crm.process.pid)
                peak, broker_peak = max(peak, ours), max(broker_peak, broker)
                sequential_latency(crm.port, TOP_50, 20)  # and some reads meanwhile
                time.sleep(0.5)
            status = crm.get_json("/status")
            result["crm_serve"] = {
                "rss_peak_mb": peak,
                "nats_server_rss_peak_mb": broker_peak,
                "seconds_watched": args.memory_seconds,
                "published_position": (status.get("publisher") or {}).get("published_position"),
                "log_position": status.get("log_position"),
            }
        finally:
            crm.stop()
        console.print(f"  crm serve --no-workers: {result['crm']}")
        console.print(f"  crm serve --no-workers resident MB: {result['api_rss_mb']}")
        console.print(f"  crm serve (with workers): {result['crm_serve']}")
        console.print(
            f"  requests/s {result['crm']['requests_per_s']:,} = {result['read_ratio']}× "
            f"the bare GET ({result['bare']['requests_per_s']:,}); "
            f"top-50 p99 {result['crm']['top50_p99_ms']} ms; "
            f"the rounds' ratios {result['read_ratio_rounds']}"
        )
        console.print(
            f"{platform.node()}: Python {platform.python_version()}, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        )
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        if args.postgres and schema:
            drop_schema(args.postgres, schema)
        elif args.data_dir is None:
            shutil.rmtree(settings.data_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
