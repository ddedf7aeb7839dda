"""Every error becomes an RFC 9457 problem; this is the one place that maps errors to statuses."""

from __future__ import annotations

import logging
import re
import sqlite3
from http import HTTPStatus
from typing import Any

import sqlalchemy.exc
from eventsourcing.persistence import OperationalError
from litestar import Request, Response
from litestar.exceptions import HTTPException, InternalServerException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import ParameterKwarg
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from contracts.accounts import COUNTRY_CODES, CURRENCY_CODES, TEXT_RULES, Problem
from contracts.read_models import PERIOD_PATTERN
from domain.errors import (
    ChainBroken,
    CheckpointAltered,
    Contention,
    DomainAlreadyRegistered,
    EventUnreadable,
    IdempotencyKeyReused,
    InvalidValue,
    LedgerError,
    NotFound,
    RuleViolation,
    VersionMismatch,
)
from projections.database import ReadModelsUnavailable
from services.api import metrics

log = logging.getLogger("crm.api")

RETRY_AFTER_SECONDS = "1"
KEY_REUSED = "the Idempotency-Key was used for another request (rule `idempotency_key_reused`)"


def unreadable(record: str) -> str:
    """What a route that builds `record` from its events says of the 409 it answers when one
    of them was changed behind the ledger's back."""
    return (
        f"an event of {record} can no longer be read (type `event-unreadable`, naming its "
        "`version`; see docs/AUDIT.md)"
    )


def unreadable_response(record: str) -> ResponseSpec:
    text = unreadable(record)
    return problem_response(f"{text[0].upper()}{text[1:]}.")


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    kind: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=status,
        title=title,
        detail=detail,
        type_=f"urn:crm:problem:{kind}",
        headers=headers,
        extra={k: v for k, v in extra.items() if v is not None} or None,
    )


def retry_shortly(
    detail: str, *, kind: str = "busy", title: str = "Busy"
) -> ProblemDetailsException:
    """A 503 the client may retry after a second: the process or the store is busy or away."""
    return problem(503, title, detail, kind=kind, headers={"Retry-After": RETRY_AFTER_SECONDS})


def problem_response(description: str) -> ResponseSpec:
    """A problem answer as a route lists it in `responses=`. Without generated examples: Litestar
    would fill the shared Problem schema with random ones (a status of 9361)."""
    return ResponseSpec(Problem, description=description, generate_examples=False)


def invalid_field(
    field: str, detail: str, status: int = 422, *, source: str | None = None, **extra: Any
) -> ProblemDetailsException:
    """A refused field of the body (422), or parameter or header (400, of the query string
    unless `source` says otherwise), named in `field` and listed in `errors`, so that a form
    that shows `errors` shows every refusal, whichever check made it."""
    if extra.get("errors") is None:
        where = source or ("body" if status == 422 else "query")
        extra["errors"] = [{"field": field, "source": where, "message": detail}]
    return problem(status, "Invalid request", detail, kind="invalid-field", field=field, **extra)


def _from_ledger_error(exc: LedgerError) -> ProblemDetailsException:
    answer = _problem_for(exc)
    rule = answer.extra.get("rule") if isinstance(answer.extra, dict) else None
    if rule is not None or isinstance(exc, VersionMismatch):
        metrics.REFUSED.labels(rule or "if_match").inc()
    return answer


def _problem_for(exc: LedgerError) -> ProblemDetailsException:
    if isinstance(exc, RuleViolation):
        return problem(409, "Refused by a rule", exc.detail, kind="rule-violation", rule=exc.rule)
    if isinstance(exc, NotFound):
        return problem(404, exc.title, exc.detail, kind="not-found")
    if isinstance(exc, DomainAlreadyRegistered):
        return problem(
            409,
            "Domain already registered",
            exc.detail,
            kind="duplicate-domain",
            rule="domain_unique",
            account_id=str(exc.account_id),
        )
    if isinstance(exc, VersionMismatch):
        return problem(
            412,
            "Precondition failed",
            exc.detail,
            kind="stale-version",
            current_version=exc.actual,
            headers={"ETag": etag(exc.actual)},
        )
    if isinstance(exc, IdempotencyKeyReused):
        return problem(
            422,
            "Idempotency-Key reused",
            exc.detail,
            kind="idempotency-key-reused",
            rule="idempotency_key_reused",
        )
    if isinstance(exc, InvalidValue):
        return invalid_field(exc.field, exc.detail)
    if isinstance(exc, ChainBroken):
        return problem(
            409,
            "Hash chain broken",
            exc.detail,
            kind="chain-broken",
            rule="chain_intact",
            account_id=str(exc.originator_id),
            first_bad_version=exc.version,
        )
    if isinstance(exc, CheckpointAltered):
        return problem(
            409,
            "Checkpoint altered",
            exc.detail,
            kind="checkpoint-altered",
            rule="checkpoint_intact",
            problems=exc.problems,
        )
    if isinstance(exc, EventUnreadable):
        # Nothing built from the account can be answered until the stored record is repaired;
        # retrying does not help, and the request was fine: a conflict with the stored state.
        return problem(
            409,
            "Stored event unreadable",
            exc.detail,
            kind="event-unreadable",
            account_id=str(exc.originator_id),
            version=exc.version,
        )
    if isinstance(exc, Contention):
        return retry_shortly(exc.detail, kind="contention")
    return problem(400, "Refused", exc.detail, kind="refused")


_LOCATION = re.compile(r"at `\$((?:\.[A-Za-z_][\w]*|\[\d+\])+)`")


