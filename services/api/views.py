"""Maps domain state and events onto the contract's views."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any
from uuid import UUID

from contracts.accounts import (
    AccountView,
    BantView,
    BuyingRolesView,
    ContactView,
    DealView,
    HistoryEvent,
    OutreachView,
    ScreeningView,
)
from contracts.audit import (
    AccountDiff,
    ChainAudit,
    ChangingEvent,
    CheckpointView,
    FieldChangeView,
)
from domain.account import Account, event_type
from domain.checkpoints import CheckpointEntry

if TYPE_CHECKING:
    from services.audit import ChainReport, Diff

# Attributes every stored event has; the rest is the event's own data.
_ENVELOPE = frozenset(
    {
        "originator_id",
        "originator_version",
        "originator_topic",
        "timestamp",
        "actor",
        "reason",
        "request_id",
    }
)


def account_view(account: Account) -> AccountView:
    f = account.firmographics
    screening = account.screening
    bant = account.bant
    deal = account.deal
    return AccountView(
        id=account.id,
        version=account.version,
        name=f.name,
        domain=f.domain,
        industry=f.industry,
        headcount=f.headcount,
        annual_revenue=f.annual_revenue,
        revenue_currency=f.revenue_currency,
        country=f.country,
        region=f.region,
        growth_rate=f.growth_rate,
        source=f.source,
        abm_stage=account.stage.value,
        abm_stage_since=account.stage_since,
        funnel_state=account.funnel.value,
        funnel_state_since=account.funnel_since,
        screening=None
        if screening is None
        else ScreeningView(
            outcome=screening.outcome.value,
            criteria=list(screening.criteria),
            note=screening.note,
            screened_at=screening.at,
            policy_version=screening.policy_version,
            overridden=screening.overridden,
        ),
        bant=None
        if bant is None or account.bant_scored_at is None
        else BantView(
            budget=bant.budget,
            authority=bant.authority,
            need=bant.need,
            timing=bant.timing,
            score=bant.score,
            notes=dict(bant.notes),
            scored_at=account.bant_scored_at,
        ),
        contacts=[
            ContactView(
                id=c.contact_id,
                name=c.name,
                title=c.title,
                email=c.email,
                buying_role=c.buying_role.value,
                decision_power=c.decision_power.value,
            )
            for c in account.contacts
        ],
        buying_roles=BuyingRolesView(
            covered=[r.value for r in account.buying_roles_covered],
            missing=[r.value for r in account.buying_roles_missing],
        ),
        outreach=OutreachView(
            materials_sent=account.materials_sent,
            responses_received=account.responses_received,
            no_responses=account.no_responses,
            meetings_held=account.meetings_held,
            last_reaction=account.last_reaction.value if account.last_reaction else None,
        ),
        deal=None
        if deal is None
        else DealView(
            outcome=deal.outcome,
            closed_at=deal.at,
            amount=deal.amount,
            currency=deal.currency,
            reason=deal.reason,
        ),
        registered_at=account.created_on,
        updated_at=account.modified_on,
    )


def history_event(event: Account.Event) -> HistoryEvent:
    data: dict[str, Any] = {
        f.name: getattr(event, f.name) for f in fields(event) if f.name not in _ENVELOPE
    }
    return HistoryEvent(
        version=event.originator_version,
        type=event_type(event),
        recorded_at=event.timestamp,
        actor=event.actor,
        reason=event.reason,
        request_id=event.request_id,
        data=data,
    )


def checkpoint_view(entry: CheckpointEntry) -> CheckpointView:
    return CheckpointView(
        number=entry.number,
        position=entry.position,
        root=entry.root,
        accounts=entry.accounts,
        recorded_at=entry.at,
    )


def chain_audit(report: ChainReport) -> ChainAudit:
    broken = report.broken
    return ChainAudit(
        account_id=report.account_id,
        verified=report.verified,
        events=report.events,
        head=report.head,
        first_bad_version=1 if report.missing else broken.version if broken else None,
        problem=f"no events are stored; the checkpoint recorded {report.checkpoint_version} of them"
        if report.missing
        else broken.problem
        if broken
        else None,
        missing=report.missing,
        checkpoint=checkpoint_view(report.checkpoint) if report.checkpoint else None,
        checkpoint_version=report.checkpoint_version,
    )


def account_diff(account_id: UUID, diff: Diff) -> AccountDiff:
    return AccountDiff(
        account_id=account_id,
        from_version=diff.from_version,
        to_version=diff.to_version,
        changes=[
            FieldChangeView(
                field=change.field,
                before=change.before,
                after=change.after,
                events=[
                    ChangingEvent(
                        version=e.originator_version,
                        type=event_type(e),
                        recorded_at=e.timestamp,
                        actor=e.actor,
                        reason=e.reason,
                        request_id=e.request_id,
                    )
                    for e in change.events
                ],
            )
            for change in diff.changes
        ],
    )
