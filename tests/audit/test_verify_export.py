"""The offline verifier: an export says what it holds, so that an account removed from a
whole-store export, or an export cut off on the way, does not verify; a file that is not an
export is refused as unreadable (exit status 2) with a line saying why, never verified."""

from __future__ import annotations

import csv
import io
import json
from uuid import UUID

import pytest

from domain.account import Firmographics
from domain.ledger import CommandMeta
from tests.audit.tampering import RawStore, crm, verify_offline

META = CommandMeta("marta", reason="audit", request_id="req-1")


@pytest.fixture
def exported(client, ledger, settings, tmp_path):
    """A whole-store export, in both formats, of three accounts under checkpoint 1."""
    ids = []
    for name in ("acme", "globex", "initech"):
        details = Firmographics(name, f"{name}.com", "it", 10, 1, "EUR", "DE", 0.1, "fair")
        ids.append(ledger.register(details, META).account.id)
    assert client.post("/audit/checkpoints").status_code == 201
    files = {}
    for fmt in ("jsonl", "csv"):
        files[fmt] = tmp_path / f"ledger.{fmt}"
        assert crm(settings, "audit", "export", "--format", fmt, "--out", str(files[fmt])) == 0
    return ids, files


def _without(path, account_id, tmp_path):
    """The export with every line that names the account left out, as `grep -v` does."""
    cut = tmp_path / f"cut{path.suffix}"
    kept = [line for line in path.read_text().splitlines(True) if str(account_id) not in line]
    cut.write_text("".join(kept))
    return cut


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_whole_store_export_with_an_account_removed_does_not_verify(exported, tmp_path, fmt):
    # Given a whole-store export that verifies
    (acme, _, _), files = exported
    assert verify_offline(files[fmt]).returncode == 0

    # When every line of one account is removed from it
    result = verify_offline(_without(files[fmt], acme, tmp_path))

    # Then it does not verify, and says that accounts were removed
    assert result.returncode == 1, result.stdout
    assert "the checkpoint recorded 3 accounts" in result.stdout
    assert "accounts were removed" in result.stdout


def test_an_export_says_what_it_holds_and_cannot_pass_for_another(exported, tmp_path):
    # Given a whole-store export relabelled as one account's export
    (acme, _, _), files = exported
    lines = files["jsonl"].read_text().splitlines()
    header = json.loads(lines[0])
    relabelled = tmp_path / "relabelled.jsonl"
    account = {"record": "export", "scope": "account", "account_id": str(acme)}
    relabelled.write_text("\n".join([json.dumps(account), *lines[1:]]) + "\n")

    # When it is verified
    result = verify_offline(relabelled)

    # Then the records of other accounts give it away
    assert header == {"record": "export", "scope": "store"}
    assert result.returncode == 1
    assert f"the export of account {acme} holds records of 2 other accounts" in result.stdout


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_cut_off_on_the_way_does_not_verify(exported, tmp_path, fmt):
    # Given a whole-store export that lost its last line on the way
    _, files = exported
    cut = tmp_path / f"cut.{fmt}"
    cut.write_text("".join(files[fmt].read_text().splitlines(True)[:-1]))

    # When it is verified
    result = verify_offline(cut)

    # Then it does not verify, and says that it ends early
    assert result.returncode == 1
    assert "does not end with its `end` record" in result.stdout


def test_one_accounts_export_verifies_as_such(client, exported, tmp_path):
    (acme, _, _), _ = exported
    one = tmp_path / "acme.jsonl"
    one.write_text(client.get(f"/accounts/{acme}/history", params={"format": "jsonl"}).text)

    result = verify_offline(one)

    assert result.returncode == 0, result.stdout
    assert "1 accounts (one account's export) against checkpoint 1" in result.stdout


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_of_texts_with_line_separators_verifies(client, settings, tmp_path, fmt):
    # Given a note and a reason holding Unicode's line and paragraph separators, which a text
    # may hold, in the stored state and the readable columns of the export
    details = Firmographics("Acme", "acme.com", "it", 10, 1, "EUR", "DE", 0.1, "fair")
    account_id = client.post("/accounts", json=vars(details)).json()["id"]
    screening = {
        "outcome": "qualified",
        "criteria": ["industry"],
        "note": "first line\u2028second line",
        "reason": "met\u2029at the fair",
    }
    assert client.post(f"/accounts/{account_id}/screening", json=screening).status_code == 200
    assert client.post("/audit/checkpoints").status_code == 201
    out = tmp_path / f"ledger.{fmt}"
    assert crm(settings, "audit", "export", "--format", fmt, "--out", str(out)) == 0

    # When it is verified offline
    result = verify_offline(out)

    # Then each record is read whole, and the export verifies
    assert "\u2028" in out.read_text(encoding="utf-8")
    assert result.returncode == 0, result.stderr
    assert "verified: 1 accounts (the whole store) against checkpoint 1" in result.stdout


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_what_an_export_shows_for_reading_is_checked_against_the_stored_state(
    client, ledger, settings, tmp_path, fmt
):
    # Given an account with a contact (an id the store writes in its own form), a reason a
    # spreadsheet would take for a formula (written with a ' before it in CSV), and, last, a
    # screening stored before screenings had a policy version (its reading fills in null), its
    # reason beginning with a quote (written with another before it in CSV)
    details = Firmographics("Acme", "acme.com", "it", 10, 1, "EUR", "DE", 0.1, "fair")
    account_id = client.post("/accounts", json=vars(details)).json()["id"]
    contact = {"name": "Ann", "title": "CTO", "buying_role": "technical"}
    contact |= {"decision_power": "influencer", "reason": "=met at the fair"}
    assert client.post(f"/accounts/{account_id}/contacts", json=contact).status_code == 200
    screening = {"outcome": "qualified", "criteria": ["industry"], "reason": "'fits'"}
    assert client.post(f"/accounts/{account_id}/screening", json=screening).status_code == 200
    RawStore(settings, ledger).change_state(UUID(account_id), 3, _as_screened_v1)
    out = tmp_path / f"ledger.{fmt}"
    assert crm(settings, "audit", "export", "--format", fmt, "--out", str(out)) == 0

    # When it is verified as exported, and with what is shown of two events altered
    as_exported = verify_offline(out)
    records = _records(out, fmt)
    events = {int(r["version"]): r for r in records if r["record"] == "event"}
    events[2]["actor"] = "someone else"  # the contact added
    events[3]["data"] = {**events[3]["data"], "outcome": "excluded"}  # the screening
    altered = tmp_path / f"altered.{fmt}"
    _write(altered, fmt, records)
    result = verify_offline(altered)

    # Then the export verifies, and the altered one does not, naming each altered field
    if fmt == "csv":
        assert "'=met at the fair" in out.read_text()
        assert "''fits'" in out.read_text()
    assert as_exported.returncode == 0, as_exported.stdout
    assert result.returncode == 1
    assert f"account {account_id}: version 2: its `actor` is not what" in result.stdout
    assert f"account {account_id}: version 3: its `data` is not what" in result.stdout


