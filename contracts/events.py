"""Integration events: what the CRM publishes on NATS JetStream for other services.

They are not the stored domain events: the publisher maps each stored event onto one of
these explicitly, so storage can evolve without breaking subscribers. Every type is versioned
in its tag (`crm.account.bant_scored.v1`); a version only ever gains fields with defaults, and
a breaking change is a new type (`…v2`) that takes the old one's place from a release on,
announced beforehand: an event is one message, and two types of one event would share its
subject, its `Nats-Msg-Id` and its version, so one of them would be dropped as a copy.
Decode any message body with `decode_event(body)`.
"""

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import Struct

from contracts.accounts import (
    AbmStageName,
    BuyingRoleName,
    DecisionPowerName,
    FunnelStateName,
    ResponseReactionName,
    ScreeningOutcomeName,
)


class AccountEvent(Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every account event carries."""

    id: str  # `<account_id>:<version>`, also the message's Nats-Msg-Id and ce-id
    account_id: UUID
    version: int  # the account's version after this event: per-account order
    # The event's global position in the CRM's event log. The log also holds records that are
    # not published (idempotency receipts, jobs, policies, objectives), so positions have gaps:
    # `version` is the one that has none, per account.
    position: int
    # An RFC 3339 instant with its offset; msgspec leaves the format out of a datetime's schema.
    occurred_at: Annotated[datetime, msgspec.Meta(extra_json_schema={"format": "date-time"})]
    actor: str
    reason: str | None = None
    request_id: str | None = None


class AccountRegisteredV1(AccountEvent, frozen=True, tag="crm.account.registered.v1"):
    """An account was registered: the company and its firmographics as first known."""

    name: str
    domain: str
    industry: str
    headcount: int
    annual_revenue: int
    revenue_currency: str
    country: str
    region: str | None
    growth_rate: float
    source: str


class AccountScreenedV1(AccountEvent, frozen=True, tag="crm.account.screened.v1"):
    """The account was screened: qualified or excluded, by the criteria named."""

    outcome: ScreeningOutcomeName
    criteria: list[str]
    note: str | None
    policy_version: int | None = None  # added later: the screening policy that decided it


class FirmographicsUpdatedV1(AccountEvent, frozen=True, tag="crm.account.firmographics_updated.v1"):
    """The account's firmographics were updated.

    Only the fields that changed, with their new values (names as in `registered`)."""

    changes: dict[str, str | int | float | None]


class ScreeningOverriddenV1(AccountEvent, frozen=True, tag="crm.account.screening_overridden.v1"):
    """A person overrode the screening policy's decision; `reason` says why."""

    outcome: ScreeningOutcomeName
    policy_version: int | None


class BantScoredV1(AccountEvent, frozen=True, tag="crm.account.bant_scored.v1"):
    """The account was rated by BANT; score = budget × authority × need × timing."""

    budget: int
    authority: int
    need: int
    timing: int
    score: int
    notes: dict[str, str]


class ContactAddedV1(AccountEvent, frozen=True, tag="crm.account.contact_added.v1"):
    """A contact at the account was added, with their buying role and decision power."""

    contact_id: UUID
    name: str
    title: str
    email: str | None
    buying_role: BuyingRoleName
    decision_power: DecisionPowerName


class ContactUpdatedV1(AccountEvent, frozen=True, tag="crm.account.contact_updated.v1"):
    """A contact's details were corrected.

    Only the fields that changed, with their new values (names as in `contact_added`; an
    `email` of null: the contact has no email any more)."""

    contact_id: UUID
    changes: dict[str, str | None]


class ContactRemovedV1(AccountEvent, frozen=True, tag="crm.account.contact_removed.v1"):
    """A contact was removed from the account (left the company, or was added in error)."""

    contact_id: UUID


class MaterialSentV1(AccountEvent, frozen=True, tag="crm.account.material_sent.v1"):
    """Outreach material was sent to the account."""

    material: str
    channel: str
    note: str | None


class ResponseReceivedV1(AccountEvent, frozen=True, tag="crm.account.response_received.v1"):
    """The account responded to the outreach: positively, neutrally or negatively."""

    reaction: ResponseReactionName
    note: str | None


class NoResponseV1(AccountEvent, frozen=True, tag="crm.account.no_response.v1"):
    """The account was followed up after outreach, and no reaction came."""

    note: str | None


class MeetingHeldV1(AccountEvent, frozen=True, tag="crm.account.meeting_held.v1"):
    """A meeting with the account was held."""

    note: str | None


class DealWonV1(AccountEvent, frozen=True, tag="crm.account.deal_won.v1"):
    """The deal with the account was won, for the amount given when known."""

    amount: int | None
    currency: str | None


class DealLostV1(AccountEvent, frozen=True, tag="crm.account.deal_lost.v1"):
    """The deal with the account was lost; `reason` says why."""


# Text rather than an enumeration: a cause added later must not fail a subscriber's decoding.
StageCause = Annotated[
    str,
    msgspec.Meta(
        description="What moved it: `manual` (a person's move), or the fact recorded with it: "
        "`screened`, `screening_overridden`, `bant_scored`, `material_sent`, "
        "`response_received`, `meeting_held`, `deal_won` or `deal_lost`; later versions may "
        "add causes."
    ),
]
FunnelCause = Annotated[
    str,
    msgspec.Meta(
        description="What moved it: `manual` (a person's move); later versions may add causes."
    ),
]


class StageChangedV1(AccountEvent, frozen=True, tag="crm.account.stage_changed.v1"):
    """The account moved from one ABM stage to another; `cause` names what moved it."""

    from_stage: AbmStageName
    to_stage: AbmStageName
    cause: StageCause


class FunnelStateChangedV1(AccountEvent, frozen=True, tag="crm.account.funnel_state_changed.v1"):
    """The account moved in the See-Think-Do-Care funnel; `cause` names what moved it."""

    from_state: FunnelStateName
    to_state: FunnelStateName
    cause: FunnelCause


IntegrationEvent = (
    AccountRegisteredV1
    | AccountScreenedV1
    | ScreeningOverriddenV1
    | FirmographicsUpdatedV1
    | BantScoredV1
    | ContactAddedV1
    | ContactUpdatedV1
    | ContactRemovedV1
    | MaterialSentV1
    | ResponseReceivedV1
    | NoResponseV1
    | MeetingHeldV1
    | DealWonV1
    | DealLostV1
    | StageChangedV1
    | FunnelStateChangedV1
)
EVENT_TYPES: tuple[type[AccountEvent], ...] = IntegrationEvent.__args__  # type: ignore[attr-defined]

_decoder = msgspec.json.Decoder(IntegrationEvent)


def decode_event(body: bytes) -> IntegrationEvent:
    return _decoder.decode(body)


def type_name(event_type: type[AccountEvent]) -> str:
    """`crm.account.bant_scored.v1` → `bant_scored`, the last token of the NATS subject."""
    tag = event_type.__struct_config__.tag
    assert isinstance(tag, str)
    return tag.split(".")[2]


def subject(event: AccountEvent, prefix: str = "crm.accounts") -> str:
    return f"{prefix}.{event.account_id}.{type_name(type(event))}"
