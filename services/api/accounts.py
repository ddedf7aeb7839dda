"""The account endpoints: register, read, history, and one endpoint per command."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.response import Stream

from contracts.accounts import (
    REASON_DESCRIPTION,
    REASON_LIMITS,
    STORED_INT_MAX,
    AccountView,
    AddContact,
    BantNotes,
    CloseDeal,
    CorrectContact,
    CorrectFirmographics,
    FunnelStateName,
    HistoryPage,
    MoveFunnel,
    MoveStage,
    RecordOutreach,
    RegisterAccount,
    RemoveContact,
    ScoreBant,
    ScreenAccount,
    stated,
)
from contracts.audit import AccountDiff, ChainAudit
from contracts.instants import NoOffset, OutOfRange, parse_instant, written
from contracts.read_models import AccountPage, AccountSummary
from contracts.screening import OverrideScreening
from domain.account import Account, BantRating, Contact, Firmographics
from domain.errors import AccountNotFound, InvalidValue
from domain.ledger import AccountLedger, CommandResult
from domain.vocabulary import (
    BANT_DIMENSIONS,
    AbmStage,
    BuyingRole,
    DecisionPower,
    FunnelState,
    Reaction,
    ScreeningOutcome,
)
from domain.web_domain import normalise_domain
from projections.account_queries import Filters, account_list
from projections.database import from_micros
from services.api.audit import CHECKPOINT_ALTERED, audit_download
from services.api.auth import PAST_READS, Permission
from services.api.command_meta import IDEMPOTENT, AccountCommand, LoopReply
from services.api.conditional import (
    BAD_IF_MATCH,
    NOT_MODIFIED,
    STALE_VERSION,
    versioned_answer,
)
from services.api.documentation import (
    ACCOUNT_LOCATION,
    COMMAND_POSITION,
    ETAG,
    READ_POSITION,
    REPLAYED,
    STALE,
    download_name,
)
from services.api.parameters import number_problem
from services.api.problems import (
    KEY_REUSED,
    etag,
    invalid_field,
    problem,
    problem_response,
    unreadable,
    unreadable_response,
)
from services.api.read_models import (
    PAGE_PROBLEMS,
    AsOf,
    ByteOrderMark,
    Country,
    Cursor,
    ExportFormat,
    Limit,
    MinPosition,
    Reads,
    Stages,
    Text,
    account_rows,
    country_filter,
    download,
    instant,
    stage_filter,
    text_query,
)
from services.api.strict_json import StrictJSON
from services.api.views import account_diff, account_view, chain_audit, history_event
from services.audit import Audit

HISTORY_PAGE, HISTORY_PAGE_MAX = 100, 1000  # events a history page holds: unless asked; at most

# The problems each route can give beyond those of any input, key or store (see openapi.py).
_NO_ACCOUNT = {404: problem_response("No such account.")}
_UNREADABLE = unreadable("the account")
_EVENT_UNREADABLE = unreadable_response("the account")
_COMMAND_PROBLEMS = {
    **_NO_ACCOUNT,
    409: problem_response(f"Refused by a business rule (see `rule`), or {_UNREADABLE}."),
    412: problem_response("If-Match names a version that is not current."),
    422: problem_response(f"A field is invalid (see `field`), or {KEY_REUSED}."),
}
_REGISTRATION_PROBLEMS = {
    409: problem_response(
        "The domain is registered already (rule `domain_unique`; `account_id` names the account)."
    ),
    422: problem_response(f"A field is invalid (see `field`), or {KEY_REUSED}."),
}

AccountId = Annotated[UUID, PathParameter(description="The account id.")]
ContactId = Annotated[UUID, PathParameter(description="The contact's id, as the account lists it.")]
Ledger = NamedDependency[AccountLedger]
Command = NamedDependency[AccountCommand]
AuditDependency = NamedDependency[Audit]


async def _command_response(
    submitted: asyncio.Future[CommandResult], status_code: int = 200
) -> Response[AccountView]:
    """Waits, without holding a thread, for the account writer to store the command."""
    result = await submitted
    account = result.account
    headers = {"ETag": etag(account.version)}
    if result.visible_at is not None:
        headers["CRM-Position"] = str(result.visible_at)
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    if status_code == 201:
        headers["Location"] = f"/accounts/{account.id}"
    return Response(account_view(account), status_code=status_code, headers=headers)


def _command(path: str, body: type, *, method: Any = post, summary: str) -> Any:
    """Decorates a command handler: strict JSON body, problem responses. Handlers only queue
    their command for the account writer, so they run on the event loop, not in a thread."""
    return method(
        path,
        opt={"permission": Permission.WRITE},
        dto=StrictJSON[body],
        return_dto=None,
        summary=summary,
        responses=_COMMAND_PROBLEMS,
        response_headers=[ETAG, COMMAND_POSITION, REPLAYED],
        status_code=200,
    )


def _domain_parameter(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalise_domain(value)
    except InvalidValue as exc:
        raise invalid_field("domain", str(exc), 400) from None


class AccountController(Controller):
    path = "/accounts"
    tags = ["accounts"]

    @post(
        "/",
        opt={"permission": Permission.WRITE, IDEMPOTENT: True},  # no account yet to expect
        dto=StrictJSON[RegisterAccount],
        return_dto=None,
        summary="Register a target account",
        responses=_REGISTRATION_PROBLEMS,
        response_headers=[ETAG, COMMAND_POSITION, REPLAYED, ACCOUNT_LOCATION],
        status_code=201,
    )
    async def register(
        self, command: Command, data: JSONBody[RegisterAccount]
    ) -> Response[AccountView]:
        details = Firmographics(
            name=data.name,
            domain=data.domain,
            industry=data.industry,
            headcount=data.headcount,
            annual_revenue=data.annual_revenue,
            revenue_currency=data.revenue_currency,
            country=data.country,
            region=data.region,
            growth_rate=data.growth_rate,
            source=data.source,
        )
        reply = LoopReply()
        command.ledger.submit_registration(details, command.headers.meta(data), reply)
        return await _command_response(reply.future, 201)

    @get(
        "/",
        opt={PAST_READS: True},
        summary="The account list, filtered and searched",
        tags=["read models"],
        responses=PAGE_PROBLEMS,
        response_headers=[READ_POSITION, STALE],
    )
    async def list_accounts(
        self,
        reads: NamedDependency[Reads],
        stage: Stages = None,
        funnel: Annotated[FunnelStateName | None, QueryParameter()] = None,
        industry: Text = None,
        country: Country = None,
        q: Annotated[
            str | None,
            text_query(
                "Part of the name or domain; typed without accents, it finds names with or "
                "without them (`cafe` finds Café)."
            ),
        ] = None,
        domain: Annotated[
            str | None,
            text_query(
                "A web domain: the account it names, if any, written as a registration may "
                "write it (`WWW.Acme.com` finds acme.com)."
            ),
        ] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
        as_of: AsOf = None,
        min_position: MinPosition = None,
    ) -> Response[AccountPage]:
        filters = Filters(
            stages=stage_filter(stage),
            funnel=funnel,
            industry=industry,
            country=country_filter(country),
            search=q,
            domain=_domain_parameter(domain),
        )

        return await account_rows(
            reads,
            account_list,
            AccountPage,
            lambda _, r: AccountSummary(
                account_id=UUID(r["account_id"]),
                name=r["name"],
                domain=r["domain"],
                industry=r["industry"],
                country=r["country"],
                region=r["region"],
                headcount=r["headcount"],
                annual_revenue=r["annual_revenue"],
                revenue_currency=r["revenue_currency"],
                growth_rate=r["growth_rate"],
                source=r["source"],
                abm_stage=r["abm_stage"],
                funnel_state=r["funnel_state"],
                score=r["score"],
                registered_at=from_micros(r["registered_at"]),
            ),
            filters,
            limit,
            cursor,
            as_of,
            min_position,
        )

    @get(
        "/export",
        # Before the file begins it reads the read models' position: a store away is a 503.
        opt={"permission": Permission.AUDIT},
        tags=["read models"],
        summary="The whole account list as CSV or JSON Lines",
        media_type="text/csv",
        response_headers=[READ_POSITION, STALE, download_name("accounts.csv")],
    )
    async def export(
        self,
        reads: NamedDependency[Reads],
        format: ExportFormat = "csv",
        min_position: MinPosition = None,
        bom: ByteOrderMark = False,
    ) -> Stream:
        return await download(reads, "accounts", format, min_position, bom)

    @get(
        "/{account_id:uuid}",
        opt={PAST_READS: True},
        sync_to_thread=True,
        summary="The account now, or as it was at a version or an instant",
        responses={
            404: problem_response(
                "No such account, or it has no such version (`field` version) or was not "
                "registered yet at as_of (`field` as_of)."
            ),
            409: _EVENT_UNREADABLE,
            304: NOT_MODIFIED,
            400: problem_response(f"Both version and as_of, or: {BAD_IF_MATCH}"),
            412: problem_response(STALE_VERSION),
        },
        response_headers=[ETAG],
    )
    def read(
        self,
        request: Request[Any, Any, Any],
        account_id: AccountId,
        ledger: Ledger,
        version: Annotated[
            int | None, QueryParameter(ge=1, le=STORED_INT_MAX, description="A past version.")
        ] = None,
        as_of: AsOf = None,
    ) -> Response[AccountView]:
        if version is not None and as_of is not None:
            raise invalid_field("as_of", "Give either version or as_of, not both.", 400)
        if (at := instant(as_of, "as_of")) is not None:
            account = _as_of(ledger, account_id, at)
        else:
            account = _at_version(ledger, account_id, version)
        return versioned_answer(request, account_view(account), account.version)

    @get(
        "/{account_id:uuid}/history",
        opt={"permission": Permission.AUDIT},
        sync_to_thread=True,
        summary="The account's events in order",
        response_headers=[download_name("{account_id}.csv", always=False)],
        responses={
            **_NO_ACCOUNT,
            409: problem_response(
                f"{CHECKPOINT_ALTERED.description} Or (json) {_UNREADABLE}: the exports "
                "carry such an event as stored."
            ),
        },
    )
    def history(
        self,
        account_id: AccountId,
        ledger: Ledger,
        audit: AuditDependency,
        after: Annotated[
            int | None,
            QueryParameter(
                ge=0, le=STORED_INT_MAX, description="Only events after this version (json)."
            ),
        ] = None,
        limit: Annotated[
            int | None,
            QueryParameter(
                ge=1, le=HISTORY_PAGE_MAX, description=f"Events a page (json): {HISTORY_PAGE}."
            ),
        ] = None,
        format: Annotated[
            Literal["json", "jsonl", "csv"],
            QueryParameter(
                description="json: a page of events. jsonl or csv: every event with its "
                "chain hashes and the latest checkpoint, for offline verification."
            ),
        ] = "json",
    ) -> HistoryPage | Stream:
        if format != "json":
            for name, value in (("after", after), ("limit", limit)):
                if value is not None:  # it would be ignored
                    detail = f"{name} pages the json format; {format} holds every event."
                    raise invalid_field(name, detail, 400)
            return audit_download(audit.export_records(account_id), format, str(account_id))
        limit = limit or HISTORY_PAGE
        events = ledger.history(account_id, after=after or 0, limit=limit)
        items = [history_event(e) for e in events]
        next_after = items[-1].version if len(items) == limit else None
        return HistoryPage(account_id=account_id, items=items, next_after=next_after)

    @get(
        "/{account_id:uuid}/audit",
        opt={"permission": Permission.AUDIT},
        sync_to_thread=True,
        summary="Verify the account's hash chain, against the latest checkpoint",
        responses={**_NO_ACCOUNT, 409: CHECKPOINT_ALTERED},
    )
    def audit(self, account_id: AccountId, audit: AuditDependency) -> ChainAudit:
        return chain_audit(audit.verify_account(account_id))

    @get(
        "/{account_id:uuid}/diff",
        opt={"permission": Permission.AUDIT},
        sync_to_thread=True,
        summary="Which fields changed between two versions or instants, and the events that did it",
        responses={
            **_NO_ACCOUNT,
            400: problem_response(
                "from or to is not a version or an instant, is a version the account does not "
                "have, or from comes after to (see `field`)."
            ),
            409: _EVENT_UNREADABLE,
        },
    )
    def diff(
        self,
        account_id: AccountId,
        audit: AuditDependency,
        from_: Annotated[
            str,
            QueryParameter(
                name="from",
                max_length=64,
                description="A version (0: before registration) or an RFC 3339 instant.",
            ),
        ],
        to: Annotated[
            str | None,
            QueryParameter(max_length=64, description="A version or an instant; default: now."),
        ] = None,
    ) -> AccountDiff:
        from_version, from_at = _moment(audit, account_id, "from", from_)
        to_version, to_at = (None, None) if to is None else _moment(audit, account_id, "to", to)
        if from_at is not None and from_at > (to_at or datetime.now(UTC)):
            # Both may fall on one version, which would compare it with itself.
            raise invalid_field("from", "from must be an instant before to (default: now).", 400)
        try:
            return account_diff(account_id, audit.diff(account_id, from_version, to_version))
        except InvalidValue as exc:  # a version it does not have, or from after to
            raise invalid_field(exc.field, str(exc), 400) from None

    @_command("/{account_id:uuid}/screening", ScreenAccount, summary="Record a screening")
    async def screen(
        self,
        command: Command,
        account_id: AccountId,
        data: JSONBody[ScreenAccount],
    ) -> Response[AccountView]:
        outcome, criteria = ScreeningOutcome(data.outcome), list(data.criteria)
        return await _command_response(
            command.submit(data, account_id, Account.screen, outcome, criteria, data.note)
        )

    @_command(
        "/{account_id:uuid}/screening/override",
        OverrideScreening,
        summary="Override the screening policy's decision for this account, with a reason",
    )
    async def override_screening(
        self,
        command: Command,
        account_id: AccountId,
        data: JSONBody[OverrideScreening],
    ) -> Response[AccountView]:
        outcome = ScreeningOutcome(data.outcome)
        return await _command_response(
            command.submit(data, account_id, Account.override_screening, outcome)
        )

    @_command(
        "/{account_id:uuid}",
        CorrectFirmographics,
        method=patch,
        summary="Correct the account's firmographics: the fields sent change, the others stay",
    )
    async def correct_firmographics(
        self,
        command: Command,
        account_id: AccountId,
        data: JSONBody[CorrectFirmographics],
    ) -> Response[AccountView]:
        return await _command_response(
            command.submit(data, account_id, Account.correct_firmographics, stated(data))
        )

    @_command("/{account_id:uuid}/bant", ScoreBant, method=put, summary="Rate the account by BANT")
    async def score_bant(
        self,
        command: Command,
        account_id: AccountId,
        data: JSONBody[ScoreBant],
    ) -> Response[AccountView]:
        notes = data.notes or BantNotes()
        rating = BantRating(
            budget=data.budget,
            authority=data.authority,
            need=data.need,
            timing=data.timing,
            notes={d: n for d in BANT_DIMENSIONS if (n := getattr(notes, d)) is not None},
        )
        return await _command_response(command.submit(data, account_id, Account.score_bant, rating))

    @_command("/{account_id:uuid}/contacts", AddContact, summary="Add a contact")
    async def add_contact(
        self,
        command: Command,
        account_id: AccountId,
        data: JSONBody[AddContact],
    ) -> Response[AccountView]:
        contact = Contact(
            uuid4(),
            data.name,
            data.title,
            BuyingRole(data.buying_role),
            DecisionPower(data.decision_power),
            data.email,
        )
        return await _command_response(
            command.submit(data, account_id, Account.add_contact, contact)
        )

    @_command(
        "/{account_id:uuid}/contacts/{contact_id:uuid}",
        CorrectContact,
        method=patch,
        summary="Correct a contact: the fields sent change, the others stay",
    )
    async def correct_contact(
        self,
        command: Command,
        account_id: AccountId,
        contact_id: ContactId,
        data: JSONBody[CorrectContact],
    ) -> Response[AccountView]:
        return await _command_response(
            command.submit(data, account_id, Account.correct_contact, contact_id, stated(data))
        )

    @delete(
        "/{account_id:uuid}/contacts/{contact_id:uuid}",
        opt={"permission": Permission.WRITE},
        summary="Remove a contact (left the company, or added in error); the history keeps them",
        responses=_COMMAND_PROBLEMS,
        response_headers=[ETAG, COMMAND_POSITION, REPLAYED],
        status_code=200,
    )
    async def remove_contact(
        self,
        command: Command,
        account_id: AccountId,
        contact_id: ContactId,
        reason: Annotated[
            str | None,
            QueryParameter(**REASON_LIMITS, description=REASON_DESCRIPTION),
        ] = None,
    ) -> Response[AccountView]:
        try:  # the parameter's pattern cannot see invisible characters beyond the BMP
            body = RemoveContact(reason)
        except ValueError as refused:
            raise invalid_field("reason", str(refused), 400) from None
        return await _command_response(
            command.submit(body, account_id, Account.remove_contact, contact_id)
        )

    @_command("/{account_id:uuid}/outreach", RecordOutreach, summary="Record an outreach fact")
    async def record_outreach(
        self,
        command: Command,
        account_id: AccountId,
        data: JSONBody[RecordOutreach],
    ) -> Response[AccountView]:
        _only_fields_of(
            data,
            {
                "material_sent": ("material", "channel"),
                "response_received": ("reaction",),
                "no_response": (),
                "meeting_held": (),
            }[data.kind],
            optional=("material", "channel", "reaction"),
        )
        if data.kind == "material_sent":
            assert data.material is not None and data.channel is not None
            submitted = command.submit(
                data, account_id, Account.send_material, data.material, data.channel, data.note
            )
        elif data.kind == "response_received":
            assert data.reaction is not None
            submitted = command.submit(
                data, account_id, Account.receive_response, Reaction(data.reaction), data.note
            )
        elif data.kind == "no_response":
            submitted = command.submit(data, account_id, Account.record_no_response, data.note)
        else:
            submitted = command.submit(data, account_id, Account.hold_meeting, data.note)
        return await _command_response(submitted)

    @_command("/{account_id:uuid}/stage", MoveStage, summary="Move the ABM stage by hand")
    async def move_stage(
        self,
        command: Command,
        account_id: AccountId,
        data: JSONBody[MoveStage],
    ) -> Response[AccountView]:
        return await _command_response(
            command.submit(data, account_id, Account.move_stage, AbmStage(data.to))
        )

    @_command("/{account_id:uuid}/funnel", MoveFunnel, summary="Move the See-Think-Do-Care state")
    async def move_funnel(
        self,
        command: Command,
        account_id: AccountId,
        data: JSONBody[MoveFunnel],
    ) -> Response[AccountView]:
        return await _command_response(
            command.submit(data, account_id, Account.move_funnel, FunnelState(data.to))
        )

    @_command("/{account_id:uuid}/deal", CloseDeal, summary="Close the deal as won or lost")
    async def close_deal(
        self,
        command: Command,
        account_id: AccountId,
        data: JSONBody[CloseDeal],
    ) -> Response[AccountView]:
        if data.outcome == "won":
            if (data.amount is None) != (data.currency is None):
                raise invalid_field("currency", "amount and currency are given together.")
            return await _command_response(
                command.submit(data, account_id, Account.win_deal, data.amount, data.currency)
            )
        _only_fields_of(data, (), optional=("amount", "currency"))
        return await _command_response(command.submit(data, account_id, Account.lose_deal))


def _only_fields_of(data: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    """Fields that depend on `kind` or `outcome`: the required ones present, the others absent."""
    for name in optional:
        value = getattr(data, name)
        if name in required and value is None:
            raise invalid_field(name, f"{name} is required here.")
        if name not in required and value is not None:
            raise invalid_field(name, f"{name} does not apply here.")


def _as_of(ledger: AccountLedger, account_id: UUID, at: datetime) -> Account:
    try:
        return ledger.account_as_of(account_id, at)
    except AccountNotFound:
        first = ledger.account(account_id, 1)  # AccountNotFound when there is no account
        detail = f"The account was registered at {written(first.created_on)}, after as_of."
        raise problem(404, "Not registered yet", detail, kind="not-found", field="as_of") from None


def _at_version(ledger: AccountLedger, account_id: UUID, version: int | None) -> Account:
    try:
        return ledger.account(account_id, version)
    except AccountNotFound:
        if version is None:
            raise
        latest = ledger.account(account_id).version  # AccountNotFound when there is no account
        detail = f"The account has no version {version}: it is at version {latest}."
        raise problem(404, "Version not found", detail, kind="not-found", field="version") from None


def _moment(audit: Audit, account_id: UUID, name: str, value: str) -> tuple[int, datetime | None]:
    """A version number as given, or the account's version at an instant, and the instant."""
    if value.isascii() and value.isdigit():
        if refused := number_problem(name, value):  # 01 is not a version, as elsewhere
            raise invalid_field(*refused, 400)
        if int(value) > STORED_INT_MAX:
            raise invalid_field(name, f"{name} is not a version this service can hold.", 400)
        return int(value), None
    try:
        parse_instant(value)
    except (NoOffset, OutOfRange):
        pass  # `instant` says what is wrong with it
    except ValueError:
        raise invalid_field(
            name, f"{name} must be a version or an RFC 3339 instant.", 400
        ) from None
    at = instant(value, name)
    return audit.version_at(account_id, at), at