def _as_screened_v1(state: bytes) -> bytes:
    stored = json.loads(state)
    del stored["policy_version"], stored["class_version"]
    return json.dumps(stored, separators=(",", ":")).encode()


def _records(path, fmt: str) -> list[dict]:
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    rows = list(csv.DictReader(io.StringIO(path.read_text(), newline="")))
    for row in rows:
        row["data"] = json.loads(row["data"]) if row["data"] else None
    return rows


def _write(path, fmt: str, records: list[dict]) -> None:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        return
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(records[0]))
    writer.writeheader()
    for row in records:
        writer.writerow({**row, "data": json.dumps(row["data"]) if row["data"] else ""})
    path.write_text(out.getvalue(), newline="")


def _csv(*rows: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["record", "account_id", "scope", "events"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


PROBLEM = '{"type": "urn:crm:problem:not-found", "status": 404, "title": "Account not found"}\n'
HEADER = '{"record": "export", "scope": "store"}\n'
NOT_EXPORTS = {
    "an empty file": ("", "the file is empty"),
    "a blank file": ("\n  \n", "the file is empty"),
    "plain text": ("hello auditor\n", "neither JSON Lines nor CSV"),
    "a saved problem body": (PROBLEM, "line 1 has no `record` field"),
    "a JSON line that is not an object": (HEADER + "[1]\n", "line 2 is not a record"),
    "a line that is not JSON": (HEADER + '{"cut', "not JSON"),
    "an event without its hash": (
        HEADER
        + '{"record": "event", "account_id": "a", "version": 1, "topic": "t", "state": "{}"}\n',
        "line 2: the event record needs hash",
    ),
    "an export that does not say what it holds": (
        '{"record": "end", "events": 0}\n',
        "first record, and only that one, must be the `export` record",
    ),
    "a record named by a list": (HEADER + '{"record": []}\n', "line 2 is an unknown record []"),
    "a line nested too deeply": (HEADER + "[" * 100_000 + "]" * 100_000, "nests too deeply"),
    "a CSV row without a record": (_csv({"scope": "store"}), "has no `record` field"),
    "a CSV row of an unknown record": (_csv({"record": "note"}), "unknown record 'note'"),
    "a CSV count that is not a number": (
        _csv({"record": "export", "scope": "store"}, {"record": "end", "events": "ten"}),
        "events is not a number",
    ),
}


@pytest.mark.parametrize("content,said", NOT_EXPORTS.values(), ids=NOT_EXPORTS.keys())
def test_a_file_that_is_not_an_export_is_unreadable_not_verified(tmp_path, content, said):
    path = tmp_path / "file"
    path.write_text(content)

    result = verify_offline(path)

    assert result.returncode == 2, result.stdout
    assert result.stdout == ""
    assert f"cannot read {path}: " in result.stderr and said in result.stderr
    assert "Traceback" not in result.stderr


def test_an_event_exported_twice_is_named_as_such(exported, tmp_path):
    _, files = exported
    lines = files["jsonl"].read_text().splitlines(True)
    at = next(
        i for i, line in enumerate(lines) if '"record": "event"' in line.replace('":"', '": "')
    )
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_text("".join([*lines[: at + 1], lines[at], *lines[at + 1 :]]))

    result = verify_offline(doubled)

    account_id = json.loads(lines[at])["account_id"]
    assert result.returncode == 1
    assert f"account {account_id}: first bad version 1: it is exported twice" in result.stdout


def test_an_id_in_a_state_that_is_no_id_is_reported_not_crashed_on(exported, tmp_path):
    _, files = exported
    records = _records(files["jsonl"], "jsonl")
    event = next(r for r in records if r["record"] == "event")
    state = json.loads(event["state"])
    state["originator_id"] = {"_type_": "uuid_hex", "_data_": "zz"}
    event["state"] = json.dumps(state, separators=(",", ":"))
    changed = tmp_path / "changed.jsonl"
    _write(changed, "jsonl", records)

    result = verify_offline(changed)

    assert result.returncode == 1, result.stderr
    assert f"account {event['account_id']}: first bad version 1" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_file_that_is_not_text_is_unreadable(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"\xff\xfe\x00binary")

    result = verify_offline(path)

    assert result.returncode == 2 and "cannot read" in result.stderr
