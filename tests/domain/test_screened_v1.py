"""A screening stored before policies existed (Screened v1) still loads, upcast to v2."""

from __future__ import annotations

import json
import uuid

from eventsourcing.persistence import StoredEvent

from domain.account import Firmographics
from domain.ledger import CommandMeta
from domain.vocabulary import ScreeningOutcome


def test_a_v1_screening_loads_with_no_policy_version(ledger):
    meta = CommandMeta("auditor")
    details = Firmographics(
        "Old Co", f"{uuid.uuid4().hex}.com", "it", 10, 1, "EUR", "DE", 1.0, "legacy"
    )
    account_id = ledger.register(details, meta).account.id
    account = ledger.account(account_id)
    account.screen(ScreeningOutcome.QUALIFIED, ["industry"], "before policies", _by(ledger))
    (event,) = account.collect_events()
    stored = ledger.mapper.to_stored_event(event)
    state = json.loads(stored.state)
    del state["policy_version"]
    state.pop("class_version", None)
    ledger.recorder.insert_events(
        [
            StoredEvent(
                originator_id=stored.originator_id,
                originator_version=stored.originator_version,
                topic=stored.topic,
                state=json.dumps(state).encode(),
            )
        ]
    )

    loaded = ledger.account(account_id)

    assert loaded.screening.outcome is ScreeningOutcome.QUALIFIED
    assert loaded.screening.policy_version is None
    assert loaded.screening.note == "before policies"


def _by(ledger):
    from domain.account import Attribution

    return Attribution("auditor", ledger.clock())
