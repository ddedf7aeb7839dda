"""An event changed so that it can no longer be read (its state garbled, or its topic changed)
is reported with its version by verify, the audit and the offline verifier; reads of its account
answer a problem that names it, never a 500; exports carry it as stored, whole, on both stores."""

from __future__ import annotations

import json
import logging
import threading
import time

import psycopg
import pytest
from eventsourcing.utils import get_topic

from domain.account import Account, BantRating, Firmographics
from domain.errors import EventUnreadable
from domain.ledger import CommandMeta
from domain.vocabulary import FunnelState, ScreeningOutcome
from projections.account_queries import Filters, cursor_key, leaderboard
from services.audit import Audit
from services.store import open_ledger
from tests.audit.tampering import RawStore, crm, verify_offline

META = CommandMeta("marta", reason="quarterly review", request_id="req-1")
MATERIAL_SENT, MEETING_HELD = 5, 7


def _account(ledger, domain: str):
    """Eight events: registered, screened, rated, prioritised, material sent (5), in outreach,
    meeting held (7), warming up."""
    details = Firmographics("Acme", domain, "it", 200, 9_000_000, "EUR", "DE", 0.1, "fair")
    account_id = ledger.register(details, META).account.id
    ledger.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], None, META)
    ledger.score_bant(account_id, BantRating(3, 3, 3, 3, {}), META)
    ledger.send_material(account_id, "deck", "email", None, META)
    # Not read back here: an account this process has loaded is served from memory
    assert ledger.hold_meeting(account_id, "went well", META).account.version == 8
    return account_id


@pytest.fixture
def accounts(ledger):
    return _account(ledger, "acme.com"), _account(ledger, "globex.com")


def _event_lines(text: str) -> list[dict]:
    return [r for r in map(json.loads, text.splitlines()) if r["record"] == "event"]


def test_an_event_whose_state_can_no_longer_be_read_is_reported_and_refused_by_reads(
    client, ledger, settings, accounts, tmp_path, capsys
):
    # Given a checkpoint, and then version 2 of Acme edited so that it can no longer be read
    acme, globex = accounts
    client.post("/audit/checkpoints")
    RawStore(settings, ledger).garble_state(acme, 2)

    # When an auditor checks and reads the record
    audit = client.get(f"/accounts/{acme}/audit")
    cli = crm(settings, "audit", "verify")
    said = capsys.readouterr().err
    one = crm(settings, "audit", "verify", "--account", str(acme))
    reads = {
        "now": client.get(f"/accounts/{acme}"),
        "at a version": client.get(f"/accounts/{acme}", params={"version": 3}),
        "history": client.get(f"/accounts/{acme}/history"),
        "diff": client.get(f"/accounts/{acme}/diff", params={"from": "1"}),
    }
    before_it = client.get(f"/accounts/{acme}/diff", params={"from": "0", "to": "1"})
    restarted = open_ledger(settings)  # the service's writer still holds Acme as it wrote it
    try:
        with pytest.raises(EventUnreadable) as refused:
            restarted.move_funnel(acme, FunnelState.THINK, META)
    finally:
        restarted.close()

    # Then the chain is broken at version 2, and every read says so instead of failing
    assert audit.status_code == 200
    assert (audit.json()["verified"], audit.json()["first_bad_version"]) == (False, 2)
    assert "can no longer be read" in audit.json()["problem"]
    assert cli == 1 and f"account {acme}: first bad version 2" in said
    assert str(globex) not in said
    assert one == 1
    for name, answer in reads.items():
        assert answer.status_code == 409, name
        assert answer.json()["type"] == "urn:crm:problem:event-unreadable", name
        assert (answer.json()["account_id"], answer.json()["version"]) == (str(acme), 2), name
    assert client.get(f"/accounts/{globex}").status_code == 200
    assert (refused.value.originator_id, refused.value.version) == (acme, 2)
    assert before_it.status_code == 200  # what came before the event still compares
    assert before_it.json()["to_version"] == 1
    paths = client.get("/schema/openapi.json").json()["paths"]
    for read in ("", "/history", "/diff"):  # the answer is documented
        responses = paths[f"/accounts/{{account_id}}{read}"]["get"]["responses"]
        assert "event-unreadable" in responses["409"]["description"], read


PRIORITISED = 4


def _replace(old: bytes, new: bytes):  # type: ignore[no-untyped-def]
    def change(state: bytes) -> bytes:
        assert old in state
        return state.replace(old, new, 1)

    return change


VALUES_CHANGED = {
    "a stage it does not know": (PRIORITISED, _replace(b'"prioritized"', b'"bogus"')),
    "a rating of the wrong type": (3, _replace(b'"budget":3', b'"budget":"four"')),
    "a rating out of range": (3, _replace(b'"budget":3', b'"budget":99')),
    "a timestamp without a time zone": (PRIORITISED, _replace(b'+00:00"', b'"')),
    "a state set to NULL": (PRIORITISED, lambda state: None),
}


