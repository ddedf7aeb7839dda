"""The wire format of every integration event is pinned, and stored v1 samples still decode."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest
from litestar.testing import TestClient

from contracts.asyncapi import asyncapi_document, event_schemas
from contracts.events import EVENT_TYPES, decode_event, subject, type_name
from services.api.app import create_app
from services.cli import main
from services.integration_events import to_integration_event
from services.nats_server import EmbeddedNats
from services.publisher import Publisher, StreamSettings
from tests.api.requests import LOCAL
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


def test_the_exported_asyncapi_document_names_the_brokers_without_credentials(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("CRM_NATS_URL", "nats://crm:s3cret@nats-1:4222,tls://nats-2:4443")

    assert main(["contracts", "export", str(tmp_path)]) == 0

    asyncapi = (tmp_path / "asyncapi.json").read_text()
    assert "s3cret" not in asyncapi
    servers = json.loads(asyncapi)["servers"]
    assert [(s["host"], s["protocol"]) for s in servers.values()] == [
        ("nats-1:4222", "nats"),
        ("nats-2:4443", "nats"),
    ]


def test_without_a_broker_url_the_exported_document_names_the_embedded_one_where_it_last_was(
    tmp_path, monkeypatch
):
    # Given a data directory whose embedded broker listened on a port, then stopped
    monkeypatch.delenv("CRM_NATS_URL", raising=False)
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path / "data"))
    broker = EmbeddedNats(tmp_path / "data" / "nats")
    broker.start()
    broker.stop()

    assert main(["contracts", "export", str(tmp_path / "out")]) == 0

    servers = json.loads((tmp_path / "out" / "asyncapi.json").read_text())["servers"]
    assert [s["host"] for s in servers.values()] == [f"127.0.0.1:{broker.port}"]


def test_without_a_broker_url_or_an_embedded_broker_the_document_names_no_server(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("CRM_NATS_URL", raising=False)
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path / "data"))

    assert main(["contracts", "export", str(tmp_path / "out")]) == 0

    assert "servers" not in json.loads((tmp_path / "out" / "asyncapi.json").read_text())


def test_the_api_serves_the_asyncapi_document(client):
    response = client.get("/asyncapi.json")

    assert response.status_code == 200
    assert response.json()["asyncapi"] == "3.0.0"


def test_every_message_in_the_asyncapi_document_has_a_summary_of_its_own():
    messages = asyncapi_document()["components"]["messages"].values()
    summaries = [message["summary"] for message in messages]

    assert all(summaries)
    assert len(set(summaries)) == len(EVENT_TYPES)  # not the base class's, inherited
    assert all("\n" not in summary for summary in summaries)


@pytest.mark.parametrize("store", ["sqlite"])
def test_the_asyncapi_headers_are_those_the_publisher_sends(ledger):
    publisher = Publisher(ledger, "nats://127.0.0.1:1", StreamSettings())  # never connects
    messages = asyncapi_document()["components"]["messages"]
    for event, position in sample_events():
        published = to_integration_event(event, position)
        # nats-py adds the stream's name to what the publisher gives it (publish's `stream`)
        sent = {**publisher.headers(published), "Nats-Expected-Stream": publisher.stream.name}
        headers = messages[type(published).__name__]["headers"]
        documented = headers["properties"]

        assert set(documented) == set(sent) == set(headers["required"]), type(published).__name__
        for name, schema in documented.items():
            assert schema.get("const", sent[name]) == sent[name], name


def test_event_instants_are_date_times_in_every_schema():
    document = asyncapi_document()
    schemas = [*document["components"]["schemas"].values()]
    schemas += [s["$defs"][s["$ref"].rsplit("/", 1)[1]] for s in event_schemas().values()]

    assert len(schemas) == 2 * len(EVENT_TYPES)
    for schema in schemas:
        assert schema["properties"]["occurred_at"] == {"type": "string", "format": "date-time"}


def test_the_asyncapi_document_names_the_stream_the_crm_publishes_on(
    ledger, projector, settings, tmp_path, monkeypatch
):
    monkeypatch.setenv("CRM_NATS_STREAM", "SALES")
    assert main(["contracts", "export", str(tmp_path)]) == 0
    exported = json.loads((tmp_path / "asyncapi.json").read_text())
    app = create_app(ledger, projector, replace(settings, nats_stream="SALES"))
    with TestClient(app, base_url=LOCAL) as client:
        served = client.get("/asyncapi.json").json()

    for document in (exported, served):
        assert "JetStream stream `SALES`" in document["info"]["description"]
