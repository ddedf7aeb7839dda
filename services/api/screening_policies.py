"""Screening policies: create versions, read them, dry-run and apply them to stage-1 accounts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter
from msgspec.structs import force_setattr

from contracts.screening import (
    CreatePolicy,
    DecisionView,
    JobView,
    PolicyCriteria,
    PolicyList,
    PolicyView,
    ScreenAccounts,
    ScreeningRun,
)
from domain.ledger import AccountLedger
from domain.screening_policy import SCREENABLE_STAGES, Criteria, ScreeningDecision
from projections.account_queries import account_ids_in_stages
from services.api.auth import Permission
from services.api.command_meta import IDEMPOTENT, CommandHeaders
from services.api.documentation import COMMAND_POSITION, POLICY_LOCATION, REPLAYED
from services.api.jobs import accepted
from services.api.problems import KEY_REUSED, problem_response, unreadable_response
from services.api.read_models import Reads
from services.api.strict_json import StrictJSON
from services.jobs import JobRunner
from services.projector import Projector

Version = Annotated[int, PathParameter(ge=1, description="The policy version.")]
INLINE_APPLY_LIMIT = 500  # larger applies run as a background job
# The most decisions an answer lists (about 3 MB of JSON): a dry run over a million accounts
# would otherwise hold, and send, every one. Those that would change come first.
DECISIONS_LISTED = 10_000
_UNREADABLE = {409: unreadable_response("the screening policy")}
_NO_VERSION = {404: problem_response("No such policy version."), **_UNREADABLE}
_NO_VERSION_OR_ACCOUNT = {
    404: problem_response("No such policy version or account."),
    409: unreadable_response("the screening policy or of an account"),
}


def _criteria(body: PolicyCriteria) -> Criteria:
    return Criteria(
        industries_included=tuple(body.industries_included),
        industries_excluded=tuple(body.industries_excluded),
        headcount_min=body.headcount_min,
        headcount_max=body.headcount_max,
        revenue_min=body.revenue_min,
        revenue_max=body.revenue_max,
        revenue_currency=body.revenue_currency,
        countries_included=tuple(body.countries_included),
        countries_excluded=tuple(body.countries_excluded),
        regions_included=tuple(body.regions_included),
        growth_rate_min=body.growth_rate_min,
    )


def _policy_view(ledger: AccountLedger, version: int) -> PolicyView:
    criteria = ledger.policy(version)
    policies = ledger.screening_policies()
    assert policies is not None
    # As stored, not checked again: a rule added since (a name of invisible characters) must
    # not keep a policy that was taken then from being read.
    shown = PolicyCriteria()
    for name, value in criteria.as_event_data().items():
        force_setattr(shown, name, value)
    return PolicyView(version=version, created_at=policies.created_at[version], criteria=shown)


def _candidates(projector: Projector, wait: float, named: list[UUID] | None) -> list[UUID]:
    """The named accounts, or every account in stage 1 once the read model has caught up."""
    if named is not None:
        return list(dict.fromkeys(named))
    head = projector.ledger.recorder.max_notification_id() or 0
    projector.wait_for("accounts", head, wait)
    with projector.database.read() as conn:
        ids = account_ids_in_stages(conn, tuple(s.value for s in SCREENABLE_STAGES))
    return [UUID(i) for i in ids]


def _run(version: int, decisions: Iterable[ScreeningDecision], dry_run: bool) -> ScreeningRun:
    """The totals of every decision, read one at a time, and the first DECISIONS_LISTED of
    them (those that change first), in the order they were decided."""
    totals = dict.fromkeys(("qualified", "excluded", "changes", "overridden", "skipped"), 0)
    changing: list[tuple[int, DecisionView]] = []
    others: list[tuple[int, DecisionView]] = []
    for index, d in enumerate(decisions):
        totals[d.outcome.value] += 1
        totals["changes"] += d.applies
        totals["overridden"] += d.overridden
        totals["skipped"] += d.skipped
        kept = changing if d.applies else others
        if len(kept) < DECISIONS_LISTED:
            kept.append((index, _decision_view(d)))
    listed = sorted(changing + others[: DECISIONS_LISTED - len(changing)], key=lambda i: i[0])
    decided = totals["qualified"] + totals["excluded"]
    return ScreeningRun(
        version=version,
        dry_run=dry_run,
        qualified=totals["qualified"],
        excluded=totals["excluded"],
        changes=totals["changes"],
        applied=0 if dry_run else totals["changes"],
        overridden=totals["overridden"],
        skipped=totals["skipped"],
        decisions=[view for _, view in listed],
        omitted=decided - len(listed),
    )


def _decision_view(d: ScreeningDecision) -> DecisionView:
    return DecisionView(
        account_id=d.account_id,
        name=d.name,
        abm_stage=d.stage.value,  # type: ignore[arg-type]
        current_outcome=d.current.value if d.current else None,  # type: ignore[arg-type]
        outcome=d.outcome.value,  # type: ignore[arg-type]
        failed_criteria=list(d.failed),
        changes=d.applies,  # as the run's `changes` counts: a skipped account changes not
        overridden=d.overridden,
        skipped=None
        if not d.skipped
        else ("overridden" if d.overridden else f"in stage {d.stage.value}"),
    )


class ScreeningPolicyController(Controller):
    path = "/screening-policies"
    tags = ["screening"]
    # Reading policies is for everyone who reads; creating, trying and applying them is sales'.

    @post(
        "/",
        opt={"permission": Permission.WRITE, IDEMPOTENT: True},
        dto=StrictJSON[CreatePolicy],
        return_dto=None,
        sync_to_thread=True,
        status_code=201,
        summary="Create a new version of the screening policy",
        responses={
            **_UNREADABLE,
            422: problem_response(f"A field is invalid (see `field`), or {KEY_REUSED}."),
        },
        response_headers=[POLICY_LOCATION, COMMAND_POSITION, REPLAYED],
    )
    def create(
        self,
        data: JSONBody[CreatePolicy],
        ledger: NamedDependency[AccountLedger],
        command_headers: NamedDependency[CommandHeaders],
    ) -> Response[PolicyView]:
        created = ledger.create_policy(_criteria(data), command_headers.meta(data))
        headers = {
            "Location": f"/screening-policies/{created.value}",
            "CRM-Position": str(created.position),
        }
        if created.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(_policy_view(ledger, created.value), status_code=201, headers=headers)

    @get(
        "/",
        sync_to_thread=True,
        summary="Every version of the screening policy",
        responses=_UNREADABLE,
    )
    def list_versions(self, ledger: NamedDependency[AccountLedger]) -> PolicyList:
        policies = ledger.screening_policies()
        versions = sorted(policies.versions) if policies else []
        return PolicyList(items=[_policy_view(ledger, v) for v in versions])

    @get("/{version:str}", sync_to_thread=True, summary="One version", responses=_NO_VERSION)
    def read(self, version: Version, ledger: NamedDependency[AccountLedger]) -> PolicyView:
        return _policy_view(ledger, version)

    @post(
        "/{version:str}/dry-run",
        opt={"permission": Permission.WRITE},
        dto=StrictJSON[ScreenAccounts],
        return_dto=None,
        status_code=200,
        summary="What applying the version would change; nothing is stored",
        responses={
            **_NO_VERSION_OR_ACCOUNT,
            503: problem_response(
                "Another report or dry-run took longer than CRM_REPORT_WAIT_SECONDS (`busy`)."
            ),
        },
    )
    async def dry_run(
        self,
        version: Version,
        data: JSONBody[ScreenAccounts],
        ledger: NamedDependency[AccountLedger],
        reads: NamedDependency[Reads],
    ) -> ScreeningRun:
        def decide() -> ScreeningRun:
            ledger.policy(version)
            accounts = _candidates(reads.projector, reads.wait_seconds, data.account_ids)
            return _run(version, ledger.screening_decisions(version, accounts), dry_run=True)

        # It loads every account it decides (seconds at tens of thousands): made in turn with
        # the reports, and shared by the same dry-run asked meanwhile, as a report is.
        asked = ("dry-run", version, None if data.account_ids is None else tuple(data.account_ids))
        return await reads.report(asked, decide, lambda _: False)  # type: ignore[no-any-return]

    # No Idempotency-Key here: an apply stores a transaction per account, which no receipt can
    # join, and applying a version again changes nothing anyway.
    @post(
        "/{version:str}/apply",
        opt={"permission": Permission.WRITE},
        dto=StrictJSON[ScreenAccounts],
        return_dto=None,
        sync_to_thread=True,
        status_code=200,
        summary="Screen stage-1 accounts (or the named ones) by the version; 202 with a job when "
        "run in the background",
        response_headers=[COMMAND_POSITION],
        responses={
            **_NO_VERSION_OR_ACCOUNT,
            202: ResponseSpec(
                JobView,
                description="Running in the background: the job.",
                generate_examples=False,
            ),
        },
    )
    def apply(
        self,
        version: Version,
        data: JSONBody[ScreenAccounts],
        ledger: NamedDependency[AccountLedger],
        reads: NamedDependency[Reads],
        command_headers: NamedDependency[CommandHeaders],
        jobs: NamedDependency[JobRunner],
        background: Annotated[
            bool,
            QueryParameter(description="Run as a job (always when over 500 accounts)."),
        ] = False,
    ) -> Response[ScreeningRun]:  # or, 202, the job's view, as `responses` documents
        ledger.policy(version)
        accounts = _candidates(reads.projector, reads.wait_seconds, data.account_ids)
        if data.account_ids is not None:
            ledger.require_accounts(accounts)  # an unknown one refuses it before any is screened
        meta = command_headers.meta(data)
        if background or len(accounts) > INLINE_APPLY_LIMIT:
            return accepted(jobs.submit_apply(version, accounts, meta))
        decisions = ledger.apply_policy(version, accounts, meta)
        # Read after every screening above was stored: a read that reaches it shows them all.
        position = ledger.recorder.max_notification_id() or 0
        return Response(
            _run(version, decisions, dry_run=False), headers={"CRM-Position": str(position)}
        )
