"""The `transitions` read model: every move between ABM stages and funnel states.

A registration counts as entering `identified` and `see`. With the account's industry and
country on each row, the stage and funnel reports count, convert and time the moves by group.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from domain.account import Account
from projections.database import to_micros
from projections.generations import Generation

NAME = "transitions"
STAGE, FUNNEL = "stage", "funnel"

COLUMNS = ("position", "kind", "account_id", "at", "from_state", "to_state", "industry", "country")


def table(gen: Generation) -> str:
    return gen.table("rows")


def create_tables(conn: Connection, gen: Generation) -> None:
    t = table(gen)
    conn.execute(
        text(f"""
        CREATE TABLE IF NOT EXISTS {t} (
            position BIGINT NOT NULL,
            kind TEXT NOT NULL,
            account_id TEXT NOT NULL,
            at BIGINT NOT NULL,
            from_state TEXT,
            to_state TEXT NOT NULL,
            industry TEXT NOT NULL,
            country TEXT NOT NULL,
            PRIMARY KEY (position, kind)
        )""")
    )
    conn.execute(text(f"CREATE INDEX IF NOT EXISTS {t}_account ON {t} (account_id, position)"))
    conn.execute(text(f"CREATE INDEX IF NOT EXISTS {t}_at ON {t} (kind, at)"))


def analyze(conn: Connection, gen: Generation) -> None:
    conn.execute(text(f"ANALYZE {table(gen)}"))


def drop_tables(conn: Connection, gen: Generation) -> None:
    conn.execute(text(f"DROP TABLE IF EXISTS {table(gen)}"))


def apply(conn: Connection, gen: Generation, batch: list[tuple[int, Any]]) -> None:
    t = table(gen)
    groups: dict[str, tuple[str, str]] = {}
    rows: list[dict[str, Any]] = []

    def row(position: int, kind: str, event: Any, from_state: str | None, to_state: str):
        account_id = str(event.originator_id)
        if account_id not in groups:
            found = conn.execute(
                text(f"SELECT industry, country FROM {t} WHERE account_id = :a LIMIT 1"),
                {"a": account_id},
            ).first()
            if found is None:
                return  # registered before this generation began: cannot happen on a replay
            groups[account_id] = (found[0], found[1])
        industry, country = groups[account_id]
        rows.append(
            {
                "position": position,
                "kind": kind,
                "account_id": account_id,
                "at": to_micros(event.timestamp),
                "from_state": from_state,
                "to_state": to_state,
                "industry": industry,
                "country": country,
            }
        )

    for position, event in batch:
        if isinstance(event, Account.Registered):
            groups[str(event.originator_id)] = (event.industry, event.country)
            row(position, STAGE, event, None, "identified")
            row(position, FUNNEL, event, None, "see")
        elif isinstance(event, Account.StageChanged):
            row(position, STAGE, event, event.from_stage, event.to_stage)
        elif isinstance(event, Account.FunnelStateChanged):
            row(position, FUNNEL, event, event.from_state, event.to_state)
    if rows:
        conn.execute(
            text(
                f"INSERT INTO {t} ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in COLUMNS)})"
            ),
            rows,
        )
