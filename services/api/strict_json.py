"""Request bodies decoded strictly, against the contract's Struct.

Litestar converts `data` in lax mode (a string "5" passes as 5), so command handlers take their
body through this DTO instead, which decodes the raw bytes with msgspec's strict decoder and
still lets Litestar document the body in the OpenAPI schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar.dto import MsgspecDTO
from litestar.typing import FieldDefinition

from services.api.problems import field_from_msgspec, invalid_field, problem, readable

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Reference, Schema


class StrictJSON(MsgspecDTO):  # type: ignore[type-arg]
    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        # Document the contract's own Struct under its own name, not a generated transfer model.
        return schema_creator.for_field_definition(FieldDefinition.from_annotation(cls.model_type))

    def decode_bytes(self, value: bytes) -> Any:
        content_type = next(
            (v for k, v in self.asgi_connection.scope["headers"] if k == b"content-type"), b""
        )
        if content_type.split(b";")[0].strip().lower() not in (b"application/json", b""):
            raise problem(
                415,
                "Unsupported media type",
                "Send the body as application/json.",
                kind="unsupported-media-type",
            )
        try:
            return msgspec.json.decode(value, type=self.model_type)
        except msgspec.ValidationError as exc:
            # msgspec stops at the first invalid value, before it has read the rest: a body that
            # is not JSON at all is malformed (400), whatever value came first.
            _check_json(value)
            field = field_from_msgspec(str(exc))
            raise invalid_field(field or "body", readable(str(exc))) from None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise _malformed(exc) from None  # JSON text is UTF-8, and no command nests deep


def _check_json(value: bytes) -> None:
    try:
        msgspec.json.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise _malformed(exc) from None


def _malformed(exc: Exception) -> Exception:
    detail = (
        "The body nests arrays or objects too deeply."
        if isinstance(exc, RecursionError)
        else f"The body is not valid JSON: {exc}"
    )
    return problem(400, "Malformed JSON", detail, kind="malformed-json")
