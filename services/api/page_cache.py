"""Answers of read-model pages, kept until the read models change.

A page of the leaderboard or the account list is a function of its parameters and of the
read models' state, and that state changes only when a projector commits a batch, which moves
a live generation's position (or a rebuild makes another generation live). So each answer is
kept with the positions it was computed at, and served again while the positions are the
same: a leaderboard read a thousand times between two batches is computed once. Checking the
positions is one small query; it is exact, so a read after a batch never sees the page of
before it.

On SQLite the check and any new page run in the event loop's thread: SQLite answers from the
read models' file in well under a millisecond of CPU, and from a worker thread it would hand
the interpreter lock back and forth once per row fetched. PostgreSQL answers come over the
network: a new page is made in a worker thread, and the check, a single query, is awaited in
the event loop.

On SQLite one check serves every read the event loop runs in the same pass. That is as exact
as a check per read: a pass runs only requests whose bytes had arrived before it began, so the
positions checked during it are of an instant between each such request's arrival and its
answer, as a read's answer must be. Under load a pass answers several reads, and the check
was a sixth of a kept page's CPU.

On PostgreSQL a read waits for a check that begins after it came, which is as exact for the
same reason; the reads that come while one check is under way share the next, which, when
several wait, lets the loop run a few passes first to gather more. A check of each read's
own, each in a worker thread, held an API process to about a tenth of a bare GET's rate
(BENCHMARKS.md). The check runs on a connection of its own, in autocommit
(projections/database.py, HeldConnection): through the reader's pool, in a worker thread, a
process answered about 0.6 times as many kept pages.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import anyio.to_thread
from litestar import MediaType
from litestar.response.base import ASGIResponse

from projections.database import ReadModelDatabase
from projections.generations import LIVE_POSITIONS

# How many passes of the event loop a PostgreSQL check lets more reads come before it begins,
# when several already wait.
GATHERING_PASSES = 8


@dataclass(frozen=True)
class Answer:
    body: bytes  # JSON
    headers: dict[str, str]
    # The ASGI response that sends it, made once: it holds no state of a request, and making
    # it (its header list above all) for each read was a tenth of a kept page's CPU.
    asgi: ASGIResponse = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        response = ASGIResponse(body=self.body, headers=self.headers, media_type=MediaType.JSON)
        object.__setattr__(self, "asgi", response)


class PageCache:
    def __init__(self, database: ReadModelDatabase, size: int = 256) -> None:
        self.database = database
        self.size = size
        self._answers: OrderedDict[Hashable, tuple[tuple, Answer]] = OrderedDict()
        self._lock = threading.Lock()
        # The checks' connection: SQLite's, opened by the first; PostgreSQL's, by each loop's.
        self._sqlite: sqlite3.Connection | None = None
        self._postgres = None if database.sqlite_path else database.held_connection()
        # The positions checked in this pass of the event loop, and that loop.
        self._checked: tuple[asyncio.AbstractEventLoop, tuple] | None = None
        self.in_loop = database.sqlite_path is not None
        # PostgreSQL: the reads that came since the check under way began, waiting for the next.
        self._waiting: list[asyncio.Future[tuple]] = []
        self._checking: asyncio.Task[None] | None = None  # the task that runs the checks

    async def answer(self, key: Hashable, render: Callable[[], Answer]) -> Answer:
        if self.in_loop:
            loop = asyncio.get_running_loop()
            if self._checked is None or self._checked[0] is not loop:
                self._checked = (loop, self._sqlite_positions())
                loop.call_soon(self._end_of_pass)
            return self._answer(key, render, self._checked[1])
        positions = await self._check_begun_after_now()
        if (kept := self._kept(key, positions)) is not None:
            return kept
        return await anyio.to_thread.run_sync(lambda: self._answer(key, render, positions))

    async def _check_begun_after_now(self) -> tuple:
        """The positions, read by a check that begins after this call: exact for the read
        that asks, as a check of its own would be. Reads that come while a check is under
        way share the next one, so under load a check (a round trip to the database) serves
        many reads rather than one each."""
        loop = asyncio.get_running_loop()
        # Each read waits on a future of its own: one it cancels (its client went away)
        # cancels nothing else. A shared future behind asyncio.shield did the same with two
        # more callbacks and a pass of the loop more per read.
        waiting = loop.create_future()
        self._waiting.append(waiting)
        if self._checking is None or self._checking.get_loop() is not loop:
            # Another loop's reads (a test's earlier client) have gone with their loop.
            self._waiting = [w for w in self._waiting if w.get_loop() is loop]
            self._checking = loop.create_task(self._run_checks())
        return await waiting

    async def _run_checks(self) -> None:
        try:
            while self._waiting:
                if len(self._waiting) > 1:
                    # Reads come in crowds: more are on their way through the loop (a request
                    # is parsed in one pass and reaches its page in the next), and those of the
                    # next few passes share this check. That raised a loaded API's rate of kept
                    # pages by a tenth. A lone read does not wait for company.
                    for _ in range(GATHERING_PASSES):
                        await asyncio.sleep(0)
                waiting, self._waiting = self._waiting, []  # later reads wait for the next
                try:
                    positions = await self._postgres_positions()
                except Exception as error:
                    for read in waiting:
                        if not read.done():
                            read.set_exception(error)
                else:
                    for read in waiting:
                        if not read.done():
                            read.set_result(positions)
        finally:
            if self._checking is asyncio.current_task():
                self._checking = None

    async def close(self) -> None:
        """Closes the connections of the checks; a later check opens another."""
        connection, self._sqlite = self._sqlite, None
        if connection is not None:
            connection.close()
        if self._postgres is not None:
            await self._postgres.close()

    def _end_of_pass(self) -> None:
        self._checked = None

    def _kept(self, key: Hashable, positions: tuple) -> Answer | None:
        with self._lock:
            kept = self._answers.get(key)
            if kept is None or kept[0] != positions:
                return None
            self._answers.move_to_end(key)
            return kept[1]

    def _answer(self, key: Hashable, render: Callable[[], Answer], positions: tuple) -> Answer:
        if (kept := self._kept(key, positions)) is not None:
            return kept
        # Read after the positions: if a batch lands meanwhile, this answer is kept under the
        # positions of before it, which no later check matches. (Within the pass it may serve
        # a later read of the same page: one that arrived before the batch landed.)
        answer = render()
        with self._lock:
            self._answers[key] = (positions, answer)
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
        return answer

    def _sqlite_positions(self) -> tuple:
        if self._sqlite is None:
            assert self.database.sqlite_path is not None
            # A connection of its own, in autocommit: each check reads the latest commit.
            self._sqlite = sqlite3.connect(
                self.database.sqlite_path, isolation_level=None, check_same_thread=False
            )
        return tuple(self._sqlite.execute(LIVE_POSITIONS).fetchall())

    async def _postgres_positions(self) -> tuple:
        assert self._postgres is not None
        return tuple(await self._postgres.rows(LIVE_POSITIONS))
