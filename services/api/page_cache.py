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
network, so they are waited for in a worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import anyio.to_thread

from projections.database import ReadModelDatabase
from projections.generations import LIVE_POSITIONS, live_positions


@dataclass(frozen=True)
class Answer:
    body: bytes  # JSON
    headers: dict[str, str]


class PageCache:
    def __init__(self, database: ReadModelDatabase, size: int = 256) -> None:
        self.database = database
        self.size = size
        self._answers: OrderedDict[Hashable, tuple[tuple, Answer]] = OrderedDict()
        self._lock = threading.Lock()
        self._sqlite: sqlite3.Connection | None = None
        self.in_loop = database.sqlite_path is not None

    async def answer(self, key: Hashable, render: Callable[[], Answer]) -> Answer:
        if self.in_loop:
            return self._answer(key, render)
        return await anyio.to_thread.run_sync(self._answer, key, render)

    def close(self) -> None:
        """Closes the connection of the checks; a later check opens another."""
        connection, self._sqlite = self._sqlite, None
        if connection is not None:
            connection.close()

    def _answer(self, key: Hashable, render: Callable[[], Answer]) -> Answer:
        positions = self._positions()
        with self._lock:
            kept = self._answers.get(key)
            if kept is not None and kept[0] == positions:
                self._answers.move_to_end(key)
                return kept[1]
        # Read after the positions: if a batch lands meanwhile, this answer is kept under the
        # positions of before it, which no later check matches.
        answer = render()
        with self._lock:
            self._answers[key] = (positions, answer)
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
        return answer

    def _positions(self) -> tuple:
        if self.database.sqlite_path is None:
            with self.database.read() as conn:
                return live_positions(conn)
        if self._sqlite is None:
            # A connection of its own, in autocommit: each check reads the latest commit.
            self._sqlite = sqlite3.connect(
                self.database.sqlite_path, isolation_level=None, check_same_thread=False
            )
        return tuple(self._sqlite.execute(LIVE_POSITIONS).fetchall())
