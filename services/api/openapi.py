"""The OpenAPI document promises what the service does: every error is a problem document
(`application/problem+json`), every operation lists the errors it can give, and an operation
with a `format` parameter documents the media type of each format it offers.

Litestar documents what each route declares (`responses=` on the route decorators); what
follows from the service's own machinery is added here: the command headers, and the problems
that come from reading parameters and bodies, from API keys, and from the store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)

from services.api.auth import PUBLIC_PATHS
from services.api.command_meta import (
    ACTOR_MAX_LENGTH,
    COMMAND_HEADER_FORMS,
    COMMAND_HEADERS,
    GUARDS,
    guards,
)
from services.api.documentation import JOB_LOCATION, NO_STORE_PROBLEM, RAW_BODY
from services.api.read_models import MEDIA_TYPES

PROBLEM_SCHEMA = Reference(ref="#/components/schemas/Problem")
# One answer the service gives, shown as the Problem schema's example.
PROBLEM_EXAMPLE = {
    "status": 409,
    "type": "urn:crm:problem:rule-violation",
    "title": "Refused by a rule",
    "detail": "won is reached by recording the fact (screening or deal), not by a move.",
    "rule": "stage_set_by_fact",
}

# Problems that follow from how an operation is reached, not from what it does.
WITH_INPUT = {  # every route refuses a query parameter it does not take (api/parameters.py)
    "400": "A parameter, header or body that cannot be read, or a query parameter the "
    "operation does not take (see `field`)."
}
WITH_KEYS = {  # with API keys configured; the public paths take none
    "401": "No API key, or one the service does not know.",
    "403": "The key's role does not allow this (without keys: a page of another origin sent "
    "this write).",
    "429": "Over the key's rate limit; retry after Retry-After.",
}
WITH_BODY = {
    "413": "The body is too large.",
    "415": "The body is not JSON, or is sent compressed (Content-Encoding).",
    "422": "A field is invalid (see `field`) or a rule refused it (see `rule`).",
}
WITH_STORE = {"503": "The store is unavailable; retry after Retry-After."}
WITHOUT_KEYS = {  # development mode (services/api/auth.py, LoopbackOnly)
    "421": "Without API keys: the request names a host other than localhost, 127.0.0.1 or [::1]."
}
_PUBLIC = [re.compile(pattern) for pattern in PUBLIC_PATHS]

# Headers of every answer (telemetry.on_response_start), and, with API keys and a rate limit
# configured, of every answer past authentication off the public paths (Litestar's middleware).
EVERY_ANSWER = {
    "X-Request-ID": "The request's id, which the events it stores record: the X-Request-ID "
    "sent, when it is 1 to 128 of A-Z a-z 0-9 . _ : -, else a new one.",
}
RATE_LIMITED = {
    "RateLimit-Policy": "With a rate limit: the key's limit and its window, e.g. 6000; w=60.",
    "RateLimit-Limit": "With a rate limit: the requests the key may make in the window.",
    "RateLimit-Remaining": "With a rate limit: the requests left in the window.",
    "RateLimit-Reset": "With a rate limit: the seconds until the window starts again.",
}
# Headers of problem answers, by status (services/api/problems.py, auth.py).
PROBLEM_HEADERS = {
    "401": {"WWW-Authenticate": "Bearer: send the key as Authorization: Bearer <key>."},
    "412": {"ETag": 'The account\'s current version, e.g. "3".'},
    "429": {"Retry-After": "The seconds until the key's window starts again."},
    "503": {"Retry-After": "The seconds to wait before trying again."},
}


def complete(app: Litestar) -> None:
    """Adds to the app's OpenAPI document what Litestar cannot know from the routes."""
    document_command_headers(app)
    document_problems(app)
    document_keys(app)
    document_headers(app)
    document_downloads(app.openapi_schema)
    document_limits(app)
    document_raw_bodies(app)


def operations(app: Litestar) -> Iterator[tuple[str, HTTPRouteHandler, Operation]]:
    """Each documented operation with its path and the handler that answers it."""
    paths = app.openapi_schema.paths or {}
    for route in app.routes:
        path = route.path_format or "/"
        for handler in getattr(route, "route_handlers", ()):
            for method in handler.http_methods:
                operation = getattr(paths.get(path), method.lower(), None)
                if isinstance(operation, Operation):
                    yield path, handler, operation


