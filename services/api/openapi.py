"""The OpenAPI document promises what the service does: every error is a problem document
(`application/problem+json`), and every operation lists the errors any request may meet."""

from __future__ import annotations

from litestar.openapi.spec import OpenAPI, OpenAPIMediaType, OpenAPIResponse, Reference

PROBLEM_SCHEMA = Reference(ref="#/components/schemas/Problem")

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
