"""Write-path speed: BANT re-ratings per second through `crm serve`, beside a bare endpoint.

The bare endpoint only decodes the same body. A script, not a test.

    .venv/bin/python bench/write_path.py [--accounts 1000] [--clients 64] [--seconds 10]
        [--postgres URL] [--client-processes 1] [--json OUT]

Each target is a subprocess on a free loopback port:

* the bare endpoint (bench/bare_endpoint.py): strict msgspec decode into `ScoreBant`, a small
  JSON answer, nothing stored; uvicorn with loop uvloop, http httptools, log level warning. It
  runs for the whole script and is measured right before and right after each CRM target: a
  CRM target's ratio is to the mean of those two rounds, since the load of a shared machine
  drifts from one minute to the next;
* `python -m services.cli serve` on a fresh SQLite file (a temporary CRM_DATA_DIR), with its
  projector, publisher and embedded nats-server, as deployed;
* the same on PostgreSQL, in a fresh schema bench_<random> that is dropped afterwards, when
  --postgres URL (or CRM_BENCH_DATABASE_URL) is given;
* the durable floor on each store (bench/bare_endpoint.py --sqlite/--postgres): the bare
  endpoint committing every re-rating as a row, many to a transaction, before it answers.
  Measured between two bare rounds like a CRM target, it shows how much of the CRM's distance
  from the bare endpoint durability itself accounts for.
* with --paused-workers, `crm serve` on each store again, its projector and publisher processes
  paused (SIGSTOP) during the load and resumed after it: what the API process alone reaches
  with the CPUs to itself, a bound on W1 with the API as it is, not a way to run the CRM.

The CRM targets run one after another; only the one measured (or the bare endpoint, idle
meanwhile) takes load.

For a CRM, N accounts are registered and screened "qualified" through the HTTP API first, and
the read models and publisher are let catch up. Then C clients on keep-alive connections (one
aiohttp session, connector limit C) send `PUT /accounts/{id}/bant` with random ratings to random
seeded accounts, without If-Match: a 2 s warm-up, then a fixed measured window. Commands/s and
latencies count the 2xx answers completed inside the window; every other answer is an error.
When the load stops, the script reads how far the read models and the publisher are behind
and how long they take to catch up, and, from `crm_publish_lag_seconds` in /metrics before and
after, the commit → ack lag of the load's events as `crm serve` publishes them (P1's bound, in
the process arrangement users run).
On a 2-core machine the load generator competes with the server for CPU, so it is kept lean
(uvloop, bodies and URLs prepared beforehand) and the ratio to the bare endpoint, measured in
the same run under the same handicap, is the figure to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import multiprocessing as mp
import os
import platform
import random
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import psutil
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.store import drop_schema  # noqa: E402

INDUSTRIES = ["software", "manufacturing", "retail", "logistics", "energy"]
COUNTRIES = ["DE", "FR", "NL", "PL", "SE"]
JSON_HEADERS = {"Content-Type": "application/json"}
# A warning or worse in the server's log, in the JSON or the text format.
COMPLAINTS = ('"level":"warning"', '"level":"error"', '"level":"critical"', " WARNING ", " ERROR ")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# Servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("wb")
        try:
            # A session of its own: Ctrl-C reaches only this script, which then stops the server
            # (and, through its process group, the processes of a split run) itself.
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def wait_ready(self, timeout: float) -> float:
        """Polls GET /health until it answers 200; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with _NO_PROXY.open(f"{self.base}/health", timeout=1) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} did not answer /health within {timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def get_json(self, path: str) -> Any:
        with _NO_PROXY.open(f"{self.base}{path}", timeout=5) as resp:
            return json.loads(resp.read())

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, a bounded wait, then SIGKILL to the server's process group."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Whatever the server left behind in its group: a split run's workers and broker
        # (crm serve's own nats-server, in a group of its own, stops when crm serve does).
        _signal_group(proc.pid, signal.SIGKILL)
        self.process = None


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def cpu_busy(seconds: float) -> float | None:
    """The fraction of all CPUs busy over `seconds`, from /proc/stat (None where there is none)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def _process_cpu() -> dict[int, tuple[int, int, int, str, int]]:
    """pid -> (CPU jiffies, ppid, process group, name, start time) of every process."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[1] ppid, fields[2] pgrp, [11] utime, [12] stime, [13] cutime, [14] cstime,
        # [19] start time (a pid's identity; a kernel worker's name changes with its work).
        # The children's times count the work of processes that came and went meanwhile.
        found[int(entry.name)] = (
            sum(int(v) for v in fields[11:15]),
            int(fields[1]),
            int(fields[2]),
            name,
            int(fields[19]),
        )
    return found


def _server_part(pid: int, name: str) -> str | None:
    """Which of the CRM's processes: `serve`, `project`, `publish`, or its nats-server."""
    if name == "nats-server":
        return name
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    for part in (b"serve", b"project", b"publish"):
        if part in argv:
            return part.decode()
    return None


class ForeignCpu:
    """CPU that processes other than this benchmark's used meanwhile, as a share of the machine.

    Ours: this process and its descendants (client processes), the server's process group and
    its children (the embedded nats-server has a group of its own), PostgreSQL's backends
    (which serve the CRM; on a shared PostgreSQL they would hide other work) and kernel
    threads. Linux only; None elsewhere.
    """

    def __init__(self, server_pgid: int) -> None:
        self.server_pgid = server_pgid
        try:
            self.before = _process_cpu()
        except OSError:
            self.before = None
        self.started = time.monotonic()

    def _whose(self, pid: int, snapshot: dict[int, tuple[int, int, int, str, int]]) -> str | None:
        """Which part of the benchmark a process is, or None when it is other work."""
        _, ppid, pgrp, name, _started = snapshot[pid]
        parent_pgrp = snapshot.get(ppid, (0, 0, 0, "", 0))[2]
        if self.server_pgid in (pgrp, parent_pgrp):  # the embedded nats-server has a group
            part = _server_part(pid, name)  # of its own, under the server's process
            return f"server {part}" if part else "server"
        if name == "postgres":
            return "postgres"
        if pid == 2 or ppid == 2:
            return "kernel"  # kernel threads carry loopback traffic and disk writes for anyone
        seen = 0
        while pid > 1 and seen < 64:
            if pid == os.getpid():
                return "client"
            pid = snapshot.get(pid, (0, 0, 0, "", 0))[1]
            seen += 1
        return None

    def share(self) -> float | None:
        """Other work's share of all CPUs; also fills `cores` (CPUs busy, per part) and `top`."""
        self.cores: dict[str, float] = {}
        self.top: list[tuple[float, str]] = []
        if self.before is None:
            return None
        after = _process_cpu()
        elapsed = time.monotonic() - self.started
        per_second = os.sysconf("SC_CLK_TCK") * elapsed
        used: Counter = Counter()
        for pid, (cpu, *_rest) in after.items():
            earlier = self.before.get(pid)
            delta = cpu - (earlier[0] if earlier and earlier[4] == after[pid][4] else 0)
            whose = self._whose(pid, after) or "other"
            used[whose] += delta
            if whose == "other" and delta:
                self.top.append((delta / per_second, f"{after[pid][3]} ({pid})"))
        self.top.sort(reverse=True)
        self.cores = {k: round(v / per_second, 2) for k, v in sorted(used.items())}
        return used["other"] / per_second / (os.cpu_count() or 1)


def crm_env(data_dir: Path, database_url: str | None, schema: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env["CRM_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    if database_url:
        env["CRM_DATABASE_URL"] = database_url
        env["CRM_DATABASE_SCHEMA"] = schema or "public"
    return env


def crm_argv(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "services.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


SPLIT = "-split"
FLOOR = "floor-"
PAUSED = "-paused"


def bare_argv(port: int) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "bench" / "bare_endpoint.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def floor_argv(
    port: int, store: str, workdir: Path, postgres: str | None, schemas: list[str]
) -> list[str]:
    """The bare endpoint as the durable floor: every re-rating committed before its answer."""
    if store == f"{FLOOR}sqlite":
        return [*bare_argv(port), "--sqlite", str(workdir / "floor.sqlite")]
    assert postgres is not None
    schema = f"bench_{secrets.token_hex(4)}"
    schemas.append(schema)  # dropped with the CRM's
    return [*bare_argv(port), "--postgres", postgres, "--schema", schema]


def split_processes(
    serve_argv: list[str], env: dict[str, str], nats_dir: Path
) -> tuple[list[str], dict[str, str]]:
    """One shell that starts a nats-server, `crm project` and `crm publish` in the background
    and then becomes `crm serve --no-workers`: all in the server's process group, so they are
    counted as the server's CPU and stopped with it."""
    from services.nats_server import nats_server_binary

    nats_port = free_port()
    nats_dir.mkdir(parents=True, exist_ok=True)
    env = {**env, "CRM_NATS_URL": f"nats://127.0.0.1:{nats_port}"}
    crm = f"{shlex.quote(sys.executable)} -m services.cli"
    script = (
        f"{shlex.quote(nats_server_binary())} -a 127.0.0.1 -p {nats_port} -js "
        f"-sd {shlex.quote(str(nats_dir))} & {crm} project & {crm} publish & "
        f"exec {shlex.join(serve_argv)} --no-workers"
    )
    return ["sh", "-c", script], env


def pause_workers(server: Server) -> list[Any]:
    """Stops (SIGSTOP) the projector and publisher processes `crm serve` started: the API then
    has the CPUs to itself, which bounds what W1 can reach with the API as it is. The embedded
    nats-server keeps running. Returns the processes, to be resumed with `resume_workers`."""
    assert server.process is not None
    workers = [
        child
        for child in psutil.Process(server.process.pid).children(recursive=True)
        if child.name() != "nats-server"
    ]
    if not workers:
        raise RuntimeError(f"{server.name}: no projector or publisher process to pause")
    for worker in workers:
        worker.suspend()
    return workers


def resume_workers(workers: list[Any]) -> None:
    for worker in workers:
        try:
            worker.resume()
        except psutil.NoSuchProcess:
            pass


def wait_settled(server: Server, timeout: float) -> dict[str, Any] | None:
    """Waits until the read models and the publisher have caught up with the log (bounded)."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        try:
            status = server.get_json("/status")
        except (OSError, urllib.error.URLError, ValueError):
            return None  # no /status: nothing to wait for
        if _backlog(status) == (0, 0):
            return status
        time.sleep(0.2)
    return status


def _backlog(status: dict[str, Any]) -> tuple[int, int]:
    """(events the slowest read model is behind, events the publisher is behind)."""
    head = status.get("log_position", 0)
    models = status.get("read_models") or {}
    projector = max((head - p for p in models.values()), default=0)
    published = (status.get("publisher") or {}).get("published_position")
    # The publisher's own backlog counts only what it has read of the log so far.
    publisher = head - published if published is not None else 0
    return max(projector, 0), max(publisher, 0)


def publish_lag_buckets(server: Server) -> dict[float, float] | None:
    """The publisher's commit → ack histogram from /metrics: events acknowledged within each
    bound (seconds), counted since it started (None where /metrics does not answer)."""
    try:
        with _NO_PROXY.open(f"{server.base}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (OSError, urllib.error.URLError):
        return None
    return {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "crm_publish_lag_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket")
    }


def publish_lag(server: Server, before: dict[float, float]) -> dict[str, float] | None:
    """Commit → ack of the events published since `before`, to the histogram's resolution:
    the bounds p50 and p99 lie under, and the share acknowledged within 250 ms (P1's bound)."""
    after = publish_lag_buckets(server)
    if not after:
        return None
    within = {bound: after[bound] - before.get(bound, 0) for bound in sorted(after)}
    total = within[math.inf]
    if total <= 0:
        return None

    def at_most(fraction: float) -> float:
        return next(b * 1000 for b, n in within.items() if n >= fraction * total)

    return {
        "events": total,
        "p50_at_most": at_most(0.5),
        "p99_at_most": at_most(0.99),
        "within_250_ms": within.get(0.25, 0) / total,
    }


# Seeding ------------------------------------------------------------------------------------


def account_body(i: int, run: str, rng: random.Random) -> bytes:
    return json.dumps(
        {
            "name": f"Bench {run} {i:06d}",
            "domain": f"account{i}.{run}.bench.example",
            "industry": rng.choice(INDUSTRIES),
            "headcount": rng.randint(10, 5000),
            "annual_revenue": rng.randint(10**5, 10**9),
            "revenue_currency": "EUR",
            "country": rng.choice(COUNTRIES),
            "growth_rate": round(rng.uniform(-5, 40), 2),
            "source": "bench",
        }
    ).encode()


async def seed_accounts(base: str, count: int, concurrency: int, progress: Any) -> list[str]:
    """Registers and screens `count` accounts over HTTP; returns their ids."""
    import aiohttp

    run = secrets.token_hex(3)
    rng = random.Random(run)
    bodies = [account_body(i, run, rng) for i in range(count)]
    screening = json.dumps({"outcome": "qualified"}).encode()
    task = progress.add_task(f"seed {count:,} accounts", total=count)
    ids: list[str] = []
    indexes = iter(range(count))
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=JSON_HEADERS
    ) as session:

        async def worker() -> None:
            for i in indexes:
                async with session.post(f"{base}/accounts", data=bodies[i]) as resp:
                    if resp.status != 201:
                        raise RuntimeError(
                            f"POST /accounts answered {resp.status}: {await resp.text()}"
                        )
                    account_id = (await resp.json())["id"]
                url = f"{base}/accounts/{account_id}/screening"
                async with session.post(url, data=screening) as resp:
                    if resp.status != 200:
                        raise RuntimeError(
                            f"POST {url} answered {resp.status}: {await resp.text()}"
                        )
                    await resp.read()
                ids.append(account_id)
                progress.advance(task)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    progress.remove_task(task)
    return ids


# Load ---------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    latencies: array = field(default_factory=lambda: array("d"))  # seconds, 2xx in the window
    errors: Counter = field(default_factory=Counter)  # "503 Busy", "timeout", …
    seconds: float = 0.0
    late: int = 0  # answers that came after the window closed (not counted)

    def merge(self, other: LoadResult) -> None:
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)
        self.late += other.late
        self.seconds = max(self.seconds, other.seconds)


@dataclass(frozen=True)
class Requests:
    """What the clients send: `method` to a random one of `paths` with a random one of `bodies`."""

    method: str
    paths: list[str]
    bodies: list[bytes | None]


def bant_ratings(account_ids: list[str]) -> Requests:
    """BANT re-ratings of the given accounts, with all 625 rating combinations encoded once."""
    return Requests(
        "PUT",
        [f"/accounts/{i}/bant" for i in account_ids],
        [
            json.dumps({"budget": b, "authority": a, "need": n, "timing": t}).encode()
            for b, a, n, t in itertools.product(range(1, 6), repeat=4)
        ],
    )


async def _describe_error(resp: Any) -> str:
    try:
        body = await resp.json(content_type=None)
        title = body.get("title") if isinstance(body, dict) else None
    except Exception:  # an error page that is not JSON
        title = None
    return f"{resp.status} {title}" if title else str(resp.status)


async def generate_load(
    base: str,
    requests: Requests,
    clients: int,
    warmup: float,
    seconds: float,
    seed: int,
    barrier: Any = None,
) -> LoadResult:
    import aiohttp
    from yarl import URL

    urls = [URL(f"{base}{path}") for path in requests.paths]
    bodies = requests.bodies
    result = LoadResult(seconds=seconds)
    latencies, errors = result.latencies, result.errors
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    # A request that takes this long is counted as a timeout; the run stays bounded.
    timeout = aiohttp.ClientTimeout(total=max(10.0, seconds))
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=JSON_HEADERS
    ) as session:
        if barrier is not None:  # client processes start their clocks together
            await asyncio.get_running_loop().run_in_executor(None, barrier.wait, 60)
        clock = time.perf_counter
        measure_from = clock() + warmup
        stop = measure_from + seconds

        async def client(client_seed: int) -> None:
            pick = random.Random(client_seed).randrange
            n_urls, n_bodies = len(urls), len(bodies)
            send = session.request
            method = requests.method
            while (started := clock()) < stop:
                try:
                    url, body = urls[pick(n_urls)], bodies[pick(n_bodies)]
                    async with send(method, url, data=body) as resp:
                        if 200 <= resp.status < 300:
                            await resp.read()
                            outcome = None
                        else:
                            outcome = await _describe_error(resp)
                except TimeoutError:
                    outcome = "timeout"
                except aiohttp.ClientError as exc:
                    outcome = type(exc).__name__
                    await asyncio.sleep(0.01)  # a refusing server must not spin the client
                ended = clock()
                if ended < measure_from:
                    continue
                if ended >= stop:
                    result.late += 1
                elif outcome is None:
                    latencies.append(ended - started)
                else:
                    errors[outcome] += 1

        tasks = [asyncio.ensure_future(client(seed * 1000 + c)) for c in range(clients)]
        done, pending = await asyncio.wait(tasks, timeout=warmup + seconds + 15)
        for task in pending:
            task.cancel()
        if pending:
            errors["still running at the end (cancelled)"] += len(pending)
            await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()  # a bug in the client must not pass silently
    return result


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _client_process(
    base: str,
    requests: Requests,
    clients: int,
    warmup: float,
    seconds: float,
    seed: int,
    barrier: Any,
    results: Any,
) -> None:
    try:
        result = _run_loop(generate_load(base, requests, clients, warmup, seconds, seed, barrier))
        results.put((result.latencies.tobytes(), dict(result.errors), result.late))
    except BaseException as exc:  # the parent must hear of it, not wait forever
        results.put(exc.__class__.__name__ + ": " + str(exc))
        raise


def run_load(
    base: str, requests: Requests, clients: int, warmup: float, seconds: float, processes: int
) -> LoadResult:
    if processes <= 1:
        return _run_loop(generate_load(base, requests, clients, warmup, seconds, 1))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    shares = [
        clients // processes + (1 if k < clients % processes else 0) for k in range(processes)
    ]
    workers = [
        ctx.Process(
            target=_client_process,
            args=(base, requests, share, warmup, seconds, k + 1, barrier, results),
            daemon=True,
        )
        for k, share in enumerate(shares)
    ]
    total = LoadResult(seconds=seconds)
    try:
        for w in workers:
            w.start()
        for _ in workers:
            got = results.get(timeout=60 + warmup + seconds + 30)
            if isinstance(got, str):
                raise RuntimeError(f"a client process failed: {got}")
            raw, errors, late = got
            part = LoadResult(seconds=seconds, errors=Counter(errors), late=late)
            part.latencies.frombytes(raw)
            total.merge(part)
        for w in workers:
            w.join(10)
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
                w.join(5)
            if w.is_alive():
                w.kill()
    return total


# Figures ------------------------------------------------------------------------------------


def set_beside_bare(row: dict[str, Any], before: float | None, after: float | None) -> None:
    """A target's ratio to the mean of the bare rounds right before and right after it."""
    if before and after:
        row["bare_commands_per_s"] = round((before + after) / 2, 1)
        row["ratio_to_bare"] = round(row["commands_per_s"] / row["bare_commands_per_s"], 3)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def figures(name: str, store: str | None, result: LoadResult) -> dict[str, Any]:
    values = sorted(result.latencies)
    ok = len(values)
    return {
        "target": name,
        "store": store,
        "commands": ok,
        "commands_per_s": round(ok / result.seconds, 1),
        "p50_ms": round(percentile(values, 0.50) * 1000, 3),
        "p90_ms": round(percentile(values, 0.90) * 1000, 3),
        "p99_ms": round(percentile(values, 0.99) * 1000, 3),
        "max_ms": round(values[-1] * 1000, 3) if values else None,
        "errors": sum(result.errors.values()),
        "error_kinds": dict(result.errors),
        "answered_after_window": result.late,
    }


def postgres_version(url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else None
    except Exception:
        return None


# Main ---------------------------------------------------------------------------------------


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000, help="default: %(default)s")
    parser.add_argument("--clients", type=int, default=64, help="default: %(default)s")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="measured window, default: %(default)s"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="default: %(default)s")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("CRM_BENCH_DATABASE_URL") or None,
        help="a PostgreSQL URL; a fresh schema is used and dropped (env CRM_BENCH_DATABASE_URL)",
    )
    parser.add_argument("--keep-schema", action="store_true", help="do not drop the schema")
    parser.add_argument(
        "--client-processes", type=int, default=1, help="spread the clients over K processes"
    )
    parser.add_argument("--seed-concurrency", type=int, default=16, help="default: %(default)s")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="default: %(default)s")
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=60.0,
        help="how long to let read models and publisher catch up after seeding",
    )
    parser.add_argument("--skip-bare", action="store_true", help="do not measure the bare endpoint")
    parser.add_argument(
        "--split",
        action="store_true",
        help="also measure each store with `crm serve --no-workers`, `crm project` and "
        "`crm publish` as separate processes (and a nats-server of their own)",
    )
    parser.add_argument(
        "--paused-workers",
        action="store_true",
        help="also measure each store's `crm serve` with its projector and publisher processes "
        "paused during the load: what the API process alone reaches (a bound, not a set-up)",
    )
    parser.add_argument("--skip-sqlite", action="store_true", help="do not measure CRM on SQLite")
    parser.add_argument(
        "--skip-floor",
        action="store_true",
        help="do not measure the durable floor (the bare endpoint committing each re-rating "
        "to the same store) beside each store",
    )
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    if args.accounts < 1 or args.clients < 1 or args.seconds <= 0 or args.client_processes < 1:
        parser.error("--accounts, --clients, --seconds and --client-processes must be positive")

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    # SIGTERM unwinds like Ctrl-C, so the servers are stopped either way.
    signal.signal(signal.SIGTERM, _interrupt)

    console = Console(width=150)
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-write-"))
    plan: list[tuple[str, str]] = []
    if not args.skip_sqlite:
        plan.append(("CRM on SQLite", "sqlite"))
    if args.postgres:
        plan.append(("CRM on PostgreSQL", "postgresql"))
    crm_plan = list(plan)
    if args.paused_workers:
        plan += [
            (f"{name}, projector and publisher paused", f"{store}{PAUSED}")
            for name, store in crm_plan
        ]
    if args.split:
        plan += [(f"{name}, as separate processes", f"{store}{SPLIT}") for name, store in crm_plan]
    if not (args.skip_bare or args.skip_floor):
        plan += [
            (name.replace("CRM", "durable floor"), f"{FLOOR}{store}") for name, store in crm_plan
        ]
    results: list[dict[str, Any]] = []
    servers: list[Server] = []
    schemas: list[str] = []
    bare_rounds: list[LoadResult] = []
    bare_ids = [str(uuid4()) for _ in range(args.accounts)]
    started_at = datetime.now(UTC)

    def start(server: Server) -> None:
        servers.append(server)
        busy_before = cpu_busy(1.0)  # nothing of ours runs now: this is other work
        console.print(
            f"[bold]{server.name}[/]: starting on {server.base} (CPU busy before: "
            + (f"{busy_before:.0%}" if busy_before is not None else "?")
            + ") …"
        )
        if busy_before is not None and busy_before > 0.10:
            console.print("  [yellow]the machine is busy: other work will skew the figures[/]")
        server.start()
        console.print(f"  ready after {server.wait_ready(args.ready_timeout):.1f} s")

    def measure(server: Server, ids: list[str], store: str | None) -> tuple[LoadResult, dict]:
        """One measured load on `server`; its figures, with the CPU each part used."""
        console.print(
            f"  {server.name}: {args.clients} clients, {args.warmup:g} s warm-up + "
            f"{args.seconds:g} s measured, {args.client_processes} client process(es) …"
        )
        assert server.process is not None
        foreign = ForeignCpu(server.process.pid)
        load = run_load(
            server.base,
            bant_ratings(ids),
            args.clients,
            args.warmup,
            args.seconds,
            args.client_processes,
        )
        foreign_share = foreign.share()
        row = figures(server.name, store, load)
        row["foreign_cpu_share"] = round(foreign_share, 3) if foreign_share is not None else None
        row["cpus_busy_during_load"] = foreign.cores
        console.print(
            f"    {row['commands_per_s']:,.0f} commands/s, p50 {row['p50_ms']:.1f} ms, "
            f"p99 {row['p99_ms']:.1f} ms, errors {row['errors']}"
            + (
                f"; other processes used {foreign_share:.0%} of the CPUs meanwhile"
                if foreign_share is not None
                else ""
            )
        )
        if foreign.cores:
            console.print(
                "    CPUs busy during warm-up and load: "
                + ", ".join(f"{k} {v:.2f}" for k, v in foreign.cores.items())
            )
            # CPU time per answered request, each part apart: where a command's cost goes.
            answered = row["commands_per_s"]  # the CPUs' rates are over the warm-up too
            if answered:
                row["cpu_ms_per_request"] = {
                    part: round(busy / answered * 1000, 3) for part, busy in foreign.cores.items()
                }
                console.print(
                    "    CPU ms per request: "
                    + ", ".join(f"{k} {v:.3f}" for k, v in row["cpu_ms_per_request"].items())
                )
        if foreign_share is not None and foreign_share > 0.05:
            top = ", ".join(f"{who} {share:.2f} CPUs" for share, who in foreign.top[:3])
            row["foreign_cpu_top"] = top
            console.print(
                f"    [yellow]other work ran during the load ({top}): these figures are skewed[/]"
            )
        return load, row

    def measure_bare() -> float | None:
        """A round on the bare endpoint, which runs beside every CRM target; its rate."""
        if bare is None:
            return None
        load, row = measure(bare, bare_ids, None)
        bare_rounds.append(load)
        return row["commands_per_s"]

    bare: Server | None = None
    try:
        if not args.skip_bare:
            # Measured right before and right after each CRM target, so that each ratio sets
            # figures from the same minute side by side on a machine whose load drifts.
            port = free_port()
            bare = Server(
                "bare endpoint",
                bare_argv(port),
                {**os.environ, "PYTHONUNBUFFERED": "1"},
                workdir / "bare.log",
                port,
            )
            start(bare)
            if not plan:
                measure_bare()
        for name, store in plan:
            port = free_port()
            if store.startswith(FLOOR):
                floor = Server(
                    name,
                    floor_argv(port, store, workdir, args.postgres, schemas),
                    {**os.environ, "PYTHONUNBUFFERED": "1"},
                    workdir / f"{store}.log",
                    port,
                )
                start(floor)
                bare_before = measure_bare()
                _load, row = measure(floor, bare_ids, store)
                bare_after = measure_bare()
                floor.stop()
                set_beside_bare(row, bare_before, bare_after)
                results.append(row)
                continue
            if store.startswith("sqlite"):
                env = crm_env(workdir / f"{store}-data", None, None)
            else:
                schema = f"bench_{secrets.token_hex(4)}"
                schemas.append(schema)
                env = crm_env(workdir / f"{store}-data", args.postgres, schema)
            argv = crm_argv(port)
            if store.endswith(SPLIT):
                argv, env = split_processes(argv, env, workdir / f"{store}-nats")
            log_path = workdir / f"{store}.log"
            server = Server(name, argv, env, log_path, port)
            start(server)
            seed_started = time.perf_counter()
            with Progress(
                TextColumn("  {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as progress:
                ids = _run_loop(
                    seed_accounts(server.base, args.accounts, args.seed_concurrency, progress)
                )
            seed_s = time.perf_counter() - seed_started
            console.print(
                f"  seeded {len(ids):,} accounts in {seed_s:.1f} s "
                f"({2 * len(ids) / seed_s:,.0f} commands/s at concurrency "
                f"{args.seed_concurrency})"
            )
            settled_status = wait_settled(server, args.settle_timeout)
            if settled_status is not None:
                projector_behind, publisher_behind = _backlog(settled_status)
                console.print(
                    f"  read models and publisher settled: log position "
                    f"{settled_status['log_position']:,}, behind {projector_behind} / "
                    f"{publisher_behind}"
                )
            lag_before = publish_lag_buckets(server)
            bare_before = measure_bare()
            paused = pause_workers(server) if store.endswith(PAUSED) else []
            try:
                _load, row = measure(server, ids, store)
            finally:
                resume_workers(paused)
            # How far the projector and publisher were behind when the load stopped…
            try:
                after = server.get_json("/status")
                behind = _backlog(after)
                row["after_load"] = {
                    "log_position": after.get("log_position"),
                    "read_models_behind": behind[0],
                    "publisher_behind": behind[1],
                    "behind_each": {
                        model: after.get("log_position", 0) - position
                        for model, position in (after.get("read_models") or {}).items()
                    },
                }
                # …and how long they took to catch up once it stopped (bounded).
                catch_up_started = time.perf_counter()
                settled = wait_settled(server, args.settle_timeout)
                if settled is not None and _backlog(settled) == (0, 0):
                    row["after_load"]["caught_up_s"] = round(
                        time.perf_counter() - catch_up_started, 2
                    )
                    if lag_before is not None and (lag := publish_lag(server, lag_before)):
                        row["after_load"]["publisher_lag_ms"] = lag
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if server.process is not None and server.process.poll() is not None:
                row["server_exited"] = server.process.returncode
            bare_after = measure_bare()
            set_beside_bare(row, bare_before, bare_after)
            results.append(row)
            server.stop()
            log_text = log_path.read_text(errors="replace")
            complaints = [
                line for line in log_text.splitlines() if any(level in line for level in COMPLAINTS)
            ]
            if complaints:
                row["server_log_warnings"] = len(complaints)
                console.print(
                    f"  [yellow]the server logged {len(complaints)} warnings or errors[/], first:\n"
                    + "\n".join(complaints[:5])
                )
            if "Traceback" in log_text:
                row["server_log_has_traceback"] = True
                console.print(f"  [yellow]the server logged a traceback[/]:\n{server.log_tail()}")
    finally:
        for server in servers:
            server.stop()
        if args.postgres and not args.keep_schema:
            for schema in schemas:
                try:
                    drop_schema(args.postgres, schema)
                except Exception as exc:
                    console.print(f"[yellow]could not drop schema {schema}: {exc}[/]")
        shutil.rmtree(workdir, ignore_errors=True)

    if bare_rounds:
        every = LoadResult(seconds=args.seconds * len(bare_rounds))
        for load in bare_rounds:
            every.latencies.extend(load.latencies)
            every.errors.update(load.errors)
            every.late += load.late
        bare_row = figures("bare endpoint", None, every)
        bare_row["rounds"] = len(bare_rounds)
        results.insert(0, bare_row)

    table = Table(
        title=(
            f"Write path: PUT /accounts/{{id}}/bant, {args.clients} clients, "
            f"{args.seconds:g} s after {args.warmup:g} s warm-up, {args.accounts:,} accounts"
        )
    )
    columns = ("target", "commands/s", "p50 ms", "p99 ms", "errors", "bare beside", "ratio")
    for column in columns:
        table.add_column(column, justify="left" if column == "target" else "right")
    for row in results:
        table.add_row(
            row["target"] + (f" ({row['rounds']} rounds)" if "rounds" in row else ""),
            f"{row['commands_per_s']:,.0f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['errors']:,}",
            f"{row['bare_commands_per_s']:,.0f}" if "bare_commands_per_s" in row else "-",
            f"{row['ratio_to_bare']:.3f}" if "ratio_to_bare" in row else "-",
        )
    console.print(table)
    for row in results:
        if row["error_kinds"]:
            kinds = ", ".join(f"{k}: {v}" for k, v in sorted(row["error_kinds"].items()))
            console.print(f"[yellow]{row['target']} errors[/]: {kinds}")
        if "after_load" in row:
            a = row["after_load"]
            console.print(
                f"{row['target']}: when the load stopped, the slowest read model was "
                f"{a['read_models_behind']:,} events behind ("
                + ", ".join(f"{m} {b:,}" for m, b in a.get("behind_each", {}).items())
                + f") and the publisher {a['publisher_behind']:,} "
                f"events behind the log (position {a['log_position']:,}); "
                + (
                    f"caught up {a['caught_up_s']:.1f} s later"
                    if "caught_up_s" in a
                    else f"not caught up within {args.settle_timeout:g} s"
                )
                + (
                    f"; commit → ack of the load's events: p50 ≤ {lag['p50_at_most']:,.0f} ms, "
                    f"p99 ≤ {lag['p99_at_most']:,.0f} ms, {lag['within_250_ms']:.1%} within 250 ms"
                    if (lag := a.get("publisher_lag_ms"))
                    else ""
                )
            )
    machine = {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(args.postgres) if args.postgres else None,
    }
    console.print(
        f"{machine['cpu_count']} CPUs ({machine['processor']}), {machine['platform']}, "
        f"Python {machine['python']}, SQLite {machine['sqlite']}"
        + (f", PostgreSQL {machine['postgresql']}" if machine["postgresql"] else "")
        + f", {started_at:%Y-%m-%d %H:%M} UTC; load generator: aiohttp on uvloop, "
        f"{args.client_processes} process(es) on the same machine"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": started_at.isoformat(timespec="seconds"),
                    "machine": machine,
                    "settings": {
                        "accounts": args.accounts,
                        "clients": args.clients,
                        "seconds": args.seconds,
                        "warmup": args.warmup,
                        "client_processes": args.client_processes,
                    },
                    "results": results,
                },
                indent=2,
            )
        )
        console.print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
