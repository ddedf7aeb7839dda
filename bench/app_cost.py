"""W1's gap, without a server or a network: the CPU a BANT re-rating costs in the CRM's ASGI
application against the bare endpoint's (bench/bare_endpoint.py), each called in this process
by 64 concurrent tasks. A script, not a test.

    uv run python bench/app_cost.py [--accounts 2000] [--requests 20000] [--rounds 3]

The CRM is `crm serve --no-workers` as it runs (development mode, SQLite in a temporary
directory, every command committed before its answer); its accounts are registered and
screened through the same application first. What uvicorn, the sockets and the load generator
cost comes on top of both in W1, and the projector and the publisher on top of the CRM's. CPU
is this process's (the account writer's thread included), per request.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))  # bare_endpoint, after the project

from services import cli  # noqa: E402
from services.settings import Settings  # noqa: E402
from tests.api.requests import asgi_scope  # noqa: E402

BODIES = [
    json.dumps({"budget": b, "authority": a, "need": n, "timing": t}).encode()
    for b, a, n, t in itertools.product(range(1, 6), repeat=4)
]
CLIENTS = 64


async def call(app: Any, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    """One request through the application; its status and body."""
    sent = False
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays: no disconnect
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(asgi_scope(method, path, b"application/json", len(body)), receive, send)
    return answer["status"], answer["body"]


async def start(app: Any) -> None:
    """The application's start-up (lifespan), left running."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    asyncio.get_running_loop().create_task(app(scope, inbox.get, outbox.put))
    if (said := await outbox.get())["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the application did not start: {said}")


async def load(app: Any, paths: list[str], requests: int) -> tuple[float, float]:
    """CPU µs per request and requests/s, `requests` re-ratings by CLIENTS tasks."""
    pick = random.Random(1)
    left = iter(range(requests))

    async def client() -> None:
        for _ in left:
            status, body = await call(app, "PUT", pick.choice(paths), pick.choice(BODIES))
            if status != 200:
                raise RuntimeError(f"PUT answered {status}: {body[:200]!r}")

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / requests * 1e6, requests / wall


async def crm_app(accounts: int) -> tuple[Any, list[str]]:
    settings = Settings.from_env({"CRM_DATA_DIR": tempfile.mkdtemp(prefix="crm-app-cost-")})
    app = cli._api_only(settings, [])
    await start(app)
    paths = []
    for i in range(accounts):
        registration = {
            "name": f"Bench {i:06d}",
            "domain": f"account{i}.bench.example",
            "industry": "Software",
            "headcount": 100,
            "annual_revenue": 10**6,
            "revenue_currency": "EUR",
            "country": "DE",
            "growth_rate": 5.0,
            "source": "bench",
        }
        status, body = await call(app, "POST", "/accounts", json.dumps(registration).encode())
        if status != 201:
            raise RuntimeError(f"POST /accounts answered {status}: {body[:200]!r}")
        account = f"/accounts/{json.loads(body)['id']}"
        status, body = await call(app, "POST", f"{account}/screening", b'{"outcome":"qualified"}')
        if status != 200:
            raise RuntimeError(f"POST {account}/screening answered {status}: {body[:200]!r}")
        paths.append(f"{account}/bant")
    return app, paths


async def main(args: argparse.Namespace) -> None:
    import bare_endpoint

    await start(bare_endpoint.app)
    bare_paths = [f"/accounts/{uuid4()}/bant" for _ in range(args.accounts)]
    crm, paths = await crm_app(args.accounts)
    for app, where in ((bare_endpoint.app, bare_paths), (crm, paths)):
        await load(app, where, min(args.requests, 2000))  # warm-up
    print(f"{CLIENTS} tasks, {args.requests:,} re-ratings a round, {args.accounts:,} accounts")
    print("round | bare µs CPU (req/s) | CRM µs CPU (req/s) | CRM / bare CPU")
    for round_ in range(1, args.rounds + 1):
        bare = await load(bare_endpoint.app, bare_paths, args.requests)
        ours = await load(crm, paths, args.requests)
        print(
            f"{round_} | {bare[0]:.0f} ({bare[1]:,.0f}) | {ours[0]:.0f} ({ours[1]:,.0f}) | "
            f"{ours[0] / bare[0]:.1f}×"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    import uvloop

    uvloop.run(main(parser.parse_args()))
