"""A checkpoint or the checkpoint log changed behind the service's back is found: its chain is
walked as any other, its root is recomputed from its heads and compared with its seal and with
the log, and so are its number of accounts and who wrote its seal. `crm audit verify` names the
checkpoint and what differs; the HTTP audit and a new checkpoint refuse to build on it. On both
stores."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from domain.account import BantRating
from domain.chain import root_of, stored_hash
from domain.checkpoints import CHECKPOINT_LOG_ID, checkpoint_id
from services.audit import Audit
from tests.audit.tampering import META, RawStore, crm, five_events, verify_offline

# A checkpoint of two accounts is stored as: opened (1), their heads (2), sealed (3); the log as:
# started (1), then one entry a checkpoint (2 for the first).
HEADS, SEALED, FIRST_ENTRY = 2, 3, 2


@pytest.fixture
def checkpointed(ledger):
    """Two accounts, and checkpoint 1 covering them."""
    acme, globex = five_events(ledger, "acme.com"), five_events(ledger, "globex.com")
    return acme, globex, Audit(ledger).checkpoint(META)


def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    """Changes a stored state's JSON, written back compactly as the ledger writes it."""

    def edit(state: bytes) -> bytes:
        value = json.loads(state)
        change(value)
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    return edit


def _verify(settings, capsys) -> tuple[int, str]:
    status = crm(settings, "audit", "verify")
    said = capsys.readouterr()
    return status, said.out + said.err


def test_an_account_removed_with_its_head_is_found(client, ledger, settings, checkpointed, capsys):
    # Given checkpoint 1 of Acme and Globex, then Globex's events deleted and its head taken
    # out of the checkpoint, the root left as it was (so it still matches one kept elsewhere)
    acme, globex, entry = checkpointed
    raw = RawStore(settings, ledger)
    raw.delete(globex)
    raw.change_state(
        entry.checkpoint_id,
        HEADS,
        _edit(lambda s: s.update(heads=[h for h in s["heads"] if h[0] != str(globex)])),
    )

    # When an auditor verifies the store, reads the latest checkpoint and audits Globex
    status, said = _verify(settings, capsys)
    latest = client.get("/audit/checkpoints/latest")
    audit = client.get(f"/accounts/{globex}/audit")
    one = crm(settings, "audit", "verify", "--account", str(globex))
    one_said = capsys.readouterr().err
    ledger.score_bant(acme, BantRating(2, 3, 3, 3, {}), META)
    refused = client.post("/audit/checkpoints")

    # Then verify names checkpoint 1 and what differs, and nothing vouches for it any more
    name = f"checkpoint 1 ({entry.checkpoint_id})"
    assert status == 1
    assert f"{name}: first bad version {HEADS}: version {HEADS} differs" in said
    assert f"{name}: its heads give the root " in said and f"its seal says {entry.root}" in said
    assert f"{name}: its heads are of 1 accounts; its seal says 2" in said
    summary = "NOT VERIFIED: 4 problems, of 1 accounts, 5 events"
    assert f"{summary}; against no checkpoint: none stored is what was recorded" in said
    for answer in (latest, audit, refused):
        assert answer.status_code == 409, answer.json()
        assert answer.json()["rule"] == "checkpoint_intact"
        assert any("its seal says 2" in p for p in answer.json()["problems"])
    assert one == 1 and "its seal says 2" in one_said


@pytest.mark.parametrize(
    ("aggregate", "version", "change", "expected"),
    [
        ("checkpoint", 1, lambda s: s.update(position=1), "first bad version 1: version 1 differs"),
        ("checkpoint", SEALED, lambda s: s.update(root="0" * 64), "its seal says " + "0" * 64),
        ("checkpoint", SEALED, lambda s: s.update(accounts=3), "its seal says 3"),
        ("checkpoint", SEALED, lambda s: s.update(actor="mallory"), "written by mallory"),
        ("log", FIRST_ENTRY, lambda s: s.update(root="0" * 64), "lists its root as " + "0" * 64),
        ("log", FIRST_ENTRY, lambda s: s.update(position=1), "lists its position as 1"),
        ("log", FIRST_ENTRY, lambda s: s.update(actor="mallory"), "entry was written by mallory"),
        (
            "log",
            FIRST_ENTRY,
            lambda s: s.update(request_id="req-forged"),
            "entry was written by marta (request req-forged",
        ),
        (
            "checkpoint",
            SEALED,
            lambda s: s.update(request_id="req-forged"),
            "written by marta (request req-forged",
        ),
    ],
    ids=[
        "opening",
        "sealed root",
        "sealed accounts",
        "who sealed it",
        "root in the log",
        "position in the log",
        "who wrote the log's entry",
        "the request of the log's entry",
        "the request of the seal",
    ],
)
def test_a_changed_checkpoint_or_log_entry_is_named(
    client, ledger, settings, checkpointed, capsys, aggregate, version, change, expected
):
    # Given checkpoint 1, then one of its events, or its entry in the log, changed
    _, _, entry = checkpointed
    aggregate_id = entry.checkpoint_id if aggregate == "checkpoint" else CHECKPOINT_LOG_ID
    RawStore(settings, ledger).change_state(aggregate_id, version, _edit(change))

    # When an auditor verifies the store and reads the latest checkpoint
    status, said = _verify(settings, capsys)
    latest = client.get("/audit/checkpoints/latest")

    # Then both say what differs in checkpoint 1
    assert status == 1 and f"checkpoint 1 ({entry.checkpoint_id}): " in said
    assert expected in said
    assert latest.status_code == 409
    assert any(expected in p for p in latest.json()["problems"])


