"""Which generation of a read model's tables is live, and how far each generation has read.

A rebuild fills a new generation from the first event while the live one keeps serving, then
makes it live in one transaction; the tables it replaces are dropped once no read is on them.
Each generation records the position of the last event it applied, in the same transaction as
its rows, so a crash never double-counts or skips.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

DDL = """
CREATE TABLE IF NOT EXISTS rm_generations (
    name TEXT NOT NULL,
    generation INTEGER NOT NULL,
    position BIGINT NOT NULL,
    live INTEGER NOT NULL,
    PRIMARY KEY (name, generation)
)
"""


@dataclass(frozen=True)
class Generation:
    name: str
    generation: int
    position: int

    def table(self, base: str) -> str:
        return f"rm_{self.name}_{base}_g{self.generation}"


def ensure_registry(conn: Connection) -> None:
    conn.execute(text(DDL))


def live_generation(conn: Connection, name: str, *, lock: bool = False) -> Generation | None:
    suffix = " FOR UPDATE" if lock and conn.dialect.name == "postgresql" else ""
    row = conn.execute(
        text(
            f"SELECT generation, position FROM rm_generations WHERE name = :n AND live = 1{suffix}"
        ),
        {"n": name},
    ).first()
    return Generation(name, row[0], row[1]) if row else None


# Every live generation's number and position: they move with every batch a projector
# commits, and only then, so they say whether the read models changed.
LIVE_POSITIONS = (
    "SELECT name, generation, position FROM rm_generations WHERE live = 1 ORDER BY name"
)


def generation(conn: Connection, name: str, number: int) -> Generation | None:
    row = conn.execute(
        text("SELECT position FROM rm_generations WHERE name = :n AND generation = :g"),
        {"n": name, "g": number},
    ).first()
    return Generation(name, number, row[0]) if row else None


def add_generation(conn: Connection, name: str, *, live: bool) -> Generation:
    latest = conn.execute(
        text("SELECT MAX(generation) FROM rm_generations WHERE name = :n"), {"n": name}
    ).scalar()
    number = (latest or 0) + 1
    conn.execute(
        text(
            "INSERT INTO rm_generations (name, generation, position, live) "
            "VALUES (:n, :g, 0, :live)"
        ),
        {"n": name, "g": number, "live": int(live)},
    )
    return Generation(name, number, 0)


def record_position(conn: Connection, gen: Generation, position: int) -> Generation:
    conn.execute(
        text("UPDATE rm_generations SET position = :p WHERE name = :n AND generation = :g"),
        {"p": position, "n": gen.name, "g": gen.generation},
    )
    return Generation(gen.name, gen.generation, position)


def make_live(conn: Connection, gen: Generation) -> list[int]:
    """Makes `gen` the live generation; returns the numbers of the generations it replaces,
    which stay registered, not live, until `forget` (reads begun before may still use them)."""
    old = [
        row[0]
        for row in conn.execute(
            text("SELECT generation FROM rm_generations WHERE name = :n AND generation <> :g"),
            {"n": gen.name, "g": gen.generation},
        )
    ]
    conn.execute(
        text(
            "UPDATE rm_generations SET live = CASE WHEN generation = :g THEN 1 ELSE 0 END "
            "WHERE name = :n"
        ),
        {"n": gen.name, "g": gen.generation},
    )
    return old


def forget(conn: Connection, name: str, number: int) -> None:
    """Takes a replaced generation off the registry (its tables are dropped with it)."""
    conn.execute(
        text("DELETE FROM rm_generations WHERE name = :n AND generation = :g AND live = 0"),
        {"n": name, "g": number},
    )


def wait_for_reads(conn: Connection) -> None:
    """Waits until every read that found a generation in the registry has ended. On
    PostgreSQL a read's snapshot, taken before a switch, goes on naming the tables it replaced,
    and the lock its reading of the registry took is held until it ends; SQLite's reads keep
    the dropped tables of their snapshot by themselves."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE rm_generations IN ACCESS EXCLUSIVE MODE"))
