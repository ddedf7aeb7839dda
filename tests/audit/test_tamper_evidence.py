"""Tamper evidence: a changed byte, a deleted event, a deleted tail or a deleted account is found
by the API, by `crm audit verify` and by the offline verifier, on both stores."""

from __future__ import annotations

import json

import psycopg
import pytest

from domain.account import BantRating
from domain.errors import EventUnreadable
from services.store import open_ledger
from tests.audit.tampering import META, RawStore, crm, five_events, flip_a_byte, verify_offline


@pytest.fixture
def accounts(ledger):
    return five_events(ledger, "acme.com"), five_events(ledger, "globex.com")


def _export(settings, tmp_path, *argv):
    out = tmp_path / "export.jsonl"
    assert crm(settings, "audit", "export", "--out", str(out), *argv) == 0
    return out


def test_an_untouched_store_verifies_in_the_api_the_cli_and_offline(
    client, ledger, settings, accounts, tmp_path, capsys
):
    acme, _ = accounts
    checkpoint = client.post("/audit/checkpoints")
    again = client.post("/audit/checkpoints")  # nothing changed since: the same one, not new
    audit = client.get(f"/accounts/{acme}/audit").json()
    exported = client.get(f"/accounts/{acme}/history", params={"format": "jsonl"})
    (tmp_path / "acme.jsonl").write_text(exported.text)

    assert checkpoint.status_code == 201 and checkpoint.json()["accounts"] == 2
    assert again.status_code == 200 and again.json() == checkpoint.json()
    assert audit["verified"] is True and audit["events"] == 5
    assert audit["checkpoint"]["number"] == 1 and audit["checkpoint_version"] == 5
    last = [json.loads(line) for line in exported.text.splitlines()][-2]  # before the end
    assert last["version"] == 5 and last["hash"] == audit["head"]
    assert crm(settings, "audit", "verify") == 0
    assert "verified 2 accounts, 10 events" in capsys.readouterr().out
    assert verify_offline(tmp_path / "acme.jsonl").returncode == 0
    whole = verify_offline(_export(settings, tmp_path))
    assert whole.returncode == 0, whole.stdout
    assert checkpoint.json()["root"] in whole.stdout
    out = tmp_path / "export.csv"
    assert crm(settings, "audit", "export", "--format", "csv", "--out", str(out)) == 0
    spreadsheet = verify_offline(out)
    assert spreadsheet.returncode == 0, spreadsheet.stdout
    assert checkpoint.json()["root"] in spreadsheet.stdout
    capsys.readouterr()
    newcomer = five_events(ledger, "initech.com")  # registered after the checkpoint
    assert crm(settings, "audit", "verify", "--account", str(newcomer)) == 0
    assert "against no checkpoint that records it" in capsys.readouterr().out


@pytest.mark.parametrize("version", [2, 5])
def test_a_changed_byte_is_found_with_its_version(
    client, ledger, settings, accounts, tmp_path, capsys, version
):
    acme, globex = accounts
    client.post("/audit/checkpoints")  # the last event is only vouched for by a checkpoint
    RawStore(settings, ledger).change_state(acme, version, flip_a_byte)

    audit = client.get(f"/accounts/{acme}/audit").json()
    untouched = client.get(f"/accounts/{globex}/audit").json()
    cli = crm(settings, "audit", "verify")
    said = capsys.readouterr()
    offline = verify_offline(_export(settings, tmp_path))

    assert (audit["verified"], audit["first_bad_version"]) == (False, version)
    assert untouched["verified"] is True
    assert cli == 1 and f"account {acme}: first bad version {version}" in said.err
    assert str(globex) not in said.err
    assert offline.returncode == 1
    assert f"account {acme}: first bad version {version}" in offline.stdout


def test_a_changed_link_after_the_checkpoint_is_found_at_its_own_version(
    client, ledger, settings, accounts, tmp_path, capsys
):
    # Given Acme sealed at version 5, re-rated after (6), and the link of 6 altered
    acme, _ = accounts
    client.post("/audit/checkpoints")
    ledger.score_bant(acme, BantRating(5, 3, 3, 3, {}), META)
    RawStore(settings, ledger).change_state(acme, 6, _change_the_link)

    audit = client.get(f"/accounts/{acme}/audit").json()
    cli = crm(settings, "audit", "verify")
    said = capsys.readouterr()
    offline = verify_offline(_export(settings, tmp_path))

    # Then 6 is named, not 5, which the checkpoint vouches for
    assert (audit["first_bad_version"], audit["checkpoint_version"]) == (6, 5)
    assert cli == 1 and f"account {acme}: first bad version 6" in said.err
    assert offline.returncode == 1
    assert f"account {acme}: first bad version 6" in offline.stdout