def document_command_headers(app: Litestar) -> None:
    """Lists the command headers among the parameters of every operation that reads them."""
    for _, handler, operation in operations(app):
        if not {"command", "command_headers"} & set(handler.parsed_fn_signature.parameters):
            continue
        left_out = GUARDS - guards(handler)
        operation.parameters = [
            *(
                Parameter(
                    name=name,
                    param_in="header",
                    schema=Schema(
                        type=OpenAPIType.STRING,
                        pattern=_pattern(name),
                        max_length=ACTOR_MAX_LENGTH if name == "X-Actor" else None,
                    ),
                    description=description,
                    required=False,
                )
                for name, description in COMMAND_HEADERS.items()
                if name not in left_out
            ),
            *(operation.parameters or ()),
        ]


def _pattern(header: str) -> str | None:
    form = COMMAND_HEADER_FORMS.get(header)
    return form.pattern if form is not None else None


def document_problems(app: Litestar) -> None:
    """Each operation lists the problems its route declares and those that follow from its
    input, from API keys and from the store, each as a problem document."""
    schemas = app.openapi_schema.components.schemas
    if isinstance(problem := schemas.get("Problem"), Schema):
        problem.examples = [PROBLEM_EXAMPLE]
    for path, handler, operation in operations(app):
        responses = operation.responses = operation.responses or {}
        if 400 not in (handler.responses or {}):
            responses.pop("400", None)  # Litestar's own, for any handler with parameters
        expected: dict[str, str] = {**WITH_INPUT}
        if not _public(path):
            expected.update(WITH_KEYS)
        if operation.request_body is not None:
            expected.update(WITH_BODY)
        if not handler.opt.get(NO_STORE_PROBLEM):
            expected.update(WITH_STORE)
        expected.update(WITHOUT_KEYS)
        for status, description in expected.items():
            responses.setdefault(status, OpenAPIResponse(description=description))
        for status, response in responses.items():
            if int(status) >= 400 and isinstance(response, OpenAPIResponse) and _problem(response):
                response.content = {
                    "application/problem+json": OpenAPIMediaType(schema=PROBLEM_SCHEMA)
                }


API_KEY = "apiKey"


def document_keys(app: Litestar) -> None:
    """How an operation off the public paths presents a key, so that a client generator or
    the Swagger page (its Authorize button) can send one. Without keys configured (development
    mode) the service asks for none, as the 401 of each operation says."""
    components = app.openapi_schema.components
    components.security_schemes = {
        API_KEY: SecurityScheme(
            type="http",
            scheme="bearer",
            description="A key of CRM_API_KEYS or CRM_API_KEYS_FILE, whose role decides what it"
            " may do; none is needed when no key is configured.",
        )
    }
    for path, _, operation in operations(app):
        if not _public(path):
            operation.security = [{API_KEY: []}]


def document_headers(app: Litestar) -> None:
    """The headers each answer carries beyond those its route lists (`response_headers=`):
    those of every answer, of rate-limited answers, of problems, and of an accepted job."""
    shared = {**EVERY_ANSWER, **RATE_LIMITED}
    app.openapi_schema.components.headers = {
        name: _header(description, required=name in EVERY_ANSWER)
        for name, description in shared.items()
    }
    for path, _, operation in operations(app):
        limited = not _public(path)
        for status, response in (operation.responses or {}).items():
            if not isinstance(response, OpenAPIResponse):
                continue
            headers = response.headers = response.headers or {}
            for name, description in PROBLEM_HEADERS.get(status, {}).items():
                headers.setdefault(name, _header(description, required=True))
            if status == "202":  # services.api.jobs.accepted
                headers.setdefault(JOB_LOCATION.name, _header(JOB_LOCATION.description, True))
            # 401 and 403 are answered before the rate limit counts the request.
            sent = [
                *EVERY_ANSWER,
                *(RATE_LIMITED if limited and status not in ("401", "403") else ()),
            ]
            for name in sent:
                headers[name] = Reference(ref=f"#/components/headers/{name}")


def _header(description: str | None, required: bool = False) -> OpenAPIHeader:
    return OpenAPIHeader(
        schema=Schema(type=OpenAPIType.STRING), description=description, required=required
    )


def _public(path: str) -> bool:
    return any(public.match(path) for public in _PUBLIC)


def _problem(response: OpenAPIResponse) -> bool:
    """An error answer documented without a body, with the Problem schema (a route's
    `responses=` documents it as application/json) or Litestar's own; not one that names
    another schema (/ready's 503 answers with its checks)."""
    return not any(
        isinstance(media.schema, Reference) and media.schema != PROBLEM_SCHEMA
        for media in (response.content or {}).values()
    )


