"""Objectives per period (the Control step of SOSTAC), and how the stage report meets them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from contracts.accounts import STORED_INT_MAX
from contracts.instants import written
from contracts.read_models import (
    PERIOD_PATTERN,
    ObjectivesPage,
    ObjectivesView,
    SetObjectives,
    Target,
)
from domain import objectives as domain_objectives
from domain.ledger import AccountLedger
from domain.objectives import Objectives
from domain.objectives import Target as DomainTarget
from projections import objectives as listed_objectives
from services.api.auth import PAST_READS, Permission
from services.api.command_meta import IDEMPOTENT, VERSIONED, CommandHeaders
from services.api.conditional import (
    BAD_IF_MATCH,
    NOT_MODIFIED,
    STALE_VERSION,
    versioned_answer,
)
from services.api.documentation import (
    COMMAND_POSITION,
    OBJECTIVES_ETAG,
    READ_POSITION,
    REPLAYED,
    STALE,
)
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
    Cursor,
    Limit,
    MinPosition,
    Reads,
    instant,
)
from services.api.strict_json import StrictJSON

PeriodPath = Annotated[
    str,
    PathParameter(
        pattern=PERIOD_PATTERN,
        description="A year (2026), a month (2026-03) or a day (2026-03-15).",
    ),
]
_BAD_PERIOD = "Malformed or impossible period (2026-02-30)"


def _calendar_period(period: str, field: str = "period", source: str = "path") -> str:
    """A period, refused as a bad parameter when no calendar has it (2026-02-30)."""
    if not domain_objectives.is_period(period):
        message = f"{period!r} is not a year, month or day of the calendar."
        raise problem(
            400,
            "Invalid request",
            f"Invalid parameter: {field} {message}",
            kind="invalid-field",
            field=field,
            errors=[{"field": field, "source": source, "message": message}],
        )
    return period


def objectives_view(objectives: Objectives) -> ObjectivesView:
    return _view(objectives.period, objectives.version, objectives.targets)


def _view(period: str, version: int, targets: dict[str, DomainTarget]) -> ObjectivesView:
    return ObjectivesView(
        period=period,
        version=version,
        targets=[
            Target(t.metric, t.acceptable, t.optimal, t.best)  # type: ignore[arg-type]
            for t in sorted(targets.values(), key=lambda t: t.metric)
        ],
    )


class ObjectivesController(Controller):
    path = "/objectives"
    tags = ["objectives"]

    @put(
        "/{period:str}",
        opt={"permission": Permission.WRITE, IDEMPOTENT: True, VERSIONED: True},
        dto=StrictJSON[SetObjectives],
        return_dto=None,
        sync_to_thread=True,
        summary="Set targets for a period at three levels, or remove them",
        description="Sets the targets of the metrics in `targets` and removes those of the "
        "metrics in `remove` (one without a target stays without); the period's other metrics "
        "keep theirs.",
        responses={
            400: problem_response(f"{_BAD_PERIOD}, JSON or header."),
            404: problem_response("Only metrics to remove, and no objectives for the period."),
            409: problem_response(
                "The levels do not rise (rule `objective_levels_order`), or "
                f"{unreadable('the objectives')}."
            ),
            412: problem_response(
                "If-Match names a version that is not current (0 before any target is set), "
                "or is `*` before any target is set."
            ),
            422: problem_response(f"A field is invalid (see `field`), or {KEY_REUSED}."),
        },
        response_headers=[OBJECTIVES_ETAG, COMMAND_POSITION, REPLAYED],
    )
    def set_objectives(
        self,
        period: PeriodPath,
        data: JSONBody[SetObjectives],
        ledger: NamedDependency[AccountLedger],
        command_headers: NamedDependency[CommandHeaders],
    ) -> Response[ObjectivesView]:
        period = _calendar_period(period)
        if not data.targets and not data.remove:
            raise invalid_field("targets", "Give targets to set, metrics to remove, or both.")
        metrics = [t.metric for t in data.targets]
        for field, named in (("targets", metrics), ("remove", data.remove)):
            if twice := sorted({m for m in named if named.count(m) > 1}):
                raise invalid_field(field, f"{', '.join(twice)} given more than once.")
        if both := sorted(set(metrics) & set(data.remove)):
            raise invalid_field("remove", f"{', '.join(both)} both set and removed.")
        targets = [DomainTarget(t.metric, t.acceptable, t.optimal, t.best) for t in data.targets]
        meta = command_headers.meta(data)
        outcome = ledger.set_objectives(period, targets, meta, data.remove)
        headers = {"ETag": etag(outcome.value.version), "CRM-Position": str(outcome.position)}
        if outcome.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(objectives_view(outcome.value), headers=headers)

    @get(
        "/",
        summary="Every period's targets, in the order of the periods",
        description="The periods that have objectives, each with its targets as they stand and "
        "its `version` (as `GET /objectives/{period}` gives it, for `If-Match`), from the "
        "`objectives` read model (as the account list, it may be a moment behind: "
        "`min_position` waits for a position). A year comes before its months, a month before "
        "its days. With `as_of` (the auditor's), the periods that had objectives at that "
        "instant, each with its targets and version as they stood then; its cursor pages "
        "through the same instant.",
        responses=PAGE_PROBLEMS,
        response_headers=[READ_POSITION, STALE],
        opt={PAST_READS: True},
    )
    async def list_objectives(
        self,
        reads: NamedDependency[Reads],
        size: Annotated[
            Literal["year", "month", "day"] | None,
            QueryParameter(description="Only the periods of this size."),
        ] = None,
        within: Annotated[
            str | None,
            QueryParameter(
                pattern=PERIOD_PATTERN,
                description="Only this period and those inside it (2026: the year, its months "
                "and its days).",
            ),
        ] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
        as_of: AsOf = None,
        min_position: MinPosition = None,
    ) -> Response[ObjectivesPage]:
        if within is not None:
            _calendar_period(within, "within", "query")
        filters = listed_objectives.PeriodFilters(size=size, within=within)
        return await reads.listed(
            listed_objectives.NAME,
            listed_objectives.objectives_page,
            filters,
            limit,
            cursor,
            min_position,
            ObjectivesPage,
            lambda row: _view(**row),
            instant(as_of, "as_of"),
        )

    @get(
        "/{period:str}",
        opt={PAST_READS: True},
        sync_to_thread=True,
        summary="The targets of a period now, or as they were at a version or an instant",
        responses={
            400: problem_response(f"{_BAD_PERIOD}, or both version and as_of, or: {BAD_IF_MATCH}"),
            404: problem_response(
                "No objectives for the period, or not that version (`field` version), or none "
                "set yet at as_of (`field` as_of)."
            ),
            409: unreadable_response("the objectives"),
            304: NOT_MODIFIED,
            412: problem_response(STALE_VERSION),
        },
        response_headers=[OBJECTIVES_ETAG],
    )
    def read_objectives(
        self,
        request: Request[Any, Any, Any],
        period: PeriodPath,
        ledger: NamedDependency[AccountLedger],
        version: Annotated[
            int | None, QueryParameter(ge=1, le=STORED_INT_MAX, description="A past version.")
        ] = None,
        as_of: AsOf = None,
    ) -> Response[ObjectivesView]:
        period = _calendar_period(period)
        if version is not None and as_of is not None:
            raise invalid_field("as_of", "Give either version or as_of, not both.", 400)
        at = instant(as_of, "as_of")
        if at is not None:
            objectives = ledger.objectives_as_of(period, at)
        else:
            objectives = ledger.objectives(period, version)
        if objectives is None:
            raise _not_found(ledger, period, version, at)
        return versioned_answer(
            request,
            objectives_view(objectives),
            objectives.version,
            f"The objectives of {period} are",
        )


def _not_found(
    ledger: AccountLedger, period: str, version: int | None, at: datetime | None
) -> Exception:
    """Why a period's objectives are not there: none at all, or none at that version or yet."""
    latest = ledger.objectives(period) if version is not None or at is not None else None
    if latest is None:
        return problem(404, "Not found", f"No objectives are set for {period}.", kind="not-found")
    if at is not None:
        first = written(latest.created_on)
        detail = f"The objectives for {period} were first set at {first}, after as_of."
        return problem(404, "Not set yet", detail, kind="not-found", field="as_of")
    detail = f"The objectives for {period} have no version {version}: they are at {latest.version}."
    return problem(404, "Version not found", detail, kind="not-found", field="version")
