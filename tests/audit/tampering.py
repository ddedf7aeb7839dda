"""Changes made behind the service's back, straight in the SQLite file or PostgreSQL schema."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import psycopg
from psycopg import sql

from domain.account import BantRating, Firmographics
from domain.ledger import AccountLedger, CommandMeta
from domain.vocabulary import ScreeningOutcome
from services.cli import build_parser
from services.settings import Settings

ROOT = Path(__file__).parent.parent.parent
META = CommandMeta("marta", reason="quarterly review", request_id="req-1")


class RawStore:
    def __init__(self, settings: Settings, ledger: AccountLedger) -> None:
        self.settings = settings
        self.table = ledger.recorder.events_table_name

    def change_state(
        self, account_id: UUID, version: int, change: Callable[[bytes], bytes]
    ) -> None:
        where = "originator_id = {} AND originator_version = {}"
        (state,) = self._one(f"SELECT state FROM {{table}} WHERE {where}", account_id, version)
        self._execute(
            f"UPDATE {{table}} SET state = {{}} WHERE {where}",
            change(bytes(state)),
            account_id,
            version,
        )

    def garble_state(self, account_id: UUID, version: int) -> None:
        """Leaves a state the ledger can no longer read. In SQLite, as an SQL `replace()` does:
        the BLOB becomes TEXT. In PostgreSQL (where a bytea stays bytes) by cutting off the
        state's first byte, so that it is no longer JSON."""
        where = "originator_id = {} AND originator_version = {}"
        edit = "replace(state, 'marta', 'marty')"
        if self.settings.database_url is not None:
            edit = "substring(state from 2)"
        self._execute(f"UPDATE {{table}} SET state = {edit} WHERE {where}", account_id, version)

    def change_topic(self, account_id: UUID, version: int, topic: str) -> None:
        self._execute(
            "UPDATE {table} SET topic = {} WHERE originator_id = {} AND originator_version = {}",
            topic,
            account_id,
            version,
        )

    def delete(self, account_id: UUID, from_version: int = 1) -> None:
        self._execute(
            "DELETE FROM {table} WHERE originator_id = {} AND originator_version >= {}",
            account_id,
            from_version,
        )

    def respell_id(self, account_id: UUID, version: int, spelling: str) -> None:
        """One event stored under its account's id written another way (SQLite's text column;
        PostgreSQL's uuid column holds one spelling, and refuses this)."""
        self._execute(
            "UPDATE {table} SET originator_id = {} "
            "WHERE originator_id = {} AND originator_version = {}",
            spelling,
            account_id,
            version,
        )

    def remove(self, account_id: UUID, version: int) -> None:
        """One event removed, the events after it left as they are."""
        self._execute(
            "DELETE FROM {table} WHERE originator_id = {} AND originator_version = {}",
            account_id,
            version,
        )

    def swap_versions(self, account_id: UUID, one: int, other: int) -> None:
        """Each of two events stored as the other's version, their contents left as written."""
        where = "WHERE originator_id = {} AND originator_version = {}"
        for old, new in ((one, -1), (other, one), (-1, other)):
            self._execute(
                f"UPDATE {{table}} SET originator_version = {{}} {where}", new, account_id, old
            )

    def swap_positions(self, one: tuple[UUID, int], other: tuple[UUID, int]) -> None:
        """Two events, each given the other's position in the log (notification id), unchanged."""
        column = "rowid" if self.settings.database_url is None else "notification_id"
        where = "WHERE originator_id = {} AND originator_version = {}"
        (first,) = self._one(f"SELECT {column} FROM {{table}} {where}", *one)
        (second,) = self._one(f"SELECT {column} FROM {{table}} {where}", *other)
        for event, position in ((one, -1), (other, first), (one, second)):
            self._execute(f"UPDATE {{table}} SET {column} = {{}} {where}", position, *event)

    def move_to_end(self, account_id: UUID, version: int) -> None:
        """The event given a position after every other in the log, unchanged."""
        column = "rowid" if self.settings.database_url is None else "notification_id"
        self._execute(
            f"UPDATE {{table}} SET {column} = {column} + 1000 "
            "WHERE originator_id = {} AND originator_version = {}",
            account_id,
            version,
        )

    def _one(self, statement: str, *params: object) -> tuple:
        return self._run(statement, params, fetch=True)

    def _execute(self, statement: str, *params: object) -> None:
        self._run(statement, params, fetch=False)

    def _run(self, statement: str, params: tuple, fetch: bool):  # type: ignore[no-untyped-def]
        if self.settings.database_url is None:
            values = [p.hex if isinstance(p, UUID) else p for p in params]
            query = statement.replace("{table}", self.table).replace("{}", "?")
            with sqlite3.connect(self.settings.sqlite_path) as conn:
                row = conn.execute(query, values).fetchone()
            return row if fetch else None
        table = sql.Identifier(self.settings.database_schema, self.table.split(".")[-1])
        query = sql.SQL(statement.replace("{}", "%s")).format(table=table)
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchone() if fetch else None


def five_events(ledger: AccountLedger, domain: str) -> UUID:
    """An account with five events: registered, screened, rated, prioritised, re-rated."""
    details = Firmographics("Acme", domain, "it", 200, 9_000_000, "EUR", "DE", 0.1, "fair")
    account_id = ledger.register(details, META).account.id
    ledger.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], None, META)
    ledger.score_bant(account_id, BantRating(3, 3, 3, 3, {}), META)
    ledger.score_bant(account_id, BantRating(4, 3, 3, 3, {}), META)
    assert ledger.account(account_id).version == 5
    return account_id


def flip_a_byte(state: bytes) -> bytes:
    """One byte of who made the change altered: still valid JSON, a different fact."""
    at = state.index(b'"actor":"') + len(b'"actor":"')
    return state[:at] + bytes([state[at] ^ 0x01]) + state[at + 1 :]


def crm(settings: Settings, *argv: str) -> int:
    args = build_parser(settings).parse_args(list(argv))
    return args.run(args, settings)


def verify_offline(export: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "verify_export.py"), str(export), *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
