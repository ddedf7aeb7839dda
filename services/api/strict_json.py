"""Request bodies decoded strictly, against the contract's Struct.

Litestar converts `data` in lax mode (a string "5" passes as 5), so command handlers take their
body through this DTO instead, which decodes the raw bytes with msgspec's strict decoder and
still lets Litestar document the body in the OpenAPI schema. It also refuses a body that gives
a name twice in one object, which msgspec (like most decoders) reads as its last value: a proxy
or a log that reads the first would see another command than the one stored.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, get_args

import msgspec
from litestar.dto import MsgspecDTO
from litestar.typing import FieldDefinition

from contracts.accounts import Email, WebDomain, invisible
from domain.errors import InvalidValue
from domain.web_domain import normalise_domain, normalise_email
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
        media_type, *parameters = content_type.split(b";")
        if media_type.strip().lower() not in (b"application/json", b"") or not all(
            _utf8(parameter) for parameter in parameters
        ):
            raise problem(
                415,
                "Unsupported media type",
                "Send the body as application/json, in UTF-8 (the only charset JSON has).",
                kind="unsupported-media-type",
            )
        try:
            decoded = msgspec.json.decode(value, type=self.model_type)
        except msgspec.ValidationError as exc:
            # msgspec stops at the first invalid value, before it has read the rest: a body that
            # is not JSON at all is malformed (400), whatever value came first.
            _check_json(value)
            _refuse_repeated_names(value)  # the body's own fault comes first, as it is 400
            field, detail = field_from_msgspec(str(exc)) or "body", readable(str(exc))
            errors = _every_error(value, self.model_type)
            if errors is not None and not any(e["field"] == field for e in errors):
                errors.insert(0, {"field": field, "source": "body", "message": detail})
            raise invalid_field(field, detail, errors=errors) from None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            # JSON text is UTF-8, and no command nests deep
            raise _malformed(exc, value) from None
        _refuse_repeated_names(value)
        return decoded


# The domain's own checks of a value of the right type, by the contract's type for it.
_DOMAIN_CHECKS = {WebDomain: normalise_domain, Email: normalise_email}


def _domain_refusal(known: msgspec.structs.FieldInfo, given: Any) -> str | None:
    """Why the domain refuses a value of the right type (a web domain or an e-mail address
    that is none), checked here too: the handler's own check comes only once the rest of the
    body is well formed, and a form would learn of it one submission later."""
    if not isinstance(given, str):
        return None
    for kind in (known.type, *get_args(known.type)):
        if (check := _DOMAIN_CHECKS.get(kind)) is not None:
            try:
                check(given)
            except InvalidValue as exc:
                return exc.detail
    return None


def _every_error(value: bytes, model: Any) -> list[dict[str, Any]] | None:
    """Each top-level field of the body that the contract refuses, checked alone (msgspec
    stops at the first), so that a form shows every error at once: unknown and missing fields
    too. None for a body that is not a JSON object."""
    try:
        data = msgspec.json.decode(value)
    except (msgspec.DecodeError, RecursionError):
        return None
    fields = {f.encode_name: f for f in msgspec.structs.fields(model)}
    if not isinstance(data, dict) or not fields:
        return None
    errors = []
    for name, given in data.items():
        if (known := fields.get(name)) is None:
            message = f"Object contains unknown field `{name}`"
        else:
            try:
                msgspec.convert(given, known.type)
            except msgspec.ValidationError as exc:
                message = str(exc)
            else:
                refused = invisible(model, known.name, given) or _domain_refusal(known, given)
                if refused is None:
                    continue
                message = refused
        # Where msgspec found it, inside the field's value, as a path of the whole body.
        at = message.replace(" - at `$", f" - at `$.{name}") if " - at `$" in message else None
        errors.append(
            {
                "field": field_from_msgspec(at) if at else name,
                "source": "body",
                "message": readable(message.split(" - at `")[0]),
            }
        )
    errors += [
        {"field": name, "source": "body", "message": f"Object missing required field `{name}`"}
        for name, f in fields.items()
        if f.required and name not in data
    ]
    return errors


def _utf8(parameter: bytes) -> bool:
    """Whether a media type's parameter says nothing against UTF-8: a body sent with another
    charset would be read as UTF-8 all the same, and stored as another text than was meant."""
    name, _, value = parameter.partition(b"=")
    if name.strip().lower() != b"charset":
        return True
    return value.strip().strip(b'"').lower() in (b"utf-8", b"utf8")


def _refuse_repeated_names(value: bytes) -> None:
    if (name := _repeated_name(value)) is not None:
        raise problem(
            400,
            "Malformed JSON",
            f"The body gives {name!r} more than once: give each name once in an object.",
            kind="malformed-json",
            field=name,
        )


class _Repeated(Exception):
    pass


class _Object(list):  # type: ignore[type-arg]
    """An object's (name, value) pairs, in the order given."""