@pytest.mark.parametrize("change", VALUES_CHANGED, ids=list(VALUES_CHANGED))
def test_an_event_whose_values_the_account_refuses_is_named_by_every_read_and_check(
    client, ledger, settings, accounts, capsys, change
):
    # Given an event of Acme changed behind the ledger's back into one that still decodes (or
    # not), but that no account could have recorded
    acme, globex = accounts
    version, edit = VALUES_CHANGED[change]
    after = client.get(f"/accounts/{acme}", params={"version": 8}).json()["updated_at"]
    if change == "a state set to NULL" and settings.database_url is not None:
        with pytest.raises(psycopg.errors.NotNullViolation):  # PostgreSQL's column refuses it
            RawStore(settings, ledger).change_state(acme, version, edit)
        return
    RawStore(settings, ledger).change_state(acme, version, edit)

    # When the account is read in every way, and checked
    reads = {
        "now": client.get(f"/accounts/{acme}"),
        "at a version": client.get(f"/accounts/{acme}", params={"version": 6}),
        "as of an instant": client.get(f"/accounts/{acme}", params={"as_of": after}),
        "history": client.get(f"/accounts/{acme}/history"),
        "diff": client.get(f"/accounts/{acme}/diff", params={"from": "1"}),
        "diff of instants": client.get(f"/accounts/{acme}/diff", params={"from": after}),
    }
    audit = client.get(f"/accounts/{acme}/audit")
    verified = crm(settings, "audit", "verify")
    history = crm(settings, "audit", "history", str(acme))
    said = capsys.readouterr()

    # Then each names the event as unreadable: none blames the request, none is a 500
    for name, answer in reads.items():
        assert answer.status_code == 409, (name, answer.text)
        assert answer.json()["type"] == "urn:crm:problem:event-unreadable", name
        assert (answer.json()["account_id"], answer.json()["version"]) == (str(acme), version)
    assert audit.status_code == 200
    assert (audit.json()["verified"], audit.json()["first_bad_version"]) == (False, version)
    assert verified == 1 and f"account {acme}: first bad version {version}" in said.err
    assert history == 1 and f"Version {version} of {acme} can no longer be read" in said.err
    assert client.get(f"/accounts/{globex}").status_code == 200


def test_the_exports_carry_an_unreadable_event_as_stored_and_whole(
    client, ledger, settings, accounts, tmp_path
):
    # Given version 2 of Acme that can no longer be read
    acme, _ = accounts
    client.post("/audit/checkpoints")
    RawStore(settings, ledger).garble_state(acme, 2)

    # When the record is taken away in every form
    exports = {
        "http store": client.get("/audit/export").text,
        "http account": client.get(f"/accounts/{acme}/history", params={"format": "jsonl"}).text,
    }
    for name, argv in {"cli store": (), "cli account": ("--account", str(acme))}.items():
        out = tmp_path / f"{name}.jsonl"
        assert crm(settings, "audit", "export", "--out", str(out), *argv) == 0
        exports[name] = out.read_text()
    csv = tmp_path / "export.csv"
    assert crm(settings, "audit", "export", "--format", "csv", "--out", str(csv)) == 0

    # Then each is whole, holds the event as stored marked unreadable, and does not verify
    for name, text in exports.items():
        assert json.loads(text.splitlines()[-1])["record"] == "end", name
        (bad,) = [e for e in _event_lines(text) if "unreadable" in e]
        assert (bad["account_id"], bad["version"]) == (str(acme), 2), name
        (tmp_path / "taken.jsonl").write_text(text)
        offline = verify_offline(tmp_path / "taken.jsonl")
        assert offline.returncode == 1, name
        assert f"account {acme}: first bad version 2: it can no longer be read" in offline.stdout
    spreadsheet = verify_offline(csv)
    assert spreadsheet.returncode == 1
    assert f"account {acme}: first bad version 2" in spreadsheet.stdout


@pytest.mark.parametrize("form", ["jsonl", "csv"])
def test_an_event_stored_without_its_state_is_named_offline_in_either_form(
    ledger, settings, accounts, tmp_path, form
):
    # Given version 4 of Acme whose state was emptied in the store
    acme, _ = accounts
    RawStore(settings, ledger).change_state(acme, 4, lambda _state: b"")

    # When the store is exported and checked offline
    out = tmp_path / f"ledger.{form}"
    assert crm(settings, "audit", "export", "--format", form, "--out", str(out)) == 0
    offline = verify_offline(out)

    # Then the export is read, and the event named as the first bad version of its account
    assert offline.returncode == 1, offline.stdout + offline.stderr
    assert f"account {acme}: first bad version 4" in offline.stdout


