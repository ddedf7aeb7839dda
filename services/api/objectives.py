"""Objectives per period (the Control step of SOSTAC), and how the stage report meets them."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter

from contracts.read_models import (
    PERIOD_PATTERN,
    ObjectiveResult,
    ObjectivesView,
    SetObjectives,
    Target,
)
from domain import objectives as domain_objectives
from domain.ledger import AccountLedger
from domain.objectives import Objectives
from domain.objectives import Target as DomainTarget
from services.api.auth import Permission
from services.api.command_meta import IDEMPOTENT, VERSIONED, CommandHeaders
from services.api.documentation import COMMAND_POSITION, OBJECTIVES_ETAG, REPLAYED
from services.api.problems import KEY_REUSED, etag, invalid_field, problem, problem_response
from services.api.strict_json import StrictJSON

# Which stage's entries each metric counts.
METRIC_STATES = {
    "entered_identified": "identified",
    "entered_prioritized": "prioritized",
    "entered_outreach": "outreach",
    "entered_warm_up": "warm_up",
    "accounts_won": "won",
    "accounts_lost": "lost",
}
assert set(METRIC_STATES) == set(domain_objectives.METRICS)

PeriodPath = Annotated[
    str,
    PathParameter(
        pattern=PERIOD_PATTERN,
        description="A year (2026), a month (2026-03) or a day (2026-03-15).",
    ),
]
_BAD_PERIOD = "Malformed or impossible period (2026-02-30)"


def _calendar_period(period: str) -> str:
    """The path's period, refused as a bad parameter when no calendar has it (2026-02-30)."""
    if not domain_objectives.is_period(period):
        message = f"{period!r} is not a year, month or day of the calendar."
        raise problem(
            400,
            "Invalid request",
            f"Invalid parameter: period {message}",
            kind="invalid-field",
            field="period",
            errors=[{"field": "period", "source": "path", "message": message}],
        )
    return period


def objectives_view(objectives: Objectives) -> ObjectivesView:
    return ObjectivesView(
        period=objectives.period,
        version=objectives.version,
        targets=[
            Target(t.metric, t.acceptable, t.optimal, t.best)  # type: ignore[arg-type]
            for t in sorted(objectives.targets.values(), key=lambda t: t.metric)
        ],
    )


def objective_results(
    targets: dict[str, dict[str, DomainTarget]], actuals: dict[str, dict[str, int]]
) -> list[ObjectiveResult]:
    """Each target of each period (by metric) against the accounts that entered its stage in
    the period."""
    results = []
    for period, by_metric in targets.items():
        for target in sorted(by_metric.values(), key=lambda t: t.metric):
            actual = actuals.get(period, {}).get(METRIC_STATES[target.metric], 0)
            results.append(
                ObjectiveResult(
                    period=period,
                    metric=target.metric,
                    actual=actual,  # type: ignore[arg-type]
                    acceptable=target.acceptable,
                    optimal=target.optimal,
                    best=target.best,
                    level=target.level(actual),  # type: ignore[arg-type]
                )
            )
    return results


class ObjectivesController(Controller):
    path = "/objectives"
    tags = ["objectives"]

    @put(
        "/{period:str}",
        opt={"permission": Permission.WRITE, IDEMPOTENT: True, VERSIONED: True},
        dto=StrictJSON[SetObjectives],
        return_dto=None,
        sync_to_thread=True,
        summary="Set targets for a period at three levels",
        responses={
            400: problem_response(f"{_BAD_PERIOD}, JSON or header."),
            409: problem_response("The levels do not rise (rule `objective_levels_order`)."),
            412: problem_response(
                "If-Match names a version that is not current (none is, before any target)."
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
        metrics = [t.metric for t in data.targets]
        if twice := sorted({m for m in metrics if metrics.count(m) > 1}):
            raise invalid_field("targets", f"{', '.join(twice)} given more than once.")
        targets = [DomainTarget(t.metric, t.acceptable, t.optimal, t.best) for t in data.targets]
        meta = command_headers.meta(data)
        outcome = ledger.set_objectives(period, targets, meta)
        headers = {"ETag": etag(outcome.value.version), "CRM-Position": str(outcome.position)}
        if outcome.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(objectives_view(outcome.value), headers=headers)

    @get(
        "/{period:str}",
        sync_to_thread=True,
        summary="The targets of a period",
        responses={
            400: problem_response(f"{_BAD_PERIOD}."),
            404: problem_response("No objectives for the period."),
        },
        response_headers=[OBJECTIVES_ETAG],
    )
    def read_objectives(
        self, period: PeriodPath, ledger: NamedDependency[AccountLedger]
    ) -> Response[ObjectivesView]:
        objectives = ledger.objectives(_calendar_period(period))
        if objectives is None:
            raise problem(
                404, "Not found", f"No objectives are set for {period}.", kind="not-found"
            )
        return Response(objectives_view(objectives), headers={"ETag": etag(objectives.version)})