def test_a_checkpoint_taken_off_the_log_is_found(client, ledger, settings, checkpointed, capsys):
    # Given checkpoint 1, then its entry deleted from the checkpoint log
    _, _, entry = checkpointed
    RawStore(settings, ledger).delete(CHECKPOINT_LOG_ID, from_version=FIRST_ENTRY)

    # When an auditor verifies the store
    status, said = _verify(settings, capsys)

    # Then the checkpoint the log no longer lists is named
    assert status == 1
    assert "checkpoint 1 is stored, and the checkpoint log does not list it" in said


def test_every_checkpoint_is_checked_not_only_the_latest(ledger, settings, checkpointed, capsys):
    # Given checkpoint 1 with its seal's root changed, then checkpoint 2
    acme, _, first = checkpointed
    ledger.score_bant(acme, BantRating(2, 3, 3, 3, {}), META)
    Audit(ledger).checkpoint(META)
    RawStore(settings, ledger).change_state(
        first.checkpoint_id, SEALED, _edit(lambda s: s.update(root="0" * 64))
    )

    # When an auditor verifies the store
    status, said = _verify(settings, capsys)

    # Then checkpoint 1 is named, while the store is checked against checkpoint 2
    assert status == 1
    assert f"checkpoint 1 ({first.checkpoint_id}): its heads give the root {first.root}" in said
    assert "against checkpoint 2" in said


def test_intact_checkpoints_verify(client, ledger, settings, checkpointed, capsys):
    acme, _, _ = checkpointed
    ledger.score_bant(acme, BantRating(2, 3, 3, 3, {}), META)
    assert client.post("/audit/checkpoints").status_code == 201

    status, said = _verify(settings, capsys)

    assert status == 0 and "verified 2 accounts, 11 events; against checkpoint 2" in said
    assert client.get("/audit/checkpoints/latest").json()["number"] == 2


def test_a_checkpoint_reads_only_new_events_and_verify_finds_what_it_did_not_read(
    client, ledger, settings, checkpointed, capsys
):
    # Given checkpoint 1, then Acme's version 2 deleted, and a new event for Acme
    acme, _, _ = checkpointed
    raw = RawStore(settings, ledger)
    ledger.score_bant(acme, BantRating(2, 3, 3, 3, {}), META)
    raw._execute(
        "DELETE FROM {table} WHERE originator_id = {} AND originator_version = {}", acme, 2
    )

    # When the next checkpoint is recorded, and the store verified
    checkpoint = client.post("/audit/checkpoints")
    status, said = _verify(settings, capsys)

    # Then the checkpoint, which reads only what was written since the last, covers the new
    # event; verify, which reads everything, names the deleted version
    assert checkpoint.status_code == 201 and checkpoint.json()["number"] == 2
    assert status == 1 and f"account {acme}: first bad version 2: version 2 is missing" in said


def test_a_checkpoint_found_intact_once_is_read_again_after_it_was_altered(
    client, ledger, settings, checkpointed
):
    # Given an account audited against checkpoint 1, as the service keeps what it found intact
    acme, globex, entry = checkpointed
    assert client.get(f"/accounts/{globex}/audit").status_code == 200

    # When the checkpoint's heads are changed behind the service's back
    RawStore(settings, ledger).change_state(
        entry.checkpoint_id,
        HEADS,
        _edit(lambda s: s.update(heads=[h for h in s["heads"] if h[0] != str(acme)])),
    )

    # Then the next audit by the same service finds it
    audit = client.get(f"/accounts/{globex}/audit")
    assert (audit.status_code, audit.json()["rule"]) == (409, "checkpoint_intact")


