"""The OpenAPI document promises what the service does: every error is a problem document
(`application/problem+json`), every operation lists the errors any request may meet, and an
operation with a `format` parameter documents the media type of each format it offers."""

from __future__ import annotations

from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)

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

# Answers any operation may give, whatever it is asked.
EVERY_OPERATION = {
    "400": "A parameter, header or body that cannot be read (see `field`).",
    "401": "No API key, or one the service does not know.",
    "403": "The key's role does not allow this.",
    "429": "Over the key's rate limit; retry after Retry-After.",
    "503": "The store is unavailable; retry after Retry-After.",
}
WITH_BODY = {
    "413": "The body is too large.",
    "415": "The body is not JSON.",
    "422": "A field is invalid (see `field`) or a rule refused it (see `rule`).",
}
WITH_PATH_PARAMETERS = {"404": "Not found."}


def document_problems(document: OpenAPI) -> None:
    schemas = document.components.schemas if document.components else None
    if schemas and isinstance(problem := schemas.get("Problem"), Schema):
        problem.examples = [PROBLEM_EXAMPLE]
    for path, item in (document.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            responses = operation.responses = operation.responses or {}
            expected = dict(EVERY_OPERATION)
            if operation.request_body is not None:
                expected.update(WITH_BODY)
            if "{" in path:
                expected.update(WITH_PATH_PARAMETERS)
            for status, description in expected.items():
                responses.setdefault(status, OpenAPIResponse(description=description))
            for status, response in responses.items():
                if int(status) >= 400 and isinstance(response, OpenAPIResponse):
                    response.content = {
                        "application/problem+json": OpenAPIMediaType(schema=PROBLEM_SCHEMA)
                    }


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


def _empty(schema: Schema | Reference) -> bool:
    return isinstance(schema, Schema) and schema.to_schema() == {}
