"""The ledger's records beside the accounts (screening policies, objectives, command receipts)
are hash chains too, and `crm audit verify` walks them: a screening policy changed behind the
service's back would have excluded companies by criteria nobody set. On both stores."""

from __future__ import annotations

import json

import pytest

from domain.ledger import CommandMeta
from domain.objectives import objectives_id
from domain.screening_policy import POLICIES_ID, Criteria
from tests.audit.tampering import META, RawStore, crm, five_events


def _policy(ledger) -> None:
    ledger.create_policy(Criteria(industries_excluded=("tobacco",)), META)


def test_other_records_are_verified_beside_the_accounts(ledger, settings, capsys):
    five_events(ledger, "acme.com")
    _policy(ledger)

    status = crm(settings, "audit", "verify")

    said = capsys.readouterr().out
    assert status == 0, said
    assert "verified 1 accounts, 5 events, 1 other records (" in said


def test_a_changed_screening_policy_is_found(ledger, settings, capsys):
    # Given a policy that excludes tobacco, changed in the store to exclude software instead
    five_events(ledger, "acme.com")
    _policy(ledger)
    ledger.create_policy(Criteria(industries_excluded=("gambling",)), CommandMeta(actor="ops"))

    def software(state: bytes) -> bytes:
        return state.replace(b"tobacco", b"software")

    (version,) = [
        e.originator_version for e in ledger.stored_events(POLICIES_ID) if b"tobacco" in e.state
    ]
    RawStore(settings, ledger).change_state(POLICIES_ID, version, software)

    # When an auditor verifies the store
    status = crm(settings, "audit", "verify")

    # Then the policies' record is named, with the version that was altered
    said = capsys.readouterr()
    assert status == 1, said.out
    bad = f"record {POLICIES_ID}: first bad version {version}: version {version} differs"
    assert bad in said.err
    assert "NOT VERIFIED: 1 problems" in said.out
    assert json.dumps("software") not in said.out


@pytest.mark.parametrize("record", ["policies", "objectives", "receipt"])
def test_the_id_of_another_record_is_no_account_to_an_auditor(client, ledger, record):
    # The policies, a period's objectives and a command's receipt are stored beside the
    # accounts, by ids an auditor may come across in an export.
    _policy(ledger)
    won = {"metric": "accounts_won", "acceptable": 1, "optimal": 2, "best": 3}
    put = client.put("/objectives/2026", json={"targets": [won]}, headers={"Idempotency-Key": "k"})
    assert put.status_code == 200, put.text
    receipt = next(e for e in ledger.recorder.select_notifications(1, 100) if "Receipt" in e.topic)
    record_id = {
        "policies": POLICIES_ID,
        "objectives": objectives_id("2026"),
        "receipt": receipt.originator_id,
    }[record]
    assert ledger.stored_events(record_id)

    for path, params in [
        ("diff", {"from": "0"}),
        ("audit", {}),
        ("history", {"format": "jsonl"}),
        ("history", {"format": "csv"}),
        ("history", {}),
        ("", {}),
    ]:
        response = client.get(f"/accounts/{record_id}/{path}".rstrip("/"), params=params)
        assert response.status_code == 404, (path, params, response.text)


def test_reads_of_objectives_or_policies_with_an_event_no_longer_readable_name_it(
    client, ledger, settings
):
    # Given objectives for 2026 and a screening policy, each with an event garbled in the store
    won = {"metric": "accounts_won", "acceptable": 1, "optimal": 2, "best": 3}
    assert client.put("/objectives/2026", json={"targets": [won]}).status_code == 200
    _policy(ledger)
    store = RawStore(settings, ledger)
    store.garble_state(objectives_id("2026"), 2)
    store.garble_state(POLICIES_ID, 1)

    # When they are read, then each answers the problem the OpenAPI document lists, naming it
    for path in ("/objectives/2026", "/screening-policies", "/screening-policies/1"):
        response = client.get(path)
        assert response.status_code == 409, (path, response.text)
        assert response.json()["type"] == "urn:crm:problem:event-unreadable", path
