"""Request bodies decoded strictly, against the contract's Struct.

Litestar converts `data` in lax mode (a string "5" passes as 5), so command handlers take their
body through this DTO instead, which decodes the raw bytes with msgspec's strict decoder and
still lets Litestar document the body in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.dto import MsgspecDTO

from services.api.problems import field_from_msgspec, invalid_field, problem


class StrictJSON(MsgspecDTO):  # type: ignore[type-arg]
    def decode_bytes(self, value: bytes) -> Any:
        content_type = self.asgi_connection.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() not in ("application/json", ""):
            raise problem(
                415,
                "Unsupported media type",
                "Send the body as application/json.",
                kind="unsupported-media-type",
            )
        try:
            return msgspec.json.decode(value, type=self.model_type)
        except msgspec.ValidationError as exc:
            field = field_from_msgspec(str(exc))
            raise invalid_field(field or "body", str(exc)) from None
        except msgspec.DecodeError as exc:
            raise problem(
                400, "Malformed JSON", f"The body is not valid JSON: {exc}", kind="malformed-json"
            ) from None