def _change_the_link(state: bytes) -> bytes:
    at = state.index(b'"previous_hash":"') + len(b'"previous_hash":"')
    return state[:at] + (b"1" if state[at : at + 1] == b"0" else b"0") + state[at + 1 :]


def test_an_account_removed_and_registered_again_stops_the_next_checkpoint(
    client, ledger, settings, accounts
):
    # Given Acme sealed at version 5, then its events removed and the account registered again
    # by a process that never saw it (its version 1 is new, and links as a first event does)
    acme, _ = accounts
    client.post("/audit/checkpoints")
    RawStore(settings, ledger).delete(acme)
    fresh = open_ledger(settings)
    try:
        assert five_events(fresh, "acme.com") == acme
    finally:
        fresh.close()

    refused = client.post("/audit/checkpoints")

    # Then no checkpoint vouches for the new history in place of the sealed one
    assert refused.status_code == 409, refused.json()
    assert (refused.json()["rule"], refused.json()["account_id"]) == ("chain_intact", str(acme))


def test_a_changed_event_stops_the_next_checkpoint(client, ledger, settings, accounts):
    acme, _ = accounts
    RawStore(settings, ledger).change_state(acme, 3, flip_a_byte)

    refused = client.post("/audit/checkpoints")

    assert refused.status_code == 409
    assert refused.json()["rule"] == "chain_intact"
    assert refused.json()["account_id"] == str(acme)
    assert refused.json()["first_bad_version"] == 3


def test_a_deleted_event_is_found(client, ledger, settings, accounts, tmp_path, capsys):
    acme, _ = accounts
    RawStore(settings, ledger).remove(acme, 3)  # the events after it left as they were

    audit = client.get(f"/accounts/{acme}/audit").json()

    assert (audit["verified"], audit["first_bad_version"]) == (False, 3)
    assert crm(settings, "audit", "verify", "--account", str(acme)) == 1
    assert f"account {acme}: first bad version 3" in capsys.readouterr().err
    offline = verify_offline(_export(settings, tmp_path))
    assert f"account {acme}: first bad version 3" in offline.stdout


@pytest.mark.parametrize("version", [1, 3])
def test_a_deleted_event_is_named_by_the_reads_that_need_it(
    client, ledger, settings, accounts, capsys, version
):
    # Given one of Acme's events deleted, the events after it left
    acme, globex = accounts
    RawStore(settings, ledger).remove(acme, version)

    # When an auditor reads the account as it was, what changed, and its story
    reads = {
        "as of": client.get(f"/accounts/{acme}", params={"as_of": "2030-01-01T00:00:00Z"}),
        "at a version": client.get(f"/accounts/{acme}", params={"version": 4}),
        "diff": client.get(f"/accounts/{acme}/diff", params={"from": "0"}),
        "history": client.get(f"/accounts/{acme}/history"),
    }
    story = crm(settings, "audit", "history", str(acme))
    said = capsys.readouterr()
    restarted = open_ledger(settings)  # the service's writer still holds Acme as it wrote it
    try:
        with pytest.raises(EventUnreadable) as refused:
            restarted.account(acme)
    finally:
        restarted.close()

    # Then each names the missing version, as for an event that can no longer be read,
    # rather than failing or answering an account built without it
    for name, answer in reads.items():
        assert answer.status_code == 409, name
        assert answer.json()["type"] == "urn:crm:problem:event-unreadable", name
        assert (answer.json()["account_id"], answer.json()["version"]) == (str(acme), version)
    assert story == 1 and "Traceback" not in said.err
    assert f"Version {version} of {acme} can no longer be read: it is missing" in said.err
    assert (refused.value.originator_id, refused.value.version) == (acme, version)
    assert client.get(f"/accounts/{globex}", params={"as_of": "2030-01-01T00:00Z"}).is_success


def test_a_deleted_tail_is_found_against_the_checkpoint(
    client, ledger, settings, accounts, tmp_path, capsys
):
    acme, _ = accounts
    client.post("/audit/checkpoints")
    RawStore(settings, ledger).delete(acme, from_version=4)

    audit = client.get(f"/accounts/{acme}/audit").json()

    assert (audit["verified"], audit["first_bad_version"], audit["events"]) == (False, 4, 3)
    assert crm(settings, "audit", "verify") == 1
    assert f"account {acme}: first bad version 4" in capsys.readouterr().err
    offline = verify_offline(_export(settings, tmp_path))
    assert f"account {acme}: first bad version 4" in offline.stdout


