"""The Account aggregate: one target company's way through the ABM stages and the funnel.

Each command method checks its rules first and then triggers events; each event's `apply`
only assigns state, because it runs again on every replay, and it rebinds attributes rather
than changing their values in place (the account writer decides on shallow copies). Stage and
funnel changes are events of their own, triggered beside the fact that caused them and saved
with it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.chain import AppliedOrUnreadable
from domain.errors import ContactNotFound, InvalidValue, RuleViolation
from domain.vocabulary import (
    ACTIVE_STAGES,
    BANT_DIMENSIONS,
    BANT_MAX,
    BANT_MIN,
    BUYING_ROLES,
    FUNNEL,
    PIPELINE,
    AbmStage,
    BuyingRole,
    DecisionPower,
    FunnelState,
    Reaction,
    ScreeningOutcome,
)
from domain.web_domain import mailbox_key, normalise_domain, normalise_email

ACCOUNT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:abm-crm:account")
MANUAL = "manual"


def account_id_for(domain: str) -> UUID:
    """Accounts are keyed by their normalised web domain, so a duplicate cannot be stored."""
    return uuid5(ACCOUNT_NAMESPACE, domain)


def event_type(event: object) -> str:
    """`BantScored` → `bant_scored`: the name of an event type outside Python."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(event).__name__).lower()


@dataclass(frozen=True)
class Attribution:
    """Who caused a change, when, why, and through which request."""

    actor: str
    at: datetime
    reason: str | None = None
    request_id: str | None = None

    def after(self, aggregate: Aggregate | None) -> Attribution:
        """This attribution, at the microsecond after the aggregate's last event (an
        account's, or a period's objectives') if its clock reads no later: an aggregate's
        events must follow each other in time as they do in order, or `as_of` would see a
        later change before an earlier one. Clocks disagree when API processes on several
        hosts write one account, or when a host's clock is set back."""
        if aggregate is None or self.at > aggregate.modified_on:
            return self
        return replace(self, at=aggregate.modified_on + timedelta(microseconds=1))

    def event_fields(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "reason": self.reason,
            "request_id": self.request_id,
            "timestamp": self.at,
        }


@dataclass(frozen=True)
class Firmographics:
    name: str
    domain: str
    industry: str
    headcount: int
    annual_revenue: int
    revenue_currency: str
    country: str
    growth_rate: float
    source: str
    region: str | None = None

    def __post_init__(self) -> None:
        if self.growth_rate == 0:  # -0.0 is no decline: stored, it would read "-0.0"
            object.__setattr__(self, "growth_rate", 0.0)

    def changes_to(self, other: Firmographics) -> dict[str, Any]:
        """The fields whose values `other` changes, with their new values."""
        return {name: value for name, value in vars(other).items() if value != getattr(self, name)}

    def merged(self, stated: Firmographics, names: Collection[str] | None) -> Firmographics:
        """`stated` in the fields `names` (all of them when None), these values in the others:
        what an import row that states those fields makes of a known company."""
        if names is None:
            return stated
        return replace(stated, **{f: getattr(self, f) for f in vars(self) if f not in names})


@dataclass(frozen=True)
class BantRating:
    budget: int
    authority: int
    need: int
    timing: int
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for dimension in BANT_DIMENSIONS:
            value = getattr(self, dimension)
            if type(value) is not int or not BANT_MIN <= value <= BANT_MAX:
                raise InvalidValue(dimension, f"{dimension} must be an integer from 1 to 5.")
        for dimension in self.notes:
            if dimension not in BANT_DIMENSIONS:
                raise InvalidValue("notes", f"{dimension!r} is not a BANT dimension.")

    @property
    def score(self) -> int:
        return self.budget * self.authority * self.need * self.timing


@dataclass(frozen=True)
class Contact:
    contact_id: UUID
    name: str
    title: str
    buying_role: BuyingRole
    decision_power: DecisionPower
    email: str | None = None


