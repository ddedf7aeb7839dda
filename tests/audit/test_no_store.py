"""An audit command pointed where there is no event store says so and exits with 2: it never
creates a store, so an auditor at the wrong place never gets a green result."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import psycopg
import pytest

from services.settings import Settings
from tests.audit.tampering import crm

COMMANDS = {
    "verify": ("verify",),
    "verify one account": ("verify", "--account", "00000000-0000-0000-0000-000000000001"),
    "checkpoint": ("checkpoint",),
    "history": ("history", "00000000-0000-0000-0000-000000000001"),
    "export": ("export", "--out", "export.jsonl"),
}


def _schema_exists(settings: Settings) -> bool:
    with psycopg.connect(settings.database_url) as conn:
        query = "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s"
        return conn.execute(query, (settings.database_schema,)).fetchone() is not None


@pytest.mark.parametrize("argv", COMMANDS.values(), ids=COMMANDS.keys())
def test_an_audit_command_where_there_is_no_store_exits_2_and_creates_none(
    settings, argv, tmp_path, monkeypatch, capsys
):
    # Given settings that name a place where no event store was ever opened
    monkeypatch.chdir(tmp_path)

    # When an audit command runs there
    status = crm(settings, "audit", *argv)

    # Then it says there is no event store there, and leaves none behind
    said = capsys.readouterr()
    assert status == 2
    assert said.out == ""
    assert "there is no event store at" in said.err
    if settings.database_url is None:
        assert str(settings.sqlite_path) in said.err
        assert not settings.data_dir.exists()
    else:
        # Named without a password: none in the user part, and no query (?password=)
        assert settings.database_schema in said.err and "?" not in said.err
        assert not _schema_exists(settings)
    assert not (tmp_path / "export.jsonl").exists()


@pytest.mark.parametrize("store", ["postgres"])
def test_no_store_is_said_without_a_password_given_in_the_query(settings, capsys):
    # libpq takes ?password= as well as user:password@
    url = settings.database_url + ("&" if "?" in settings.database_url else "?")
    url += "password=TopSecret1"
    elsewhere = replace(settings, database_url=url, database_schema="nothere")

    assert crm(elsewhere, "audit", "verify") == 2
    said = capsys.readouterr().err
    assert "there is no event store at" in said and "TopSecret1" not in said


def test_verify_in_a_directory_without_a_store_does_not_create_var(tmp_path, monkeypatch, capsys):
    # Given the working directory of someone who forgot CRM_DATA_DIR
    monkeypatch.chdir(tmp_path)

    status = crm(Settings.from_env({}), "audit", "verify")

    assert status == 2
    assert "there is no event store at var/crm.sqlite3" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_file_without_events_is_not_an_event_store(tmp_path, capsys):
    # Given a SQLite file at the store's place that holds something else
    settings = Settings(data_dir=tmp_path)
    with sqlite3.connect(settings.sqlite_path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")

    status = crm(settings, "audit", "verify")

    assert status == 2
    assert "(the file holds no events)" in capsys.readouterr().err
    with sqlite3.connect(settings.sqlite_path) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == [("notes",)]


def test_an_empty_store_that_exists_verifies(ledger, settings, capsys):
    """A store with nothing in it yet is still a store: verify answers for it."""
    assert crm(settings, "audit", "verify") == 0
    assert "verified 0 accounts, 0 events" in capsys.readouterr().out
