"""Where a command writes: a path it cannot write stops it with exit status 2 and one line
naming the path, not a traceback; a pipe whose reader has gone stops it quietly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from domain.ledger import CommandMeta
from services.cli import main
from services.importing import import_rows
from tests.processes import ROOT, crm_environment


@pytest.fixture
def regular_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("kept")
    return path


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("/proc/nope", "cannot write /proc/nope: No such file or directory"),
        ("{regular_file}", "cannot write {regular_file}: Not a directory"),
        ("{regular_file}/under", "cannot write {regular_file}/under: Not a directory"),
    ],
)
def test_crm_contracts_export_to_a_directory_it_cannot_make_stops_naming_it(
    where, says, regular_file, capsys
):
    code = main(["contracts", "export", where.format(regular_file=regular_file)])

    assert code == 2
    assert capsys.readouterr().err == f"crm contracts export: {says}\n".format(
        regular_file=regular_file
    )
    assert regular_file.read_text() == "kept"


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("/proc/nope/x", "cannot write /proc/nope/x: No such file or directory"),
        ("{tmp_path}", "cannot write {tmp_path}: Is a directory"),
        ("{regular_file}/x", "cannot write {regular_file}/x: Not a directory"),
    ],
)
@pytest.mark.parametrize(
    ("command", "name"),
    [(["audit", "export"], "crm audit export"), (["export", "accounts"], "crm export")],
)
@pytest.mark.parametrize("store", ["sqlite"])  # the output path is the store's no matter
def test_an_export_to_a_file_it_cannot_write_stops_naming_it(
    command, name, where, says, ledger, settings, regular_file, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CRM_DATA_DIR", str(settings.data_dir))  # an event store is there
    paths = {"regular_file": regular_file, "tmp_path": tmp_path}
    code = main([*command, "--out", where.format(**paths)])

    assert code == 2
    assert capsys.readouterr().err == f"{name}: {says}\n".format(**paths)
    assert not [p for d in (tmp_path, tmp_path.parent) for p in d.glob("*.partial")]


def test_crm_export_where_no_event_store_is_says_so_and_makes_none(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path / "var"))  # run in another directory

    code = main(["export", "accounts"])

    assert code == 2
    assert capsys.readouterr() == (
        "",
        f"crm export: there is no event store at {tmp_path / 'var' / 'crm.sqlite3'}\n",
    )
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize("store", ["sqlite"])
def test_crm_export_replaces_an_earlier_file_only_once_the_new_one_is_whole(
    ledger, settings, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CRM_DATA_DIR", str(settings.data_dir))
    out = tmp_path / "accounts.csv"
    out.write_text("an earlier export\n")

    assert main(["export", "accounts", "--out", str(out)]) == 0

    assert out.read_text().splitlines()[0].startswith("account_id,name,")
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("store", ["sqlite"])
def test_an_export_is_for_its_user_alone_and_follows_no_link_beside_it(
    ledger, settings, tmp_path, monkeypatch
):
    monkeypatch.setenv("CRM_DATA_DIR", str(settings.data_dir))
    victim = tmp_path / "victim.txt"
    victim.write_text("kept\n")
    out = tmp_path / "ledger.jsonl"
    (tmp_path / "ledger.jsonl.partial").symlink_to(victim)  # the name an export once wrote

    assert main(["audit", "export", "--out", str(out)]) == 0

    assert victim.read_text() == "kept\n"
    assert out.stat().st_mode & 0o777 == 0o600
    assert {p.name for p in tmp_path.iterdir()} - {settings.data_dir.name} == {
        "ledger.jsonl",
        "ledger.jsonl.partial",
        "victim.txt",
    }


@pytest.mark.parametrize("store", ["sqlite"])
@pytest.mark.parametrize(
    "command", [["export", "accounts", "--format", "jsonl"], ["audit", "history", "{account}"]]
)
def test_a_reader_that_has_gone_ends_the_command_quietly_with_status_141(command, ledger, settings):
    # `crm … | head -1`, with head gone before crm writes: a pipe whose reading end is closed.
    template = (ROOT / "docs" / "import-template.csv").read_bytes()
    (account, *_) = import_rows(ledger, template, CommandMeta("importer")).account_ids
    reading, writing = os.pipe()
    os.close(reading)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", *(a.format(account=account) for a in command)],
            env=crm_environment(settings),
            cwd=ROOT,
            stdout=writing,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(writing)

    assert done.returncode == 141  # as a shell reports a command that SIGPIPE ended
    assert "Error" not in done.stderr  # no BrokenPipeError, neither traceback nor message