@dataclass(frozen=True)
class Screening:
    outcome: ScreeningOutcome
    criteria: tuple[str, ...]
    note: str | None
    at: datetime
    policy_version: int | None = None  # the screening policy that decided it, if one did
    overridden: bool = False  # a person overrode the policy; re-applying it leaves this alone


@dataclass(frozen=True)
class Deal:
    outcome: str
    at: datetime
    amount: int | None = None
    currency: str | None = None
    reason: str | None = None


# The fact an account needs before it may stand in each stage of the pipeline.
_STAGE_FACTS = {
    AbmStage.PRIORITIZED: ("stage_requires_bant", "a BANT rating"),
    AbmStage.OUTREACH: ("stage_requires_material_sent", "a material sent"),
    AbmStage.WARM_UP: ("stage_requires_warm_response", "a positive response or a meeting held"),
}


class Account(Aggregate):
    """A company we target, with its firmographics, ratings, contacts and progress."""

    class Event(AppliedOrUnreadable, Aggregate.Event):
        actor: str
        reason: str | None
        request_id: str | None

    class Registered(Event, Aggregate.Created):
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

    class Screened(Event):
        outcome: str
        criteria: list[str]
        note: str | None
        policy_version: int | None

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["policy_version"] = None  # screened by hand, before policies existed

        def apply(self, account: Account) -> None:
            account.screening = Screening(
                ScreeningOutcome(self.outcome),
                tuple(self.criteria),
                self.note,
                self.timestamp,
                self.policy_version,
            )

    class ScreeningOverridden(Event):
        outcome: str
        policy_version: int | None

        def apply(self, account: Account) -> None:
            account.screening = Screening(
                ScreeningOutcome(self.outcome),
                ("override",),
                self.reason,
                self.timestamp,
                self.policy_version,
                overridden=True,
            )

    class BantScored(Event):
        budget: int
        authority: int
        need: int
        timing: int
        notes: dict[str, str]

        def apply(self, account: Account) -> None:
            account.bant = BantRating(
                self.budget, self.authority, self.need, self.timing, dict(self.notes)
            )
            account.bant_scored_at = self.timestamp

    class ContactAdded(Event):
        contact_id: UUID
        name: str
        title: str
        email: str | None
        buying_role: str
        decision_power: str

        def apply(self, account: Account) -> None:
            # A new list, not an append: the account writer decides on shallow copies.
            account.contacts = [
                *account.contacts,
                Contact(
                    contact_id=self.contact_id,
                    name=self.name,
                    title=self.title,
                    email=self.email,
                    buying_role=BuyingRole(self.buying_role),
                    decision_power=DecisionPower(self.decision_power),
                ),
            ]

    class ContactUpdated(Event):
        contact_id: UUID
        changes: dict[str, Any]  # only the fields that changed, with their new values

        def apply(self, account: Account) -> None:
            changes = dict(self.changes)
            if "buying_role" in changes:
                changes["buying_role"] = BuyingRole(changes["buying_role"])
            if "decision_power" in changes:
                changes["decision_power"] = DecisionPower(changes["decision_power"])
            account.contacts = [
                replace(c, **changes) if c.contact_id == self.contact_id else c
                for c in account.contacts
            ]

    class ContactRemoved(Event):
        contact_id: UUID

        def apply(self, account: Account) -> None:
            account.contacts = [c for c in account.contacts if c.contact_id != self.contact_id]

    class MaterialSent(Event):
        material: str
        channel: str
        note: str | None

        def apply(self, account: Account) -> None:
            account.materials_sent += 1

    class ResponseReceived(Event):
        reaction: str
        note: str | None

        def apply(self, account: Account) -> None:
            if (reaction := Reaction(self.reaction)) is Reaction.NONE:
                raise ValueError("a response with no reaction is a no_response")
            account.responses_received += 1
            account.last_reaction = reaction
            if reaction is Reaction.POSITIVE:
                account.has_warm_signal = True

    class NoResponse(Event):
        note: str | None

        def apply(self, account: Account) -> None:
            account.no_responses += 1
            account.last_reaction = Reaction.NONE

    class MeetingHeld(Event):
        note: str | None

        def apply(self, account: Account) -> None:
            account.meetings_held += 1
            account.has_warm_signal = True

    class DealWon(Event):
        amount: int | None
        currency: str | None

        def apply(self, account: Account) -> None:
            account.deal = Deal("won", self.timestamp, self.amount, self.currency, self.reason)

    class DealLost(Event):
        def apply(self, account: Account) -> None:
            account.deal = Deal("lost", self.timestamp, reason=self.reason)

    class StageChanged(Event):
        from_stage: str
        to_stage: str
        cause: str

        def apply(self, account: Account) -> None:
            account.stage = AbmStage(self.to_stage)
            account.stage_since = self.timestamp
            if account.stage not in (AbmStage.WON, AbmStage.LOST):
                account.deal = None  # a reopened account has no deal until it closes again

    class FirmographicsUpdated(Event):
        changes: dict[str, Any]  # only the fields that changed, with their new values

        def apply(self, account: Account) -> None:
            account.firmographics = replace(account.firmographics, **self.changes)

    class FunnelStateChanged(Event):
        from_state: str
        to_state: str
        cause: str

        def apply(self, account: Account) -> None:
            account.funnel = FunnelState(self.to_state)
            account.funnel_since = self.timestamp

    def __init__(
        self,
        *,
        name: str,
        domain: str,
        industry: str,
        headcount: int,
        annual_revenue: int,
        revenue_currency: str,
        country: str,
        region: str | None,
        growth_rate: float,
        source: str,
        actor: str,
        reason: str | None,
        request_id: str | None,
    ) -> None:
        self.firmographics = Firmographics(
            name=name,
            domain=domain,
            industry=industry,
            headcount=headcount,
            annual_revenue=annual_revenue,
            revenue_currency=revenue_currency,
            country=country,
            region=region,
            growth_rate=growth_rate,
            source=source,
        )
        self.stage = AbmStage.IDENTIFIED
        self.stage_since = self.created_on
        self.funnel = FunnelState.SEE
        self.funnel_since = self.created_on
        self.screening: Screening | None = None
        self.bant: BantRating | None = None
        self.bant_scored_at: datetime | None = None
        self.contacts: list[Contact] = []
        self.materials_sent = 0
        self.responses_received = 0
        self.no_responses = 0
        self.meetings_held = 0
        self.last_reaction: Reaction | None = None
        self.has_warm_signal = False
        self.deal: Deal | None = None

    @staticmethod
    def create_id(domain: str, **_: Any) -> UUID:
        return account_id_for(domain)

    # Commands ------------------------------------------------------------------------------

    @classmethod
    def register(cls, details: Firmographics, by: Attribution) -> Account:
        return cls._create(cls.Registered, **vars(details), **by.event_fields())

    def screen(
        self,
        outcome: ScreeningOutcome,
        criteria: list[str],
        note: str | None,
        by: Attribution,
        policy_version: int | None = None,
    ) -> None:
        self._refuse_if_closed()
        if twice := sorted({c for c in criteria if criteria.count(c) > 1}):
            named = ", ".join(repr(c) for c in twice)
            raise InvalidValue("criteria", f"{named} given more than once.")
        if outcome is ScreeningOutcome.EXCLUDED and not criteria:
            raise RuleViolation(
                "exclusion_requires_criteria", "An exclusion names the criteria that decided it."
            )
        if outcome is ScreeningOutcome.EXCLUDED and self.stage in ACTIVE_STAGES:
            # It leaves the pipeline without a deal: the reason is all the record will say.
            self._require_reason(
                by, f"The account is in {self.stage}, being worked: excluding it needs a reason."
            )
        self._trigger(
            self.Screened,
            by,
            outcome=outcome.value,
            criteria=list(criteria),
            note=note,
            policy_version=policy_version,
        )
        self._follow_screening(outcome, "screened", by)

    def override_screening(self, outcome: ScreeningOutcome, by: Attribution) -> None:
        """A person's decision against the policy; policies applied later leave it alone."""
        self._refuse_if_closed()
        self._require_reason(by, "An override needs a reason.")
        policy = self.screening.policy_version if self.screening else None
        self._trigger(self.ScreeningOverridden, by, outcome=outcome.value, policy_version=policy)
        self._follow_screening(outcome, "screening_overridden", by)

    def _follow_screening(self, outcome: ScreeningOutcome, cause: str, by: Attribution) -> None:
        if outcome is ScreeningOutcome.EXCLUDED and self.stage is not AbmStage.EXCLUDED:
            self._change_stage(AbmStage.EXCLUDED, cause, by)
        elif outcome is ScreeningOutcome.QUALIFIED and self.stage is AbmStage.EXCLUDED:
            self._change_stage(AbmStage.IDENTIFIED, cause, by)

    def _refuse_if_closed(self) -> None:
        if self.stage is AbmStage.WON:
            raise RuleViolation(
                "screening_after_win", "A won account is a customer; it is not screened again."
            )
        if self.stage is AbmStage.LOST:
            # An exclusion would take it out of `lost`, and the loss out of the win rate.
            raise RuleViolation(
                "screening_after_loss",
                "A lost account's deal is closed; move the account back to a stage to reopen "
                "it before screening it again.",
            )

    def score_bant(self, rating: BantRating, by: Attribution) -> None:
        if not self.is_qualified:
            raise RuleViolation(
                "bant_requires_qualified",
                "Only an account screened as qualified can be rated by BANT.",
            )
        self._trigger(
            self.BantScored,
            by,
            budget=rating.budget,
            authority=rating.authority,
            need=rating.need,
            timing=rating.timing,
            notes=dict(rating.notes),
        )
        if self.stage is AbmStage.IDENTIFIED:
            self._change_stage(AbmStage.PRIORITIZED, "bant_scored", by)

    def update_firmographics(self, details: Firmographics, by: Attribution) -> bool:
        """Records what changed (the web domain, the natural key, never does); False if nothing."""
        if details.domain != self.firmographics.domain:
            raise InvalidValue(
                "domain", "The web domain identifies the account; it is not changed."
            )
        changes = self.firmographics.changes_to(details)
        if changes:
            self._trigger(self.FirmographicsUpdated, by, changes=changes)
        return bool(changes)

    def correct_firmographics(self, stated: dict[str, Any], by: Attribution) -> None:
        """Changes the fields stated and keeps the others, as they stand when decided (a
        correction by hand; an import states whole rows)."""
        if "domain" in stated:  # written as a registration writes it, to compare
            stated = {**stated, "domain": normalise_domain(stated["domain"])}
        self.update_firmographics(replace(self.firmographics, **stated), by)

    def add_contact(self, contact: Contact, by: Attribution) -> None:
        if contact.email is not None:
            contact = replace(contact, email=normalise_email(contact.email))
        self._refuse_email_taken(contact.email)
        self._trigger(
            self.ContactAdded,
            by,
            contact_id=contact.contact_id,
            name=contact.name,
            title=contact.title,
            email=contact.email,
            buying_role=contact.buying_role.value,
            decision_power=contact.decision_power.value,
        )

    def correct_contact(self, contact_id: UUID, stated: dict[str, Any], by: Attribution) -> None:
        """Changes the contact's fields stated (`email` None removes it), keeps the others."""
        contact = self._contact(contact_id)
        if stated.get("email") is not None:
            stated = {**stated, "email": normalise_email(stated["email"])}
        self._refuse_email_taken(stated.get("email"), other_than=contact_id)
        current = {
            "name": contact.name,
            "title": contact.title,
            "email": contact.email,
            "buying_role": contact.buying_role.value,
            "decision_power": contact.decision_power.value,
        }
        changes = {name: value for name, value in stated.items() if value != current[name]}
        if changes:
            self._trigger(self.ContactUpdated, by, contact_id=contact_id, changes=changes)

    def remove_contact(self, contact_id: UUID, by: Attribution) -> None:
        """The person left the company, or was never there: the history keeps them."""
        self._contact(contact_id)
        self._trigger(self.ContactRemoved, by, contact_id=contact_id)

    def _contact(self, contact_id: UUID) -> Contact:
        for contact in self.contacts:
            if contact.contact_id == contact_id:
                return contact
        raise ContactNotFound(contact_id)

    def _refuse_email_taken(self, email: str | None, other_than: UUID | None = None) -> None:
        if email and any(
            c.email and mailbox_key(c.email) == mailbox_key(email) and c.contact_id != other_than
            for c in self.contacts
        ):
            raise RuleViolation(
                "contact_email_taken", f"A contact with email {email} already exists."
            )

    def send_material(self, material: str, channel: str, note: str | None, by: Attribution) -> None:
        self._refuse_if_excluded()
        if self.bant is None:
            raise RuleViolation(
                "outreach_requires_bant",
                "Outreach starts only after the account has a BANT rating.",
            )
        if self.stage is AbmStage.IDENTIFIED:  # screened again since it was rated
            raise RuleViolation(
                "outreach_requires_prioritized",
                "The account is in identified: rate it by BANT again, or move it to "
                "prioritized, before outreach.",
            )
        if self.stage is AbmStage.LOST:
            raise RuleViolation(
                "outreach_after_loss",
                "The account's deal is lost: move the account back to a stage to reopen it "
                "before outreach.",
            )
        self._trigger(self.MaterialSent, by, material=material, channel=channel, note=note)
        if self.stage is AbmStage.PRIORITIZED:
            self._change_stage(AbmStage.OUTREACH, "material_sent", by)

    def receive_response(self, reaction: Reaction, note: str | None, by: Attribution) -> None:
        # Screened out means off the target list: no outreach fact is logged, as no material
        # is sent, until a screening qualifies it again.
        if reaction is Reaction.NONE:
            raise InvalidValue(
                "reaction", "A response has a reaction; record no_response when none came."
            )
        self._refuse_if_excluded()
        self._refuse_before_material()
        self._trigger(self.ResponseReceived, by, reaction=reaction.value, note=note)
        if reaction is Reaction.POSITIVE and self.stage is AbmStage.OUTREACH:
            self._change_stage(AbmStage.WARM_UP, "response_received", by)

    def record_no_response(self, note: str | None, by: Attribution) -> None:
        """Followed up, and no reaction came: the stage stays, and the account is no warmer."""
        self._refuse_if_excluded()  # as a response
        self._refuse_before_material()
        self._trigger(self.NoResponse, by, note=note)

    def hold_meeting(self, note: str | None, by: Attribution) -> None:
        self._refuse_if_excluded()  # as a response: the account is off the target list
        self._refuse_before_material()
        self._trigger(self.MeetingHeld, by, note=note)
        if self.stage is AbmStage.OUTREACH:
            self._change_stage(AbmStage.WARM_UP, "meeting_held", by)

    def win_deal(self, amount: int | None, currency: str | None, by: Attribution) -> None:
        if self.stage is not AbmStage.WARM_UP:
            raise RuleViolation(
                "win_requires_warm_up", f"A deal is won only from warm_up, not from {self.stage}."
            )
        if (amount is None) != (currency is None):
            raise InvalidValue("currency", "A deal amount and its currency go together.")
        if amount is not None and amount < 0:
            raise InvalidValue("amount", "A deal amount is not negative.")
        self._trigger(self.DealWon, by, amount=amount, currency=currency)
        self._change_stage(AbmStage.WON, "deal_won", by)

    def lose_deal(self, by: Attribution) -> None:
        if self.stage not in ACTIVE_STAGES:
            raise RuleViolation(
                "loss_requires_active_stage",
                f"A deal is lost only from an active stage, not from {self.stage}.",
            )
        self._require_reason(by, "A lost deal needs a reason.")
        self._trigger(self.DealLost, by)
        self._change_stage(AbmStage.LOST, "deal_lost", by)

    def move_stage(self, to: AbmStage, by: Attribution) -> None:
        if to not in PIPELINE or to is AbmStage.WON:
            raise RuleViolation(
                "stage_set_by_fact",
                f"{to} is reached by recording the fact (screening or deal), not by a move.",
            )
        if to is self.stage:
            raise RuleViolation("stage_unchanged", f"The account is already in {to}.")
        self._refuse_if_excluded()
        if self.funnel is FunnelState.CARE and self.stage is AbmStage.WON:
            raise RuleViolation(
                "care_requires_won",
                "The account is in the funnel state care, which needs a won deal: "
                "move the funnel back first.",
            )
        self._require_reason(by, "A manual stage move needs a reason.")
        if self.stage not in PIPELINE or PIPELINE.index(to) > PIPELINE.index(self.stage):
            # Forward (or out of `lost`): every stage passed on the way needs its fact.
            for stage in PIPELINE[1 : PIPELINE.index(to) + 1]:
                if not self._has_fact_for(stage):
                    rule, fact = _STAGE_FACTS[stage]
                    raise RuleViolation(rule, f"Moving to {to} needs {fact} first.")
        self._change_stage(to, MANUAL, by)

    def move_funnel(self, to: FunnelState, by: Attribution) -> None:
        if to is self.funnel:
            raise RuleViolation("funnel_unchanged", f"The account is already in {to}.")
        if to is FunnelState.CARE and self.stage is not AbmStage.WON:
            raise RuleViolation("care_requires_won", "Only a won account can be in care.")
        if FUNNEL.index(to) < FUNNEL.index(self.funnel):
            self._require_reason(by, "A move back in the funnel needs a reason.")
        self._trigger(
            self.FunnelStateChanged,
            by,
            from_state=self.funnel.value,
            to_state=to.value,
            cause=MANUAL,
        )

    # Derived state -------------------------------------------------------------------------

    @property
    def is_qualified(self) -> bool:
        return self.screening is not None and self.screening.outcome is ScreeningOutcome.QUALIFIED

    @property
    def buying_roles_covered(self) -> list[BuyingRole]:
        covered = {c.buying_role for c in self.contacts}
        return [role for role in BUYING_ROLES if role in covered]

    @property
    def buying_roles_missing(self) -> list[BuyingRole]:
        covered = {c.buying_role for c in self.contacts}
        return [role for role in BUYING_ROLES if role not in covered]

    # Internals ---------------------------------------------------------------------------

    def _trigger(self, event_class: type[Account.Event], by: Attribution, **kwargs: Any) -> None:
        self.trigger_event(event_class, **kwargs, **by.event_fields())

    def _change_stage(self, to: AbmStage, cause: str, by: Attribution) -> None:
        self._trigger(
            self.StageChanged, by, from_stage=self.stage.value, to_stage=to.value, cause=cause
        )

    def _has_fact_for(self, stage: AbmStage) -> bool:
        if stage is AbmStage.PRIORITIZED:
            return self.bant is not None
        if stage is AbmStage.OUTREACH:
            return self.materials_sent > 0
        if stage is AbmStage.WARM_UP:
            return self.has_warm_signal
        return stage is AbmStage.IDENTIFIED

    def _refuse_if_excluded(self) -> None:
        if self.stage is AbmStage.EXCLUDED:
            raise RuleViolation(
                "account_excluded", "The account is excluded; screen it as qualified first."
            )

    def _refuse_before_material(self) -> None:
        if self.materials_sent == 0:
            raise RuleViolation(
                "outreach_not_started",
                "Record a material sent before responses, no_response or meetings.",
            )

    @staticmethod
    def _require_reason(by: Attribution, detail: str) -> None:
        if not (by.reason and by.reason.strip()):
            raise RuleViolation("reason_required", detail)


# Stored topics of the account's events begin with this (it tells them from other aggregates').
EVENT_TOPIC_PREFIX = f"{Account.__module__}:{Account.__qualname__}."