@pytest.mark.parametrize("version", [3, 5])
@pytest.mark.parametrize("spelling", [lambda u: u.hex.upper(), str], ids=["capitals", "dashes"])
def test_an_event_stored_under_its_account_id_written_otherwise_is_found(
    client, ledger, settings, accounts, capsys, version, spelling
):
    acme, globex = accounts
    client.post("/audit/checkpoints")
    if settings.database_url is not None:  # a uuid column: one spelling of an id
        with pytest.raises(psycopg.errors.Error):
            RawStore(settings, ledger).respell_id(acme, version, spelling(acme) + "x")
        return
    RawStore(settings, ledger).respell_id(acme, version, spelling(acme))

    cli = crm(settings, "audit", "verify")
    said = capsys.readouterr().err
    audit = client.get(f"/accounts/{acme}/audit").json()

    assert cli == 1 and f"account {acme}: first bad version {version}" in said
    assert str(globex) not in said
    assert (audit["verified"], audit["first_bad_version"]) == (False, version)


def test_a_deleted_account_is_named(client, ledger, settings, accounts, tmp_path, capsys):
    acme, globex = accounts
    client.post("/audit/checkpoints")
    RawStore(settings, ledger).delete(acme)

    audit = client.get(f"/accounts/{acme}/audit").json()
    cli = crm(settings, "audit", "verify")
    said = capsys.readouterr().err
    offline = verify_offline(_export(settings, tmp_path))

    assert (audit["verified"], audit["missing"], audit["events"]) == (False, True, 0)
    assert cli == 1 and f"account {acme}: missing" in said
    assert offline.returncode == 1 and f"account {acme}: missing" in offline.stdout
    assert str(globex) not in offline.stdout


@pytest.mark.parametrize("removed", ["its first event", "every event"])
def test_an_account_that_lost_events_is_exported_for_the_verifier_to_find(
    client, ledger, settings, accounts, tmp_path, removed
):
    # Given a checkpoint, then Acme's first event removed, or all of them
    acme, _ = accounts
    client.post("/audit/checkpoints")
    raw = RawStore(settings, ledger)
    if removed == "its first event":
        raw.remove(acme, 1)
    else:
        raw.delete(acme)

    # When an auditor takes Acme's record away, over HTTP and with the command line
    answer = client.get(f"/accounts/{acme}/history", params={"format": "jsonl"})
    (tmp_path / "http.jsonl").write_text(answer.text)
    cli = _export(settings, tmp_path, "--account", str(acme))

    # Then it is exported, not called unknown, and the offline verifier names what is missing
    assert answer.status_code == 200
    said = "first bad version 1: it is missing" if removed == "its first event" else "missing"
    for export in (tmp_path / "http.jsonl", cli):
        offline = verify_offline(export)
        assert offline.returncode == 1
        assert f"account {acme}: {said}" in offline.stdout


def test_an_unknown_account_has_no_audit(client, settings, tmp_path, capsys):
    unknown = "00000000-0000-0000-0000-000000000001"
    out = tmp_path / "unknown.jsonl"

    assert client.get(f"/accounts/{unknown}/audit").status_code == 404
    assert client.get(f"/accounts/{unknown}/history", params={"format": "jsonl"}).status_code == 404
    assert crm(settings, "audit", "export", "--account", unknown, "--out", str(out)) == 2
    assert f"No account has id {unknown}" in capsys.readouterr().err
    assert not out.exists()


def test_checkpoints_are_recorded_periodically_and_only_when_something_changed(
    ledger, accounts, caplog
):
    import logging
    import time

    from services.audit import Audit, PeriodicCheckpoints

    class Counted(Audit):
        attempts = 0

        def checkpoint(self, meta):  # type: ignore[no-untyped-def]
            Counted.attempts += 1
            return super().checkpoint(meta)

    caplog.set_level(logging.INFO, logger="crm.audit")
    audit = Counted(ledger)
    periodic = PeriodicCheckpoints(audit, interval=0.01)
    periodic.start()
    try:
        deadline = time.monotonic() + 30
        # The first checkpoint, then four attempts in which nothing changed
        while Counted.attempts < 5 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the attempts the checkpoint thread made
    finally:
        periodic.stop()
    first = audit.latest_checkpoint()
    again = audit.checkpoint(META)

    assert first is not None and first.accounts == 2
    assert again == first  # nothing new: nothing stored
    said = [r.getMessage() for r in caplog.records if r.name == "crm.audit"]
    assert said == [f"checkpoint 1 covers position {first.position}"]  # said once, not each time
