"""The AsyncAPI 3.0 document of the account event stream, generated from the contracts."""

from __future__ import annotations

import inspect
from typing import Any

import msgspec

from contracts.events import EVENT_TYPES, AccountEvent, type_name


def event_schemas() -> dict[str, dict[str, Any]]:
    """A JSON Schema for every integration event, keyed by its versioned type."""
    return {
        str(t.__struct_config__.tag): msgspec.json.schema(t)  # type: ignore[misc]
        for t in EVENT_TYPES
    }


def asyncapi_document(
    stream: str = "CRM", subject_prefix: str = "crm.accounts", brokers: str | None = None
) -> dict[str, Any]:
    """The document; `brokers`, the servers the events are published to (nats://host:port, a
    comma between two), is given without credentials: the document is shown to subscribers."""
    (_, components) = msgspec.json.schema_components(
        EVENT_TYPES, ref_template="#/components/schemas/{name}"
    )
    messages = {}
    for event_type in EVENT_TYPES:
        tag = str(event_type.__struct_config__.tag)
        messages[event_type.__name__] = {
            "name": tag,
            "title": event_type.__name__,
            **_summary_and_description(event_type),
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "Nats-Msg-Id": {"type": "string", "description": "<account_id>:<version>"},
                    "ce-specversion": {"type": "string", "const": "1.0"},
                    "ce-id": {"type": "string"},
                    "ce-type": {"type": "string", "const": tag},
                    "ce-source": {"type": "string", "description": "urn:crm"},
                    "ce-time": {"type": "string", "format": "date-time"},
                    "ce-subject": {"type": "string", "description": "accounts/<account_id>"},
                    "ce-datacontenttype": {"type": "string", "const": "application/json"},
                    "CRM-Position": {"type": "string", "description": "global log position"},
                    "Nats-Expected-Stream": {
                        "type": "string",
                        "const": stream,
                        "description": "JetStream's check that the stream is the one meant",
                    },
                },
                "required": [
                    "Nats-Msg-Id",
                    "ce-specversion",
                    "ce-id",
                    "ce-type",
                    "ce-source",
                    "ce-time",
                    "ce-subject",
                    "ce-datacontenttype",
                    "CRM-Position",
                    "Nats-Expected-Stream",
                ],
            },
            "payload": {"$ref": f"#/components/schemas/{event_type.__name__}"},
            "x-subject-event-type": type_name(event_type),
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ABM CRM account events",
            "version": "1",
            "description": (
                f"Every change to an account, published on JetStream stream `{stream}` in the "
                "order of the account's versions (across accounts, not in the order of "
                "CRM-Position), once (Nats-Msg-Id dedupes retries; the README tells the one case "
                "that repeats a batch). Replay from the first message the stream keeps (every "
                "one, unless it was created with an age limit) to rebuild what a subscriber "
                "knows."
            ),
        },
        **({"servers": _servers(brokers)} if brokers else {}),
        "channels": {
            "accountEvents": {
                "address": f"{subject_prefix}.{{account_id}}.{{event_type}}",
                "parameters": {
                    "account_id": {"description": "The account id (a UUID)."},
                    "event_type": {
                        "enum": [type_name(t) for t in EVENT_TYPES],
                        "description": "The event type in snake_case.",
                    },
                },
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
            }
        },
        "operations": {
            "publishAccountEvents": {
                "action": "send",
                "channel": {"$ref": "#/channels/accountEvents"},
                "messages": [
                    {"$ref": f"#/channels/accountEvents/messages/{name}"} for name in messages
                ],
            }
        },
        "components": {"messages": messages, "schemas": components},
    }


def _servers(brokers: str) -> dict[str, Any]:
    servers = {}
    for number, url in enumerate(brokers.split(","), start=1):
        scheme, _, host = url.strip().rpartition("://")
        servers[f"broker{number}"] = {
            "host": host,
            # A tls:// URL is NATS over TLS; ws:// and wss:// are NATS over WebSocket.
            "protocol": "nats" if scheme in ("", "nats", "tls") else scheme,
            "description": f"NATS with JetStream ({url.strip()})",
        }
    return servers


def _summary_and_description(event_type: type[AccountEvent]) -> dict[str, str]:
    """The first line of the event type's own docstring, and the rest, if any (msgspec gives
    every subclass without a docstring the base class's)."""
    doc = event_type.__doc__ if event_type.__doc__ != AccountEvent.__doc__ else None
    summary, _, description = inspect.cleandoc(doc or "").partition("\n")
    return {"summary": summary, **({"description": description.strip()} if description else {})}
