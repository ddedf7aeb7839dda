"""The wire format of every integration event is pinned, and stored v1 samples still decode."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from contracts.events import EVENT_TYPES, decode_event, subject, type_name
from services.cli import main
from services.integration_events import to_integration_event
from tests.publishing.samples import sample_events

GOLDEN = Path(__file__).parent / "golden"
STORED_V1 = Path(__file__).parent / "stored_v1"


def test_every_event_type_has_a_sample():
    mapped = {type(to_integration_event(e, p)) for e, p in sample_events()}
    assert mapped == set(EVENT_TYPES)


def test_the_wire_format_of_every_event_type_is_pinned():
    for event, position in sample_events():
        published = to_integration_event(event, position)
        tag = type(published).__struct_config__.tag
        golden = GOLDEN / f"{tag}.json"
        assert json.loads(msgspec.json.encode(published)) == json.loads(golden.read_text()), tag


def test_stored_v1_samples_decode_to_the_same_events():
    for event, position in sample_events():
        published = to_integration_event(event, position)
        tag = type(published).__struct_config__.tag
        assert decode_event((GOLDEN / f"{tag}.json").read_bytes()) == published


def test_messages_published_before_a_field_was_added_still_decode():
    """`stored_v1/` keeps messages as first published; fields added since take defaults."""
    for path in sorted(STORED_V1.glob("*.json")):
        stored = json.loads(path.read_text())
        decoded = msgspec.to_builtins(decode_event(path.read_bytes()))
        assert {k: v for k, v in decoded.items() if k in stored} == stored, path.name


def test_subjects_name_the_account_and_the_event_type():
    event, position = sample_events()[2]
    published = to_integration_event(event, position)

    assert subject(published) == f"crm.accounts.{published.account_id}.bant_scored"
    assert {"registered", "screened", "bant_scored", "screening_overridden"} <= {
        type_name(t) for t in EVENT_TYPES
    }


def test_crm_contracts_export_writes_a_schema_per_event_and_asyncapi(tmp_path, capsys):
    assert main(["contracts", "export", str(tmp_path)]) == 0

    schemas = sorted(p.name for p in tmp_path.glob("*.schema.json"))
    assert len(schemas) == len(EVENT_TYPES)
    bant = json.loads((tmp_path / "crm.account.bant_scored.v1.schema.json").read_text())
    assert "BantScoredV1" in json.dumps(bant)
    asyncapi = json.loads((tmp_path / "asyncapi.json").read_text())
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["channels"]["accountEvents"]["address"] == (
        "crm.accounts.{account_id}.{event_type}"
    )
    assert len(asyncapi["components"]["messages"]) == len(EVENT_TYPES)


def test_the_api_serves_the_asyncapi_document(client):
    response = client.get("/asyncapi.json")

    assert response.status_code == 200
    assert response.json()["asyncapi"] == "3.0.0"