def test_a_checkpoint_recorded_while_the_log_is_read_is_no_tampering(
    ledger, checkpointed, monkeypatch
):
    # Given an auditor's check that reads the checkpoint log just before another process
    # records checkpoint 2 (and its entry in the log, in the same transaction)
    acme, _, _ = checkpointed
    ledger.score_bant(acme, BantRating(2, 3, 3, 3, {}), META)
    read, recorded = ledger.stored_events, []

    def read_then_another_records(originator_id):
        events = read(originator_id)
        if originator_id == CHECKPOINT_LOG_ID and not recorded:
            recorded.append(True)
            Audit(ledger).checkpoint(META)
        return events

    monkeypatch.setattr(ledger, "stored_events", read_then_another_records)

    # When the check goes on
    check = Audit(ledger).check_checkpoints(latest_only=True)

    # Then it finds checkpoint 2 listed and intact
    assert check.problems == []
    assert check.latest is not None and check.latest.number == 2


def test_the_latest_checkpoint_removed_with_what_it_covered_is_found_against_a_root_kept(
    ledger, settings, checkpointed, tmp_path, capsys
):
    # Given checkpoint 2, covering a rating of Acme since checkpoint 1, whose root the auditor
    # kept outside the database
    acme, _, first = checkpointed
    ledger.score_bant(acme, BantRating(5, 5, 5, 5, {}), META)
    second = Audit(ledger).checkpoint(META)
    # When the rating, checkpoint 2 and its entry in the log are removed behind the service's
    # back: what is left is as checkpoint 1 sealed it
    store = RawStore(settings, ledger)
    store.remove(acme, 6)
    store.delete(checkpoint_id(2))
    store.delete(CHECKPOINT_LOG_ID, from_version=FIRST_ENTRY + 1)
    out = tmp_path / "ledger.jsonl"
    assert crm(settings, "audit", "export", "--out", str(out)) == 0
    capsys.readouterr()

    # Then checking against the root kept finds checkpoints removed, in the store and offline
    kept = ("--checkpoint", "2", "--root", second.root)
    assert crm(settings, "audit", "verify", *kept) == 1
    said = capsys.readouterr().err
    offline = verify_offline(out, *kept)
    assert "checkpoint 2, whose root was kept, is not in the store (the latest is 1)" in said
    assert offline.returncode == 1
    assert "the export holds checkpoint 1, and checkpoint 2's root was kept" in offline.stdout
    # and the root kept of checkpoint 1 still holds: it is there, as it was
    assert crm(settings, "audit", "verify", "--checkpoint", "1", "--root", first.root) == 0


def test_an_export_taken_before_the_checkpoint_whose_root_was_kept_says_it_may_be(
    ledger, settings, checkpointed, tmp_path, capsys
):
    # Given an export taken at checkpoint 1, and checkpoint 2 recorded after it, its root kept
    acme, _, _ = checkpointed
    out = tmp_path / "ledger.jsonl"
    assert crm(settings, "audit", "export", "--out", str(out)) == 0
    ledger.score_bant(acme, BantRating(5, 5, 5, 5, {}), META)
    second = Audit(ledger).checkpoint(META)

    # When the old export is checked against checkpoint 2's root
    offline = verify_offline(out, "--checkpoint", "2", "--root", second.root)

    # Then it cannot vouch for it, and says the export may only be older than the checkpoint
    assert offline.returncode == 1
    assert "or the export was taken before checkpoint 2 was recorded" in offline.stdout


def test_a_root_kept_that_is_not_the_checkpoints_is_named(
    ledger, settings, checkpointed, tmp_path, capsys
):
    _, _, first = checkpointed
    other = "0" * 64
    out = tmp_path / "ledger.jsonl"
    assert crm(settings, "audit", "export", "--out", str(out)) == 0
    capsys.readouterr()

    verified = crm(settings, "audit", "verify", "--checkpoint", "1", "--root", other)
    said = capsys.readouterr().err
    offline = verify_offline(out, "--checkpoint", "1", "--root", other)
    alone = crm(settings, "audit", "verify", "--checkpoint", "1")

    assert verified == 1
    assert f"checkpoint 1's root is {first.root}, not {other} as it was kept" in said
    assert offline.returncode == 1
    assert f"checkpoint 1's root is {first.root}, not {other} as it was kept" in offline.stdout
    assert alone == 2 and "give --checkpoint and --root together" in capsys.readouterr().err
    for number, root in (("0", first.root), ("-5", first.root), ("1", "abc")):
        refused = verify_offline(out, "--checkpoint", number, "--root", root)
        assert refused.returncode == 2, (number, root, refused.stdout)
        assert "a checkpoint number is 1 or more" in refused.stderr or "64 hexadecimal" in (
            refused.stderr
        )


