"""Events stored in another order. Two versions swapped are named, by every verifier alike, by
the first version whose stored content is not what was written; an unchanged event stored at
another position of the log verifies everywhere, since a chain links versions, not positions.
On both stores."""

from __future__ import annotations

import pytest

from domain.account import BantRating
from tests.audit.tampering import META, RawStore, crm, five_events, verify_offline


@pytest.fixture
def accounts(ledger):
    return five_events(ledger, "acme.com"), five_events(ledger, "globex.com")


def _verdicts(client, settings, tmp_path, capsys, account_id):
    """What the API, `crm audit verify` (whole and one account) and the offline verifier of a
    whole-store export say, as (exit status or verified, the lines that name the account)."""
    audit = client.get(f"/accounts/{account_id}/audit").json()
    whole = crm(settings, "audit", "verify")
    whole_said = capsys.readouterr()
    one = crm(settings, "audit", "verify", "--account", str(account_id))
    one_said = capsys.readouterr()
    out = tmp_path / "export.jsonl"
    assert crm(settings, "audit", "export", "--out", str(out)) == 0
    capsys.readouterr()
    offline = verify_offline(out)
    return {
        "api": (audit["verified"], audit.get("first_bad_version")),
        "verify": (whole, whole_said.out + whole_said.err),
        "verify --account": (one, one_said.out + one_said.err),
        "offline": (offline.returncode, offline.stdout),
    }


@pytest.mark.parametrize(("one", "other"), [(2, 3), (4, 5)], ids=["middle", "last two"])
def test_swapped_versions_are_named_alike_by_the_first_one_not_as_written(
    client, ledger, settings, accounts, tmp_path, capsys, one, other
):
    # Given a checkpoint, then two of Acme's versions swapped, their contents as written
    acme, globex = accounts
    client.post("/audit/checkpoints")
    RawStore(settings, ledger).swap_versions(acme, one, other)

    # When every verifier checks the store
    verdicts = _verdicts(client, settings, tmp_path, capsys, acme)

    # Then each names the first of the two, whose stored content is not what was written
    assert verdicts["api"] == (False, one)
    expected = f"account {acme}: first bad version {one}: "
    for name in ("verify", "verify --account", "offline"):
        status, said = verdicts[name]
        assert status == 1 and expected in said, (name, said)
        assert str(globex) not in said, name
    assert f"version {one} differs from what was written" in verdicts["verify"][1]
    assert f"version {one} differs from what was written" in verdicts["verify --account"][1]


def test_an_event_moved_to_the_end_of_the_log_verifies_everywhere(
    client, ledger, settings, accounts, tmp_path, capsys
):
    # Given a checkpoint, then Acme's version 2 stored after every other event, unchanged
    acme, _ = accounts
    client.post("/audit/checkpoints")
    RawStore(settings, ledger).move_to_end(acme, 2)

    # When every verifier checks the store, and a checkpoint is recorded after a new event
    verdicts = _verdicts(client, settings, tmp_path, capsys, acme)
    ledger.score_bant(acme, BantRating(2, 3, 3, 3, {}), META)
    checkpoint = client.post("/audit/checkpoints")

    # Then every verifier says verified, and the checkpoint covers the new event
    assert verdicts["api"] == (True, None)
    assert verdicts["verify"][0] == 0 and "verified 2 accounts, 10 events" in verdicts["verify"][1]
    assert verdicts["verify --account"][0] == 0
    assert verdicts["offline"][0] == 0, verdicts["offline"][1]
    assert checkpoint.status_code == 201, checkpoint.json()
    assert client.get(f"/accounts/{acme}/audit").json()["checkpoint_version"] == 6


def test_a_new_event_moved_before_the_checkpoint_is_still_covered_by_the_next(
    client, ledger, settings, accounts, tmp_path, capsys
):
    # Given a checkpoint, then two new Acme events, the first of them swapped in the log with
    # an event the checkpoint covered
    acme, globex = accounts
    client.post("/audit/checkpoints")
    ledger.score_bant(acme, BantRating(2, 3, 3, 3, {}), META)
    ledger.score_bant(acme, BantRating(1, 3, 3, 3, {}), META)
    RawStore(settings, ledger).swap_positions((acme, 6), (globex, 1))

    # When a checkpoint is recorded, and every verifier checks the store
    checkpoint = client.post("/audit/checkpoints")
    verdicts = _verdicts(client, settings, tmp_path, capsys, acme)

    # Then the checkpoint reads the moved event by its version, and everything verifies
    assert checkpoint.status_code == 201, checkpoint.json()
    assert verdicts["api"] == (True, None)
    assert verdicts["verify"][0] == 0 and "verified 2 accounts, 12 events" in verdicts["verify"][1]
    assert verdicts["verify --account"][0] == 0
    assert verdicts["offline"][0] == 0, verdicts["offline"][1]