def _refuse_repeats(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1 and len({name for name, _ in pairs}) < len(pairs):
        raise _Repeated
    # None: the check needs no object built, only its names seen


# Every string of a JSON text without escapes, in order, with the colon that makes it a name.
# Matched from the text's start, each match begins at a string's opening quote: no other token
# holds a quote.
_STRING = re.compile(rb'"([^"]*)"(\s*:)?')


def _repeated_name(value: bytes) -> str | None:
    """The path of the first name a body gives twice in one object (`budget`, `notes.need`,
    `targets[1].metric`), if any. Only called on a body that is JSON."""
    if b"\\" not in value:  # no escapes: a name repeated is the same bytes twice
        names = [name for name, colon in _STRING.findall(value) if colon]
        if len(set(names)) == len(names):
            return None  # the usual body, told apart without the slower decoder below
    try:
        text = value.decode()
        json.loads(text, object_pairs_hook=_refuse_repeats)
        return None
    except _Repeated:
        pass
    except (ValueError, RecursionError):
        return None  # what msgspec reads and this does not is msgspec's to judge
    # Rare: read it again, keeping every pair, to name where the name repeats.
    return _first_repeat(json.loads(text, object_pairs_hook=_Object), "")


def _first_repeat(node: Any, path: str) -> str | None:
    if isinstance(node, _Object):
        seen: set[str] = set()
        for name, child in node:
            here = f"{path}.{name}" if path else name
            if name in seen:
                return here
            seen.add(name)
            if (found := _first_repeat(child, here)) is not None:
                return found
    elif isinstance(node, list):  # the objects of a list, named as msgspec names them
        for index, child in enumerate(node):
            if (found := _first_repeat(child, f"{path}[{index}]")) is not None:
                return found
    return None


def _check_json(value: bytes) -> None:
    try:
        msgspec.json.decode(value)
    except msgspec.ValidationError:
        # A number beyond what msgspec holds (1e400, 5,000 digits) stops it, though the text
        # is JSON: the standard library's reader reads on, to what follows it, its numbers
        # left as text (it would refuse to convert an integer of over 4,300 digits).
        try:
            json.loads(value, parse_int=str, parse_float=str, parse_constant=_not_json)
        except (ValueError, RecursionError) as exc:
            raise _malformed(exc, value) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise _malformed(exc, value) from None


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON value")


def _malformed(exc: Exception, value: bytes) -> Exception:
    if isinstance(exc, RecursionError):
        detail = "The body nests arrays or objects too deeply."
    elif isinstance(exc, UnicodeDecodeError):
        # msgspec counts the bad byte from the start of its string; the body's own offset
        # is the one a client can find it at.
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as whole:
            exc = whole
        detail = f"The body is not UTF-8: {exc}"
    elif isinstance(exc, msgspec.DecodeError) and _reads_as_json(value):
        # The one JSON msgspec refuses: an escape of half a surrogate pair, which msgspec
        # calls truncated input.
        detail = (
            "The body is not valid JSON: a \\u escape in it names half of a surrogate pair "
            "(\\ud800 to \\udfff alone), which is no character."
        )
    else:
        detail = f"The body is not valid JSON: {exc}"
    return problem(400, "Malformed JSON", detail, kind="malformed-json")


def _reads_as_json(value: bytes) -> bool:
    try:
        json.loads(value, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return False
    return True