def test_a_chain_rewritten_with_the_checkpoints_after_a_kept_root_is_found_against_it(
    ledger, settings, checkpointed, tmp_path, capsys
):
    # Given checkpoint 1 of Acme at version 5, whose root the auditor kept, then a rating of
    # Acme (version 6) and checkpoint 2
    acme, _, first = checkpointed
    ledger.score_bant(acme, BantRating(5, 5, 5, 5, {}), META)
    second = Audit(ledger).checkpoint(META)
    heads = Audit(ledger).check_checkpoints(latest_only=True).heads
    # When an insider changes Acme's first rating, relinks the versions after it, and rewrites
    # checkpoint 2 (its head of Acme, root, seal and entry in the log) to agree
    store = RawStore(settings, ledger)
    store.change_state(acme, 3, lambda s: s.replace(b'"budget":3', b'"budget":1'))
    for version in range(4, 7):
        earlier = stored_hash(ledger.stored_event(acme, version - 1))
        store.change_state(acme, version, _edit(lambda s, h=earlier: s.update(previous_hash=h)))
    recorded, rewritten = heads[str(acme)][1], stored_hash(ledger.stored_event(acme, 6))
    heads[str(acme)] = (6, rewritten)
    root = root_of(heads)
    store.change_state(
        second.checkpoint_id, HEADS, lambda s: s.replace(recorded.encode(), rewritten.encode())
    )
    sealed_after = stored_hash(ledger.stored_event(second.checkpoint_id, HEADS))
    store.change_state(
        second.checkpoint_id,
        SEALED,
        _edit(lambda s: s.update(root=root, previous_hash=sealed_after)),
    )
    store.change_state(CHECKPOINT_LOG_ID, FIRST_ENTRY + 1, _edit(lambda s: s.update(root=root)))
    out = tmp_path / "ledger.jsonl"
    assert crm(settings, "audit", "export", "--out", str(out)) == 0
    capsys.readouterr()

    # Then the store agrees with its latest checkpoint (what a root kept elsewhere is for)
    assert crm(settings, "audit", "verify") == 0
    capsys.readouterr()
    # but not with checkpoint 1, whose root was kept: in the store, for all and for Acme
    kept = ("--checkpoint", "1", "--root", first.root)
    assert crm(settings, "audit", "verify", *kept) == 1
    said = capsys.readouterr().err
    assert f"account {acme}: first bad version 5: version 5 differs from the hash" in said
    assert crm(settings, "audit", "verify", "--account", str(acme), *kept) == 1
    assert f"account {acme}: first bad version 5" in capsys.readouterr().err
    # and an export, which holds checkpoint 2, does not vouch for checkpoint 1
    offline = verify_offline(out, *kept)
    assert offline.returncode == 1
    assert "the export holds checkpoint 2, not checkpoint 1 whose root was kept" in offline.stdout


@pytest.mark.parametrize(("accounts", "kind"), [(2, "full"), (5, "changes")])
def test_a_head_altered_in_the_latest_checkpoint_blames_the_checkpoint_not_the_account(
    ledger, settings, capsys, accounts, kind
):
    # Given checkpoint 1 of a few accounts, a rating of the first, then checkpoint 2: full
    # when a quarter of the accounts changed, else of the change only
    ids = [five_events(ledger, f"company{n}.com") for n in range(accounts)]
    audit = Audit(ledger)
    first = audit.checkpoint(META)
    ledger.score_bant(ids[0], BantRating(5, 5, 5, 5, {}), META)
    second = audit.checkpoint(META)
    assert (second.base is None) == (kind == "full")
    # When an insider changes that account's head in checkpoint 2, its events left as they were
    recorded = audit.check_checkpoints(latest_only=True).heads[str(ids[0])][1]
    RawStore(settings, ledger).change_state(
        second.checkpoint_id, HEADS, lambda s: s.replace(recorded.encode(), b"0" * 64)
    )

    # Then verify names checkpoint 2, and walks the chains against checkpoint 1, which is
    # intact: no account is said to be altered
    status, said = _verify(settings, capsys)
    assert status == 1
    assert f"checkpoint 2 ({second.checkpoint_id}): " in said
    assert not any(f"account {account}" in said for account in ids), said
    assert f"against checkpoint 1 (root {first.root})" in said
