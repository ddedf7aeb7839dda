"""One stored domain event of every type, with fixed ids and instants, for the golden files."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from domain.account import Account

ACCOUNT = UUID("5f0c6b1e-2a57-5b0e-9d0c-3b7f4c1d2e10")
CONTACT = UUID("0b6f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b")
AT = datetime(2026, 3, 2, 10, 30, 0, 123456, tzinfo=UTC)
WHO = {"actor": "marta", "reason": "quarterly review", "request_id": "req-7", "timestamp": AT}


def sample_events() -> list[tuple[object, int]]:
    def make(cls, version, **data):  # type: ignore[no-untyped-def]
        return cls(originator_id=ACCOUNT, originator_version=version, **WHO, **data)

    events = [
        make(
            Account.Registered,
            1,
            originator_topic="domain.account:Account",
            name="Acme",
            domain="acme.com",
            industry="manufacturing",
            headcount=250,
            annual_revenue=30_000_000,
            revenue_currency="EUR",
            country="DE",
            region="Bavaria",
            growth_rate=12.5,
            source="trade fair",
        ),
        make(
            Account.Screened,
            2,
            outcome="qualified",
            criteria=["industry", "headcount"],
            note="fits",
            policy_version=3,
        ),
        make(
            Account.BantScored, 3, budget=4, authority=3, need=5, timing=2, notes={"budget": "Q3"}
        ),
        make(
            Account.ContactAdded,
            4,
            contact_id=CONTACT,
            name="Jane Roe",
            title="CEO",
            email="jane@acme.com",
            buying_role="economic",
            decision_power="decision_maker",
        ),
        make(Account.MaterialSent, 5, material="white paper", channel="email", note=None),
        make(Account.ResponseReceived, 6, reaction="positive", note="call me"),
        make(Account.MeetingHeld, 7, note="demo"),
        make(Account.DealWon, 8, amount=120_000, currency="EUR"),
        make(Account.DealLost, 9),
        make(Account.StageChanged, 10, from_stage="warm_up", to_stage="won", cause="deal_won"),
        make(Account.FunnelStateChanged, 11, from_state="do", to_state="care", cause="manual"),
    ]
    events.append(make(Account.ScreeningOverridden, 12, outcome="qualified", policy_version=3))
    events.append(make(Account.FirmographicsUpdated, 13, changes={"headcount": 300}))
    events.append(
        make(
            Account.ContactUpdated,
            14,
            contact_id=CONTACT,
            changes={"title": "Chief Executive", "email": None},
        )
    )
    events.append(make(Account.ContactRemoved, 15, contact_id=CONTACT))
    events.append(make(Account.NoResponse, 16, note="two reminders, no answer"))
    return [(event, 100 + i) for i, event in enumerate(events)]