def document_downloads(document: OpenAPI) -> None:
    """Litestar documents one media type per route; a download route answers in each of the
    formats its `format` parameter names."""
    for item in (document.paths or {}).values():
        operation = item.get
        answer = (operation.responses or {}).get("200") if operation else None
        if operation is None or not isinstance(answer, OpenAPIResponse):
            continue
        for parameter in operation.parameters or []:
            if getattr(parameter, "name", None) != "format":
                continue
            offered = parameter.schema.enum if isinstance(parameter.schema, Schema) else None
            content = answer.content = answer.content or {}
            json = content.get("application/json")
            if json is not None and isinstance(json.schema, Schema) and json.schema.one_of:
                # `Page | Stream`: the file is documented below, not as an empty JSON schema.
                kept = [s for s in json.schema.one_of if not _empty(s)]
                json.schema = kept[0] if len(kept) == 1 else Schema(one_of=kept)
            for fmt in offered or []:
                if fmt in MEDIA_TYPES:
                    text = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
                    content.setdefault(MEDIA_TYPES[fmt].split(";")[0], text)


def document_raw_bodies(app: Litestar) -> None:
    """The bodies that handlers read themselves (a CSV upload), which Litestar cannot see."""
    for _path, handler, operation in operations(app):
        if (raw := handler.opt.get(RAW_BODY)) is not None:
            media_type, description = raw
            operation.request_body = RequestBody(
                content={media_type: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))},
                description=description,
                required=True,
            )


def _empty(schema: Schema | Reference) -> bool:
    return isinstance(schema, Schema) and schema.to_schema() == {}


# The keywords of a limit, as JSON Schema names them and as Litestar's Schema does.
LIMITS = {
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
    "multipleOf": "multiple_of",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "minItems": "min_items",
    "maxItems": "max_items",
}
# The same limits as Litestar's parameter declarations (QueryParameter(ge=0)) name them.
PARAMETER_LIMITS = {
    "ge": "minimum",
    "le": "maximum",
    "gt": "exclusive_minimum",
    "lt": "exclusive_maximum",
    "multiple_of": "multiple_of",
    "min_length": "min_length",
    "max_length": "max_length",
    "min_items": "min_items",
    "max_items": "max_items",
}


def document_limits(app: Litestar) -> None:
    """The limits the service enforces, where Litestar leaves them out: it drops a limit of 0
    (`ge=0`, a falsy check) and those of list items, and does not say that a body may hold no
    field it does not know. Parameters get them from their declarations, request bodies from
    the msgspec schema of their contracts (the limits their decoder enforces)."""
    bodies = set()
    for _, handler, operation in operations(app):
        signature = handler.parsed_fn_signature.parameters
        if (data := signature.get("data")) is not None:
            bodies.add(data.annotation)
        declared = {_parameter_name(name, field): field for name, field in signature.items()}
        for parameter in operation.parameters or ():
            field = declared.get(getattr(parameter, "name", None))
            schema = getattr(parameter, "schema", None)
            if field is not None and field.kwarg_definition and isinstance(schema, Schema):
                for limit, attribute in PARAMETER_LIMITS.items():
                    value = getattr(field.kwarg_definition, limit, None)
                    if value is not None and getattr(schema, attribute) is None:
                        setattr(schema, attribute, value)
    _, enforced = msgspec.json.schema_components(sorted(bodies, key=str))
    schemas = app.openapi_schema.components.schemas
    for name, contract in enforced.items():
        documented = schemas.get(name)
        properties = documented.properties if isinstance(documented, Schema) else None
        if isinstance(documented, Schema) and contract.get("additionalProperties") is False:
            documented.additional_properties = False  # a field it does not know is a 422
        for field, limits in contract.get("properties", {}).items():
            if isinstance(schema := (properties or {}).get(field), Schema):
                _add_limits(schema, limits)


def _parameter_name(name: str, field: Any) -> str:
    declared = field.kwarg_definition
    return getattr(declared, "name", None) or getattr(declared, "header", None) or name


def _add_limits(schema: Schema, limits: dict[str, Any]) -> None:
    """Copies the limits msgspec states for a value onto Litestar's schema of it, where they
    are missing; an optional value's go beside its `oneOf`, as Litestar puts the others."""
    values = [v for v in limits.get("anyOf", [limits]) if v.get("type") != "null"]
    if len(values) != 1:
        return
    (value,) = values
    for keyword, attribute in LIMITS.items():
        if keyword in value and getattr(schema, attribute) is None:
            setattr(schema, attribute, value[keyword])
    items = value.get("items")
    if isinstance(items, dict):
        arrays = [schema, *(schema.one_of or ())]
        for array in arrays:
            if isinstance(array, Schema) and isinstance(array.items, Schema):
                _add_limits(array.items, items)
