"""Runs every benchmark against its target and rewrites the summary at the top of BENCHMARKS.md.
What `make bench` runs. A script, not a test.

    uv run python bench/targets.py [--postgres URL] [--sizes 10000,100000]
        [--scale-sizes 10000,100000,1000000] [--pg-scale-size 1000000] [--no-write]

Each script runs as its own process, one after another, and leaves its figures as JSON; this
script reads them, prints the summary and puts it between the markers in BENCHMARKS.md (the
dated sections below the summary keep the notes of earlier runs). PostgreSQL comes from
--postgres or CRM_BENCH_DATABASE_URL, else a private server is started with `pgserver`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- targets:start -->", "<!-- targets:end -->"


def run(script: str, out: Path, *args: str) -> Any:
    print(f"running bench/{script} {' '.join(args)}", flush=True)
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--json", str(out), *args],
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.read_text())


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "not met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("CRM_BENCH_DATABASE_URL"))
    parser.add_argument(
        "--sizes", default="10000,100000", help="accounts for the read-model figures"
    )
    parser.add_argument(
        "--pg-sizes",
        default="10000,100000,250000",
        help="accounts for the read-model figures on PostgreSQL (250,000: a million events)",
    )
    parser.add_argument(
        "--scale-sizes",
        default="10000,100000,1000000",
        help="accounts for the service figures (R1, M1, growth), each in a fresh SQLite store",
    )
    parser.add_argument(
        "--pg-scale-size",
        type=int,
        default=1_000_000,
        help="accounts for the service figures (R1, M1) on PostgreSQL; 0: none (default: 1M)",
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not touch the file")
    args = parser.parse_args()
    server = None
    url = args.postgres
    if url is None:
        import pgserver

        server = pgserver.get_server(tempfile.mkdtemp(prefix="crm-bench-pg-"), cleanup_mode="stop")
        url = server.get_uri()
    work = Path(tempfile.mkdtemp(prefix="crm-targets-"))
    scale_pg = None
    try:
        write = run(
            "write_path.py",
            work / "w1.json",
            "--postgres",
            url,
            "--split",
            "--paused-workers",
            "--accounts",
            "10000",
        )
        latency = run("command_latency.py", work / "w2.json", "--postgres", url)
        reads = {
            store: run("projections.py", work / f"r-{store}.json", "--accounts", sizes, *extra)
            for store, sizes, extra in (
                ("sqlite", args.sizes, ()),
                ("postgresql", args.pg_sizes, ("--postgres", url)),
            )
        }
        w1: dict[str, float] = {}  # the highest sustained rate of each store, either way run
        for r in write["results"]:
            if r["store"] and not r["store"].startswith("floor-") and "-paused" not in r["store"]:
                store = r["store"].removesuffix("-split")
                w1[store] = max(w1.get(store, 0.0), r["commands_per_s"])
        publish = {
            store: run("publish.py", work / f"p-{store}.json", "--rate", str(w1[store]), *extra)
            for store, extra in (("sqlite", ()), ("postgresql", ("--postgres", url)))
        }
        sizes = sorted(int(n) for n in args.scale_sizes.split(","))
        scale = [
            run(
                "scale.py",
                work / f"s-{n}.json",
                "--accounts",
                str(n),
                "--memory-seconds",
                "120" if n == sizes[-1] else "10",
            )
            for n in sizes
        ]
        if args.pg_scale_size:
            scale_pg = run(
                "scale.py",
                work / "s-pg.json",
                "--postgres",
                url,
                "--accounts",
                str(args.pg_scale_size),
                "--memory-seconds",
                "30",
            )
    finally:
        if server is not None:
            server.cleanup()
    summary = render(write, latency, reads, publish, scale, scale_pg)
    print(summary)
    if not args.no_write:
        path = ROOT / "BENCHMARKS.md"
        text = path.read_text()
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        path.write_text(f"{head}{START}\n{summary}\n{END}{tail}")
        print(f"summary written to {path}")
    return 0


def render(
    write: Any, latency: Any, reads: Any, publish: Any, scale: list[Any], scale_pg: Any | None
) -> str:
    rows = {r["store"] or "bare": r for r in write["results"]}
    lines = [
        f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} CPUs "
        f"({platform.machine()}), Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}, PostgreSQL {write['machine'].get('postgresql') or '?'}.",
        "",
        "| id | store | figure | target | verdict |",
        "|---|---|---|---|---|",
    ]
    for store in ("sqlite", "postgresql", "sqlite-split", "postgresql-split"):
        row = rows.get(store)
        if row is None:
            continue
        ratio, bare = row["ratio_to_bare"], row["bare_commands_per_s"]
        label = store.replace("-split", ", separate processes")
        lines.append(
            f"| W1 | {label} | {row['commands_per_s']:,.0f} commands/s = {ratio:.3f}× the bare "
            f"endpoint beside it ({bare:,.0f}/s); p99 {row['p99_ms']:,.0f} ms | "
            f"≥ 0.5×, p99 < 100 ms | {verdict(ratio >= 0.5 and row['p99_ms'] < 100)} |"
        )
    # Rows that show what bounds W1, beside it: no target of their own.
    bounds = (
        (
            "W1 floor",
            "floor-{}",
            "the bare endpoint committing each re-rating before it answers",
            "what durability alone costs",
        ),
        (
            "W1 bound",
            "{}-paused",
            "`crm serve` with its projector and publisher paused during "
            "the load (the API process alone)",
            "what the API alone reaches",
        ),
    )
    for kind, key, what, why in bounds:
        for store in ("sqlite", "postgresql"):
            if (row := rows.get(key.format(store))) is not None:
                lines.append(
                    f"| {kind} | {store} | {what}: {row['commands_per_s']:,.0f}/s = "
                    f"{row['ratio_to_bare']:.3f}× the bare endpoint beside it; p99 "
                    f"{row['p99_ms']:,.0f} ms | ({why}) | - |"
                )
    for r in latency["results"]:
        if r["cache"]:
            lines.append(
                f"| W2 | {r['store']} | p50 {r['long_p50']:.2f} ms at {latency['long_events']:,} "
                f"events, {r['short_p50']:.2f} ms at 10: {r['ratio_p50']:.2f}× | ≤ 1.5× | "
                f"{verdict(r['ratio_p50'] <= 1.5)} |"
            )
    for store, result in reads.items():
        largest = result["figures"][-1]
        lines.append(
            f"| R1 | {store}, query | top 50 p99 {largest['leaderboard_top50_p99_ms']:.2f} ms at "
            f"{largest['accounts']:,} accounts | p99 < 10 ms at 1,000,000 | "
            f"{verdict(largest['leaderboard_top50_p99_ms'] < 10) if largest['accounts'] >= 10**6 else 'n/a (smaller run)'} |"  # noqa: E501
        )
        ok = largest["rebuild_to_raw_ratio"] >= 0.25
        timed = ""
        if store == "postgresql" and largest["events"] >= 10**6:
            ok = ok and largest["rebuild_seconds"] < 60
            timed = f", {largest['rebuild_seconds']:,.0f} s"
        lines.append(
            f"| R2 | {store} | rebuild of every read model / raw read "
            f"{largest['rebuild_to_raw_ratio']:.3f} at {largest['events']:,} events{timed} | "
            f"≥ 0.25; 1M events < 60 s on PostgreSQL | {verdict(ok)} |"
        )
    for store, p in publish.items():
        ratio = p["publish_rate"] / p["paced_at"]
        ok = ratio >= 1.5 and p["lag_p99_ms"] < 250
        lines.append(
            f"| P1 | {store} | publishes {p['publish_rate']:,.0f} events/s = {ratio:.2f}× the "
            f"W1 rate ({p['paced_at']:,.0f} commands/s; {p['publish_to_command_rate']:.2f}× the "
            f"ledger's own {p['command_rate']:,.0f}/s without HTTP); commit → ack p99 "
            f"{p['lag_p99_ms']:,.0f} ms with commands at the W1 rate | ≥ 1.5×, p99 < 250 ms | "
            f"{verdict(ok)} |"
        )
    for store in ("sqlite", "postgresql"):
        lag = (rows.get(store) or {}).get("after_load", {}).get("publisher_lag_ms")
        if lag is not None:
            lines.append(
                f"| P1 | {store}, `crm serve` | commit → ack of the W1 load's events as "
                f"`crm serve`'s publisher process publishes them: p50 ≤ "
                f"{lag['p50_at_most']:,.0f} ms, p99 ≤ {lag['p99_at_most']:,.0f} ms, "
                f"{lag['within_250_ms']:.1%} within 250 ms | p99 < 250 ms | "
                f"{verdict(lag['within_250_ms'] >= 0.99)} |"
            )
    for big in (scale[-1], scale_pg):
        if big is None:
            continue
        at_scale = big["accounts"] >= 10**6
        api = big["crm"]
        lines.append(
            f"| R1 | {big['store']}, service | top 50 p99 {api['top50_p99_ms']:.2f} ms through "
            f"`crm serve --no-workers` at {big['accounts']:,} accounts; "
            f"{api['requests_per_s']:,.0f} requests/s = {big['read_ratio']:.3f}× a bare GET "
            f"({big['bare']['requests_per_s']:,.0f}/s), the lower median of "
            f"{', '.join(f'{r:.3f}×' for r in big['read_ratio_rounds'])} | p99 < 10 ms, ≥ 0.6× | "
            f"{verdict(api['top50_p99_ms'] < 10 and big['read_ratio'] >= 0.6) if at_scale else 'n/a (smaller run)'} |"  # noqa: E501
        )
        events = big["accounts"] * big["events_per_account"]
        peak = big["crm_serve"]["rss_peak_mb"]
        lines.append(
            f"| M1 | {big['store']} | `crm serve` peak {peak:,.0f} MB (with its projector and "
            f"publisher) at {big['accounts']:,} accounts / {events:,} events (its nats-server "
            f"{big['crm_serve']['nats_server_rss_peak_mb']:,.0f} MB apart); `--no-workers` "
            f"{max(big['api_rss_mb'].values()):,.0f} MB | < 300 MB | "
            f"{verdict(peak < 300) if at_scale else 'n/a (smaller run)'} |"
        )
    lines += ["", "How the service figures grow with size (SQLite, each size a fresh store):", ""]
    lines += [
        "| accounts | events | rebuild s (ev/s) | top 50 p50 / p99 ms | "
        "re-rating p50 / p99 ms (16 clients) | `crm serve` peak MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in scale:
        prepared = r.get("prepare", {})
        lines.append(
            f"| {r['accounts']:,} | {prepared.get('events', 0):,} | "
            f"{prepared.get('rebuild_s', 0):,.1f} ({prepared.get('rebuild_events_per_s', 0):,}) | "
            f"{r['crm']['top50_p50_ms']:.2f} / {r['crm']['top50_p99_ms']:.2f} | "
            f"{r['api_writes']['p50_ms']:.1f} / {r['api_writes']['p99_ms']:.1f} | "
            f"{r['crm_serve']['rss_peak_mb']:,.0f} |"
        )
    lines += ["", "How the read-model figures grow with size:", ""]
    lines += [
        "| store | accounts | events | top 50 p50 / p99 ms | next 50 (by cursor) p50 / p99 ms "
        "| 50 halfway down p50 / p99 ms | top 50 as_of p50 / p99 ms | rebuild ev/s | rebuild s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for store, result in reads.items():
        for f in result["figures"]:
            lines.append(
                f"| {store} | {f['accounts']:,} | {f['events']:,} | "
                f"{f['leaderboard_top50_p50_ms']:.2f} / {f['leaderboard_top50_p99_ms']:.2f} | "
                f"{f['leaderboard_next50_p50_ms']:.2f} / {f['leaderboard_next50_p99_ms']:.2f} | "
                f"{f['leaderboard_halfway50_p50_ms']:.2f} / "
                f"{f['leaderboard_halfway50_p99_ms']:.2f} | "
                f"{f['leaderboard_as_of50_p50_ms']:.2f} / {f['leaderboard_as_of50_p99_ms']:.2f} | "
                f"{f['rebuild_events_per_s']:,} | {f['rebuild_seconds']:,.1f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
