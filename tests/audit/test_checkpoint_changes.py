"""A checkpoint after few changes records only the heads that changed since the latest full
checkpoint, and its root still covers every account: an auditor's root kept elsewhere, the
verification, the account audit and the export see every account's head as before, and an
alteration of the full checkpoint under it is found. On both stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.account import Attribution, BantRating
from domain.chain import root_of, stored_hash
from domain.checkpoints import CHECKPOINT_LOG_ID, Checkpoint
from services.audit import Audit
from tests.audit.tampering import META, RawStore, crm, five_events, verify_offline

DOMAINS = ["acme.com", "globex.com", "initech.com", "umbrella.com", "hooli.com"]
CHUNK = 2  # the version of a checkpoint's first (here only) chunk of heads
LAST_ENTRY = 3  # the checkpoint log's entry for checkpoint 2 (its first event starts it)


@pytest.fixture
def two_checkpoints(ledger):
    """Five accounts under checkpoint 1, then Acme re-rated and checkpoint 2."""
    accounts = [five_events(ledger, domain) for domain in DOMAINS]
    first = Audit(ledger).checkpoint(META)
    ledger.score_bant(accounts[0], BantRating(2, 3, 3, 3, {}), META)
    second = Audit(ledger).checkpoint(META)
    return accounts, first, second


def _heads_stored(ledger, checkpoint_id) -> list[list[Any]]:
    events = [ledger.mapper.to_domain_event(s) for s in ledger.stored_events(checkpoint_id)]
    return [h for e in events if isinstance(e, Checkpoint.HeadsRecorded) for h in e.heads]


def _drop_head(account_id):  # noqa: ANN001, ANN202
    def edit(state: bytes) -> bytes:
        value = json.loads(state)
        value["heads"] = [h for h in value["heads"] if h[0] != str(account_id)]
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    return edit


def _set(**fields: Any):  # noqa: ANN202
    def edit(state: bytes) -> bytes:
        value = {**json.loads(state), **fields}
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    return edit


def test_a_checkpoint_after_few_changes_records_them_only_and_seals_every_account(
    client, ledger, settings, two_checkpoints, tmp_path, capsys
):
    accounts, first, second = two_checkpoints
    acme, globex = accounts[0], accounts[1]

    # Checkpoint 1 holds every head, checkpoint 2 only Acme's, over checkpoint 1's
    assert (first.base, len(_heads_stored(ledger, first.checkpoint_id))) == (None, 5)
    assert second.base == 1
    assert [h[:2] for h in _heads_stored(ledger, second.checkpoint_id)] == [[str(acme), 6]]
    # ... and its root is the root of every account's head as stored now
    heads = {str(a): _last(ledger, a) for a in accounts}
    assert (second.root, second.accounts) == (root_of(heads), 5)

    # An auditor sees every account against checkpoint 2, as before
    status = crm(settings, "audit", "verify")
    said = capsys.readouterr()
    assert status == 0, said.err
    assert "verified 5 accounts, 26 events; against checkpoint 2" in said.out
    audit = client.get(f"/accounts/{globex}/audit").json()
    assert audit["verified"] is True
    assert (audit["checkpoint"]["number"], audit["checkpoint_version"]) == (2, 5)
    latest = client.get("/audit/checkpoints/latest").json()
    assert (latest["number"], latest["root"], latest["accounts"]) == (2, second.root, 5)

    # The whole-store export carries every head under checkpoint 2, and verifies offline
    out = tmp_path / "ledger.jsonl"
    assert crm(settings, "audit", "export", "--out", str(out)) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len([r for r in records if r["record"] == "head"]) == 5
    checkpoint = next(r for r in records if r["record"] == "checkpoint")
    assert checkpoint["root"] == second.root
    assert checkpoint["recorded_at"] == latest["recorded_at"]  # as the API writes it, with Z
    assert checkpoint["recorded_at"].endswith("Z")
    offline = verify_offline(out)
    assert offline.returncode == 0, offline.stdout + offline.stderr


def _last(ledger, account_id) -> tuple[int, str]:  # noqa: ANN001
    last = ledger.stored_events(account_id)[-1]
    return last.originator_version, stored_hash(last)


def test_an_account_taken_out_of_the_full_checkpoint_under_a_later_one_is_found(
    client, ledger, settings, two_checkpoints, tmp_path, capsys
):
    # Given Globex audited against checkpoint 2 (the service keeps what it found intact),
    # then Globex's events deleted and its head taken out of checkpoint 1, which checkpoint 2
    # records changes since
    accounts, first, second = two_checkpoints
    globex = accounts[1]
    assert client.get(f"/accounts/{globex}/audit").status_code == 200
    raw = RawStore(settings, ledger)
    raw.delete(globex)
    raw.change_state(first.checkpoint_id, CHUNK, _drop_head(globex))

    # When an auditor verifies, audits Globex, exports, and records a checkpoint
    status = crm(settings, "audit", "verify")
    said = capsys.readouterr()
    audit = client.get(f"/accounts/{globex}/audit")
    export = client.get("/audit/export")
    exported = crm(settings, "audit", "export", "--out", str(tmp_path / "ledger.jsonl"))
    ledger.score_bant(accounts[0], BantRating(1, 3, 3, 3, {}), META)
    recorded = client.post("/audit/checkpoints")

    # Then verify names checkpoint 1, and nothing vouches for checkpoint 2 any more
    assert status == 1
    assert f"checkpoint 1 ({first.checkpoint_id}): first bad version {CHUNK}" in said.err
    assert f"checkpoint 2 ({second.checkpoint_id}): its heads over checkpoint 1's" in said.err
    for answer in (audit, export, recorded):
        _refusal(answer)
    assert exported == 1 and not (tmp_path / "ledger.jsonl").exists()


def test_a_head_changed_among_the_changes_is_found(
    client, ledger, settings, two_checkpoints, capsys
):
    # Given checkpoint 2's head for Acme taken out (its own chain and root no longer agree)
    accounts, _, second = two_checkpoints
    RawStore(settings, ledger).change_state(second.checkpoint_id, CHUNK, _drop_head(accounts[0]))

    # When an auditor verifies and audits Acme
    status = crm(settings, "audit", "verify")
    said = capsys.readouterr().err
    audit = client.get(f"/accounts/{accounts[0]}/audit")

    # Then checkpoint 2 is named
    assert status == 1
    assert f"checkpoint 2 ({second.checkpoint_id}): first bad version {CHUNK}" in said
    assert (audit.status_code, audit.json()["rule"]) == (409, "checkpoint_intact")


def test_a_checkpoint_is_full_again_when_many_accounts_changed(
    ledger, settings, two_checkpoints, capsys
):
    # Given two of five accounts re-rated since the full checkpoint 1 (more than a quarter)
    accounts, _, _ = two_checkpoints
    for account_id in accounts[1:3]:
        ledger.score_bant(account_id, BantRating(1, 3, 3, 3, {}), META)

    # When an auditor records the next checkpoint, and one more after one more change
    assert crm(settings, "audit", "checkpoint") == 0
    third = Audit(ledger).latest_checkpoint()
    ledger.score_bant(accounts[3], BantRating(1, 3, 3, 3, {}), META)
    assert crm(settings, "audit", "checkpoint") == 0
    fourth = Audit(ledger).latest_checkpoint()
    said = capsys.readouterr().out

    # Then checkpoint 3 holds every head, and checkpoint 4 records its one change since 3
    assert third is not None and fourth is not None
    assert third.base is None and len(_heads_stored(ledger, third.checkpoint_id)) == 5
    assert fourth.base == 3 and len(_heads_stored(ledger, fourth.checkpoint_id)) == 1
    assert "checkpoint 3 (full): 5 accounts" in said
    assert "checkpoint 4 (the heads changed since checkpoint 3): 5 accounts" in said
    assert Audit(ledger).check_checkpoints().problems == []


@pytest.mark.parametrize(
    ("number", "changed", "full"),
    [(2, 25, False), (24, 25, False), (25, 1, True), (2, 26, True)],
    ids=["few changes", "the 23rd since", "the 24th since", "more than a quarter"],
)
def test_when_a_checkpoint_is_full(number, changed, full):
    # Given a full checkpoint 1 of a hundred heads, and `changed` of them moved on since
    before = {f"{i:03}": (1, "a" * 64) for i in range(100)}
    now = {**before, **{f"{i:03}": (2, "b" * 64) for i in range(changed)}}
    by = Attribution("marta", datetime.now(UTC))

    # When checkpoint `number` is recorded
    checkpoint = Checkpoint.record(number, 10, now, by, full=(1, before))

    # Then it records every head, or only those that changed over checkpoint 1's; its seal
    # covers every head either way
    recorded = sum(len(chunk) for chunk in checkpoint.chunks)
    assert (checkpoint.base, recorded) == ((None, 100) if full else (1, changed))
    assert checkpoint.root == root_of(now)
    assert checkpoint.accounts == 100


def _refusal(answer) -> list[str]:  # noqa: ANN001
    """The problems of an answer refusing an altered checkpoint (409 `checkpoint_intact`)."""
    assert answer.status_code == 409, answer.text
    assert answer.json()["rule"] == "checkpoint_intact"
    return answer.json()["problems"]


def _every_reader(client, ledger, settings, capsys, account_id):  # noqa: ANN001, ANN202
    """What `crm audit verify` says, and the latest checkpoint, the account's audit, the export
    and a new checkpoint (after one more change) as the API answers them."""
    status = crm(settings, "audit", "verify")
    said = capsys.readouterr().err
    answers = [
        client.get("/audit/checkpoints/latest"),
        client.get(f"/accounts/{account_id}/audit"),
        client.get("/audit/export"),
    ]
    ledger.score_bant(account_id, BantRating(1, 3, 3, 3, {}), META)
    answers.append(client.post("/audit/checkpoints"))
    return status, said, answers


@pytest.mark.parametrize("number", [3, 0, -4], ids=repr)
def test_a_number_changed_in_the_checkpoint_log_is_named_not_crashed_on(
    client, ledger, settings, two_checkpoints, capsys, number
):
    # Given checkpoint 2's entry in the log (its last event: nothing after it vouches for it)
    # listing another number
    accounts, _, _ = two_checkpoints
    RawStore(settings, ledger).change_state(CHECKPOINT_LOG_ID, LAST_ENTRY, _set(number=number))

    # When an auditor verifies, reads the latest checkpoint, audits Acme, exports, and records
    status, said, answers = _every_reader(client, ledger, settings, capsys, accounts[0])

    # Then each names the entry, and none vouches for the checkpoint
    assert status == 1
    assert f"the checkpoint log lists checkpoint {number} in place 2" in said
    for answer in answers:
        _refusal(answer)


@pytest.mark.parametrize(
    "heads",
    [[["acme"]], [["acme", "six", "0" * 64]], [["acme", 6, "0" * 64, 7]], [[]], [5], 5],
    ids=["one field", "a version not a number", "four fields", "empty", "a number", "no list"],
)
def test_heads_that_are_not_heads_are_named_not_crashed_on(
    client, ledger, settings, two_checkpoints, capsys, heads
):
    # Given checkpoint 2's chunk of heads changed into something that is no list of
    # [account id, version, hash]
    accounts, _, second = two_checkpoints
    RawStore(settings, ledger).change_state(second.checkpoint_id, CHUNK, _set(heads=heads))

    # When an auditor verifies, audits Acme and exports
    status = crm(settings, "audit", "verify")
    said = capsys.readouterr().err
    audit = client.get(f"/accounts/{accounts[0]}/audit")
    export = client.get("/audit/export")

    # Then the chunk is named, and nothing vouches for the checkpoint
    name = f"checkpoint 2 ({second.checkpoint_id})"
    assert status == 1
    assert f"{name}: version {CHUNK} can no longer be read: its heads are not" in said
    for answer in (audit, export):
        _refusal(answer)


@pytest.mark.parametrize(
    ("where", "version", "fields", "named"),
    [
        ("log", "last", {"number": "2"}, "its number is not int"),
        ("log", "last", {"number": [2]}, "its number is not int"),
        ("log", "last", {"first_ids": 5}, "its first_ids is not list[str]"),
        ("log", "last", {"base": "1"}, "its base is not int | None"),
        ("log", "last", {"timestamp": "2026-12-04T10:00:00Z"}, "its timestamp is not datetime"),
        ("checkpoint", 1, {"position": True}, "its position is not int"),
        ("checkpoint", 3, {"accounts": "5"}, "its accounts is not int"),
        ("checkpoint", 3, {"timestamp": 5}, "its timestamp is not datetime"),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else next(iter(v)),
)
def test_a_field_changed_into_another_type_is_named_not_crashed_on(
    client, ledger, settings, two_checkpoints, capsys, where, version, fields, named
):
    # Given one field of checkpoint 2's entry in the log, or of checkpoint 2 itself, changed
    # into a value of another type (a state is JSON: any field may hold any value once altered)
    accounts, _, second = two_checkpoints
    aggregate = CHECKPOINT_LOG_ID if where == "log" else second.checkpoint_id
    version = LAST_ENTRY if version == "last" else version
    RawStore(settings, ledger).change_state(aggregate, version, _set(**fields))

    # When an auditor verifies, reads the latest checkpoint, audits Acme, exports, and records
    status, said, answers = _every_reader(client, ledger, settings, capsys, accounts[0])

    # Then each names the event and its field, and none vouches for the checkpoint
    assert status == 1
    assert f"version {version} can no longer be read: {named}" in said
    for answer in answers:
        assert any(named in problem for problem in _refusal(answer))