@pytest.mark.parametrize(
    ("version", "topic"),
    [
        (MATERIAL_SENT, get_topic(Account.MeetingHeld)),
        (MEETING_HELD, get_topic(Account.MaterialSent)),
        (MATERIAL_SENT, "nosuchmodule:Thing"),
    ],
    ids=["material sent made a meeting", "meeting made a material sent", "a topic of no kind"],
)
def test_an_event_given_another_topic_is_found_and_exported_whole(
    client, ledger, settings, accounts, tmp_path, capsys, version, topic
):
    # Given a checkpoint, then one of Acme's events given the topic of another event type
    acme, globex = accounts
    client.post("/audit/checkpoints")
    RawStore(settings, ledger).change_topic(acme, version, topic)

    # When an auditor checks, reads and takes the record away
    audit = client.get(f"/accounts/{acme}/audit").json()
    cli = crm(settings, "audit", "verify")
    said = capsys.readouterr().err
    out = tmp_path / "export.jsonl"
    exported = crm(settings, "audit", "export", "--out", str(out))
    whole = client.get("/audit/export")
    history = client.get(f"/accounts/{acme}/history", params={"format": "jsonl"})
    page = client.get(f"/accounts/{acme}/history")

    # Then the changed version is named everywhere, and no answer is a 500 or cut off
    assert (audit["verified"], audit["first_bad_version"]) == (False, version)
    assert cli == 1 and f"account {acme}: first bad version {version}" in said
    assert exported == 0
    for text in (out.read_text(), whole.text, history.text):
        assert json.loads(text.splitlines()[-1])["record"] == "end"
        changed = next(e for e in _event_lines(text) if e["version"] == version)
        assert changed["topic"] == topic
    offline = verify_offline(out)
    assert offline.returncode == 1
    assert f"account {acme}: first bad version {version}" in offline.stdout
    assert str(globex) not in offline.stdout
    assert whole.status_code == 200 and history.status_code == 200
    assert page.status_code in (200, 409)  # read as the other type, or refused: never a 500
    if page.status_code == 409:
        assert page.json()["version"] == version


def test_a_checkpoint_that_can_no_longer_be_read_is_named_and_nothing_is_half_exported(
    client, ledger, settings, accounts, tmp_path, capsys
):
    # Given a checkpoint whose first event was edited so that it can no longer be read
    entry = Audit(ledger).checkpoint(META)
    RawStore(settings, ledger).garble_state(entry.checkpoint_id, 1)
    out = tmp_path / "export.jsonl"
    out.write_text("the previous export\n")

    # When an auditor verifies and exports
    verified = crm(settings, "audit", "verify")
    exported = crm(settings, "audit", "export", "--out", str(out))
    said = capsys.readouterr().err
    whole = client.get("/audit/export")

    # Then both name the checkpoint's event, and no export is written or cut off
    assert verified == 1 and exported == 1
    named = f"checkpoint 1 ({entry.checkpoint_id}): first bad version 1: version 1 can no longer"
    assert said.count(named) == 2
    assert out.read_text() == "the previous export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("export")] == ["export.jsonl"]
    assert whole.status_code == 409
    assert whole.json()["rule"] == "checkpoint_intact"
    assert any(p.startswith(named) for p in whole.json()["problems"])


def test_an_unreadable_event_that_no_read_model_applies_does_not_hold_the_read_models_up(
    ledger, projector, settings, accounts
):
    # Given Acme's material sent (version 5) edited so that it can no longer be read, and Acme
    # re-rated after it
    acme, _ = accounts
    RawStore(settings, ledger).garble_state(acme, MATERIAL_SENT)
    ledger.score_bant(acme, BantRating(5, 5, 5, 5, {}), META)

    # When the read models catch up with the log
    projector.catch_up()

    # Then they hold the re-rating (the read models never read material sent), and verify
    # still names the event
    with projector.database.read() as conn:
        rows = leaderboard(conn, Filters(), 10, key=cursor_key(conn)).rows
    assert {(r["account_id"], r["score"]) for r in rows} >= {(str(acme), 625)}
    assert projector.position("accounts") == ledger.recorder.max_notification_id()
    assert Audit(ledger).verify_account(acme).broken.version == MATERIAL_SENT


def test_a_projector_held_up_by_an_unreadable_event_logs_one_traceback_then_a_line_a_retry(
    ledger, projector, settings, accounts, caplog
):
    # Given Acme's rating (version 3, which the leaderboard applies) edited so that it can no
    # longer be read
    acme, _ = accounts
    RawStore(settings, ledger).garble_state(acme, 3)

    # When the projector runs and tries the event three times (a second apart)
    caplog.set_level(logging.INFO, logger="crm.projector")
    stop = threading.Event()
    running = threading.Thread(target=projector.run, args=(stop,))
    running.start()
    try:
        deadline = time.monotonic() + 30
        while _projector_lines(caplog).count("projector still failing") < 2:
            assert time.monotonic() < deadline, _projector_lines(caplog)
            stop.wait(0.05)
    finally:
        stop.set()
        running.join(timeout=30)

    # Then it wrote one traceback, and after it a line each time, never saying it runs again
    # (setting up again is not getting past the event)
    records = [r for r in caplog.records if r.name == "crm.projector"]
    assert [r.exc_info is not None for r in records].count(True) == 1
    assert "projector running again" not in _projector_lines(caplog)


def _projector_lines(caplog) -> list[str]:
    return [r.getMessage().split(":")[0] for r in caplog.records if r.name == "crm.projector"]