def _from_http_exception(exc: HTTPException) -> ProblemDetailsException:
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        # Litestar lists the path, query and header parameters that failed to parse.
        errors = [_parameter_error(e) for e in exc.extra if isinstance(e, dict)]
        fields = ", ".join(str(e["field"]) for e in errors if e["field"])
        return problem(
            400,
            "Invalid request",
            f"Invalid parameter: {fields}." if fields else str(exc.detail),
            kind="invalid-field",
            field=errors[0]["field"] if len(errors) == 1 else None,
            errors=errors,
        )
    if exc.status_code == 400 and (missing := _MISSING_PARAMETER.match(str(exc.detail))):
        source, name = missing.groups()
        return invalid_field(name, f"The {name} parameter is required here.", 400, source=source)
    headers = dict(exc.headers or {})
    if exc.status_code == 429 and "RateLimit-Reset" in headers:
        headers["Retry-After"] = str(max(int(headers["RateLimit-Reset"]), 1))
    return problem(
        exc.status_code,
        _title(exc.status_code),
        str(exc.detail),
        kind=_title(exc.status_code).lower().replace(" ", "-"),
        headers=headers or None,
    )


# How Litestar says a required parameter was not sent (it raises a plain 400 for it).
_MISSING_PARAMETER = re.compile(r"Missing required (query|header|cookie) parameter '([^']+)'")


def _invalid_parameters(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Litestar names a parameter that failed to parse by the handler's argument (`from_`,
    `start`); the problem names it as the client sent it (`from`)."""
    if isinstance(exc.extra, list):
        sent = _sent_names(request.route_handler)
        for error in exc.extra:
            if isinstance(error, dict) and error.get("key") in sent:
                error["key"] = sent[error["key"]]
    return _from_http_exception(exc).to_response(request)


def _sent_names(handler: Any) -> dict[str, str]:
    """The handler's arguments that a request names otherwise, with the name it sends."""
    names = {}
    for argument, parameter in handler.parsed_fn_signature.parameters.items():
        kwarg = parameter.kwarg_definition
        if isinstance(kwarg, ParameterKwarg):
            sent = kwarg.name or kwarg.query or kwarg.header or kwarg.cookie
            if sent and sent != argument:
                names[argument] = sent
    return names


def _parameter_error(error: dict[str, Any]) -> dict[str, Any]:
    if error.get("source") == "body":  # no body at all; Litestar names the handler's argument
        return {"field": "body", "source": "body", "message": "The request needs a JSON body."}
    return {
        "field": error.get("key"),
        "source": error.get("source"),
        "message": readable(str(error.get("message"))),
    }


def _from_operational_error(exc: Exception) -> ProblemDetailsException:
    """The event store or the read models' database does not answer."""
    log.warning("store unavailable: %s", type(exc).__name__)
    return retry_shortly(
        "The database does not answer; retry shortly.",
        kind="store-unavailable",
        title="Store unavailable",
    )


# What Litestar raises, as a 500, when a client goes away before it has sent its whole body.
_CLIENT_GONE = "client disconnected prematurely"


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, InternalServerException) and exc.detail == _CLIENT_GONE:
        # Not the server's failure, and nobody reads the answer: a line, not a traceback at
        # ERROR that would page an operator for every dropped connection.
        log.info(
            "client went away before its body arrived: %s %s", request.method, request.url.path
        )
        return problem(
            400, "Incomplete body", "The client went away.", kind="incomplete"
        ).to_response(request)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(
        500, "Internal error", "The server failed to handle the request.", kind="internal"
    ).to_response(request)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# Each pattern a text may be refused by, in words.
_RULES = {**TEXT_RULES, PERIOD_PATTERN: "a year (2026), a month (2026-03) or a day (2026-03-15)"}
_CODES = {*COUNTRY_CODES, *CURRENCY_CODES}


def readable(message: str) -> str:
    """msgspec's validation message, with a text rule's pattern put in words, and a country or
    currency code given in small letters told to be written in capitals."""
    for pattern, rule in _RULES.items():
        message = message.replace(f"`str` matching regex {pattern!r}", rule)
    given = re.match(r"Invalid enum value '([a-z]{2,3})'", message)
    if given and (code := given.group(1).upper()) in _CODES:
        said = f"{given.group(0)}: codes are written in capitals, {code!r}"
        message = message.replace(given.group(0), said)
    return message


def field_from_msgspec(message: str) -> str | None:
    """The JSON path msgspec names in a validation message, as a dotted field name."""
    if match := re.search(r"(?:unknown|missing required|\bin) field `([^`]+)`", message):
        prefix = _LOCATION.search(message)
        parent = prefix.group(1).lstrip(".") + "." if prefix else ""
        return parent + match.group(1)
    if match := _LOCATION.search(message):
        return match.group(1).lstrip(".")
    return None


def etag(version: int) -> str:
    return f'"{version}"'


PROBLEM_DETAILS = ProblemDetailsConfig(
    enable_for_all_http_exceptions=True,
    exception_to_problem_detail_map={
        LedgerError: _from_ledger_error,
        HTTPException: _from_http_exception,
        OperationalError: _from_operational_error,
        sqlalchemy.exc.OperationalError: _from_operational_error,
        sqlite3.OperationalError: _from_operational_error,  # e.g. the file cannot be opened
        ReadModelsUnavailable: _from_operational_error,
    },
)
EXCEPTION_HANDLERS = {
    HTTP_500_INTERNAL_SERVER_ERROR: _internal_error,
    ValidationException: _invalid_parameters,
}
