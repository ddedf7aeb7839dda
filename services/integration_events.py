"""Maps stored domain events onto the published integration events, one type at a time.

The mapping is explicit so that a stored event can change shape (a new class version with an
upcaster) while subscribers keep receiving the contract they were promised.
"""

from __future__ import annotations

from typing import Any

from contracts import events as published
from domain.account import Account


def _common(event: Account.Event, position: int) -> dict[str, Any]:
    return {
        "id": f"{event.originator_id}:{event.originator_version}",
        "account_id": event.originator_id,
        "version": event.originator_version,
        "position": position,
        "occurred_at": event.timestamp,
        "actor": event.actor,
        "reason": event.reason,
        "request_id": event.request_id,
    }


def to_integration_event(event: Any, position: int) -> published.IntegrationEvent | None:
    """The integration event for a stored event; None for events that are not published."""
    if not isinstance(event, Account.Event):
        return None
    common = _common(event, position)
    match event:
        case Account.Registered():
            return published.AccountRegisteredV1(
                **common,
                name=event.name,
                domain=event.domain,
                industry=event.industry,
                headcount=event.headcount,
                annual_revenue=event.annual_revenue,
                revenue_currency=event.revenue_currency,
                country=event.country,
                region=event.region,
                growth_rate=event.growth_rate,
                source=event.source,
            )
        case Account.Screened():
            return published.AccountScreenedV1(
                **common,
                outcome=event.outcome,
                criteria=list(event.criteria),
                note=event.note,
                policy_version=event.policy_version,
            )
        case Account.FirmographicsUpdated():
            return published.FirmographicsUpdatedV1(**common, changes=dict(event.changes))
        case Account.ScreeningOverridden():
            return published.ScreeningOverriddenV1(
                **common, outcome=event.outcome, policy_version=event.policy_version
            )
        case Account.BantScored():
            return published.BantScoredV1(
                **common,
                budget=event.budget,
                authority=event.authority,
                need=event.need,
                timing=event.timing,
                score=event.budget * event.authority * event.need * event.timing,
                notes=dict(event.notes),
            )
        case Account.ContactAdded():
            return published.ContactAddedV1(
                **common,
                contact_id=event.contact_id,
                name=event.name,
                title=event.title,
                email=event.email,
                buying_role=event.buying_role,
                decision_power=event.decision_power,
            )
        case Account.ContactUpdated():
            return published.ContactUpdatedV1(
                **common, contact_id=event.contact_id, changes=dict(event.changes)
            )
        case Account.ContactRemoved():
            return published.ContactRemovedV1(**common, contact_id=event.contact_id)
        case Account.MaterialSent():
            return published.MaterialSentV1(
                **common, material=event.material, channel=event.channel, note=event.note
            )
        case Account.ResponseReceived():
            return published.ResponseReceivedV1(**common, reaction=event.reaction, note=event.note)
        case Account.NoResponse():
            return published.NoResponseV1(**common, note=event.note)
        case Account.MeetingHeld():
            return published.MeetingHeldV1(**common, note=event.note)
        case Account.DealWon():
            return published.DealWonV1(**common, amount=event.amount, currency=event.currency)
        case Account.DealLost():
            return published.DealLostV1(**common)
        case Account.StageChanged():
            return published.StageChangedV1(
                **common, from_stage=event.from_stage, to_stage=event.to_stage, cause=event.cause
            )
        case Account.FunnelStateChanged():
            return published.FunnelStateChangedV1(
                **common, from_state=event.from_state, to_state=event.to_state, cause=event.cause
            )
    raise TypeError(f"no integration event is defined for {type(event).__qualname__}")
