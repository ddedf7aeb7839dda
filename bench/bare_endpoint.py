"""The floors for the CRM's endpoints, served by uvicorn with the CRM's settings:

* `PUT /accounts/{id}/bant` decodes a BANT re-rating exactly as the CRM does (strict msgspec
  decode of the raw body into `contracts.accounts.ScoreBant`) and answers with a small JSON
  body, storing nothing;
* `GET /leaderboards/bant` answers a page of 50 leaderboard entries (the CRM's contract, built
  once at start), encoding it on every request but reading nothing.

    python bench/bare_endpoint.py --host 127.0.0.1 --port 8001

With `--sqlite PATH` or `--postgres URL --schema S` it is the durable floor instead: the same
`PUT` stores each decoded re-rating as one row and answers only once that row is committed.
Like the CRM's account writer, one thread takes every request waiting and commits them in one
transaction (SQLite in WAL mode with `synchronous=FULL`, PostgreSQL with its default
`synchronous_commit`); nothing else happens (no domain, no event store library, no read
models, no publishing). It is the least a Litestar service must do to acknowledge a durable
write, and so shows what of the gap to the bare endpoint durability itself costs.

`bench/write_path.py` and `bench/scale.py` start it and compare the CRM against it.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import sqlite3
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import msgspec
from litestar import Litestar, Request, Response, get, put

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts.accounts import ScoreBant  # noqa: E402
from contracts.read_models import LeaderboardEntry, LeaderboardPage  # noqa: E402

PAGE = LeaderboardPage(
    [
        LeaderboardEntry(
            rank=rank,
            account_id=uuid4(),
            name=f"Company {rank:07d}",
            score=20,
            budget=5,
            authority=5,
            need=5,
            timing=5,
            abm_stage="prioritized",
            funnel_state="think",
            industry="Software",
            country="DE",
            scored_at=datetime.now(UTC),
        )
        for rank in range(1, 51)
    ],
    position=1_000_000,
    next_cursor="20:00000000-0000-0000-0000-000000000000",
)


class Rated(msgspec.Struct, frozen=True):
    id: UUID
    score: int


class Health(msgspec.Struct, frozen=True):
    status: str


# (account id, body, loop, future): a request waiting for its row to be committed.
Waiting = tuple[bytes, bytes, asyncio.AbstractEventLoop, asyncio.Future[None]]
MAX_BATCH = 200  # as the CRM's account writer


class DurableRows:
    """One thread commits the rows of every request waiting, together, then answers them."""

    def __init__(self, insert: Callable[[list[tuple[bytes, bytes]]], None]) -> None:
        self._insert = insert
        self._queue: queue.SimpleQueue[Waiting] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="floor-writer", daemon=True).start()

    async def store(self, account_id: UUID, body: bytes) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.put((account_id.bytes, body, loop, done))
        await done

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._insert([(account, body) for account, body, _, _ in batch])
                outcome: BaseException | None = None
            except Exception as error:  # the request learns it, as a 500
                outcome = error
            for _, _, loop, done in batch:
                loop.call_soon_threadsafe(_settle, done, outcome)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if not done.cancelled():
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


def sqlite_rows(path: str) -> Callable[[list[tuple[bytes, bytes]]], None]:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS ratings (id INTEGER PRIMARY KEY, account BLOB, body BLOB)"
    )

    def insert(rows: list[tuple[bytes, bytes]]) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO ratings (account, body) VALUES (?, ?)", rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    return insert


def postgres_rows(url: str, schema: str) -> Callable[[list[tuple[bytes, bytes]]], None]:
    import psycopg
    from psycopg import sql

    conn = psycopg.connect(url)
    table = sql.Identifier(schema, "ratings")
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, account uuid, body jsonb)"
            ).format(table)
        )
    statement = sql.SQL("INSERT INTO {} (account, body) VALUES (%s, %s)").format(table)

    def insert(rows: list[tuple[bytes, bytes]]) -> None:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(
                statement, [(UUID(bytes=account), body.decode()) for account, body in rows]
            )

    return insert


rows: DurableRows | None = None  # the durable floor, when asked for


@put("/accounts/{account_id:uuid}/bant", status_code=200)
async def score_bant(account_id: UUID, request: Request) -> Response[Rated]:
    raw = await request.body()
    try:
        body = msgspec.json.decode(raw, type=ScoreBant)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return Response({"status": 422, "detail": str(exc)}, status_code=422)  # type: ignore[arg-type]
    if rows is not None:
        await rows.store(account_id, raw)
    score = body.budget + body.authority + body.need + body.timing
    return Response(Rated(account_id, score))


@get("/leaderboards/bant", sync_to_thread=False)
def leaderboard() -> LeaderboardPage:
    return PAGE


@get("/health", sync_to_thread=False)
def health() -> Health:
    return Health("ok")


app = Litestar(route_handlers=[score_bant, leaderboard, health], openapi_config=None)


def main() -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--sqlite", help="the durable floor: store each re-rating in this file")
    parser.add_argument("--postgres", help="the durable floor: store each re-rating here")
    parser.add_argument("--schema", default="public", help="with --postgres, default: public")
    args = parser.parse_args()
    global rows
    if args.sqlite:
        rows = DurableRows(sqlite_rows(args.sqlite))
    elif args.postgres:
        rows = DurableRows(postgres_rows(args.postgres, args.schema))
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
