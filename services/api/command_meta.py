"""Reads who sent a command and its guards (If-Match, Idempotency-Key) from the request.

Handlers get them through the `command_headers` dependency, or inside the `command` one
(`AccountCommand`, which also carries the ledger). The headers are read from the request here
rather than declared as Litestar header parameters, whose parsing cost every command more than
its domain logic; services/api/openapi.py adds them to the OpenAPI document of every operation
that takes either dependency.

Commands on an existing account honour both guards. A command whose handler says
`opt={IDEMPOTENT: True}` honours Idempotency-Key alone (its use case keeps a receipt in the same
transaction as what it stores, and there is no account version to expect): a registration,
policies, objectives, imports. Other commands honour neither. A handler
neither documents a guard it does not honour nor accepts it: a request that sends one there
is refused (400), rather than the guard silently ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from litestar import Request

from contracts.accounts import LINE_PATTERN, TEXT_RULES, has_visible
from domain.ledger import ANY_VERSION, AccountLedger, CommandMeta, CommandResult
from domain.receipts import IdempotencyKey
from services.api.auth import caller
from services.api.problems import invalid_field

ANONYMOUS = "anonymous"
IDEMPOTENT = "idempotent"  # handler opt: its command honours Idempotency-Key, not If-Match
VERSIONED = "versioned"  # handler opt, with IDEMPOTENT: it honours If-Match too
_IF_MATCH = re.compile(r'^\s*(?:"(\d{1,18})"|(\d{1,18})|(\*))\s*$')
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
ACTOR_RULE = f"{TEXT_RULES[LINE_PATTERN]}, at most 200 characters"
_ACTOR = re.compile(LINE_PATTERN)  # a name, as the rules of a body's names have it


@dataclass(frozen=True)
class CommandHeaders:
    actor: str
    request_id: str | None
    expected_version: int | None
    idempotency_key: str | None
    method: str
    path: str

    def meta(self, body: Any) -> CommandMeta:
        idempotency = None
        if self.idempotency_key is not None:
            # The decoded body re-encoded, so whitespace or key order do not make a retry differ.
            canonical = msgspec.json.encode(body)
            digest = hashlib.sha256(f"{self.method} {self.path}\n".encode() + canonical)
            idempotency = IdempotencyKey(self.idempotency_key, digest.hexdigest())
        return CommandMeta(
            actor=self.actor,
            reason=getattr(body, "reason", None),
            request_id=self.request_id,
            expected_version=self.expected_version,
            idempotency=idempotency,
        )


@dataclass(frozen=True)
class AccountCommand:
    """An account command on its way to the ledger, with who sent it and its guards."""

    ledger: AccountLedger
    headers: CommandHeaders

    def submit(
        self, body: Any, account_id: UUID, command: Callable[..., None], *args: Any
    ) -> asyncio.Future[CommandResult]:
        reply = LoopReply()
        self.ledger.submit(account_id, self.headers.meta(body), command, *args, reply=reply)
        return reply.future


class LoopReply:
    """A command's outcome, handed from the account writer's thread to the event loop that
    waits for it (an asyncio future is far cheaper to make than a thread-safe one)."""

    __slots__ = ("_loop", "future")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.future: asyncio.Future[CommandResult] = self._loop.create_future()

    def set_result(self, result: CommandResult) -> None:
        self._loop.call_soon_threadsafe(_settle, self.future, result, None)

    def set_exception(self, exception: BaseException) -> None:
        self._loop.call_soon_threadsafe(_settle, self.future, None, exception)


def _settle(
    future: asyncio.Future[CommandResult],
    result: CommandResult | None,
    exception: BaseException | None,
) -> None:
    if future.cancelled():  # the client went away meanwhile
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)  # type: ignore[arg-type]


def sent_twice(header: str) -> Exception:
    """The 400 for a header sent more than once: which one a proxy or a log reads is anyone's
    guess."""
    detail = f"{header} is sent more than once: send it once."
    return invalid_field(header, detail, 400, source="header")


def command_headers(request: Request[Any, Any, Any]) -> CommandHeaders:
    sent: dict[bytes, str] = {}
    for name, value in request.scope["headers"]:
        if name in _HEADER_KEYS:
            if name in sent:
                raise sent_twice(_HEADER_KEYS[name])
            sent[name] = value.decode("latin-1")
    key = caller(request)
    idempotency_key = _idempotency_key(sent.get(b"idempotency-key"))
    return CommandHeaders(
        # An authenticated caller is recorded by its key's name; X-Actor counts only in
        # development mode, where there are no keys.
        actor=key.name if key is not None else _actor(sent.get(b"x-actor")),
        request_id=request.scope["state"].get("request_id"),
        expected_version=expected_version(sent.get(b"if-match")),
        idempotency_key=idempotency_key,
        method=request.scope["method"],
        path=route_path(request.scope),
    )


def route_path(scope: Any) -> str:
    """The request's path with its parameters as the service writes them: a UUID may come in
    capitals, without dashes or as a URN, and every spelling names the same account."""
    template = scope.get("path_template")
    if not template:
        return scope["path"]
    return template.format_map({name: str(value) for name, value in scope["path_params"].items()})


COMMAND_HEADERS = {
    "If-Match": "The version the command expects (the account's, or what the path names), as "
    'in the ETag: "3" (or 3, or *: any, so long as there is one).',
    "Idempotency-Key": "1 to 255 printable ASCII characters. Sending the same key and body "
    "again returns the first response.",
    "X-Actor": f"Who sends it: {ACTOR_RULE} (development mode only; with API keys, the key's "
    "name).",
}
COMMAND_HEADER_FORMS = {
    "If-Match": _IF_MATCH,
    "Idempotency-Key": _IDEMPOTENCY_KEY,
    "X-Actor": _ACTOR,
}
ACTOR_MAX_LENGTH = 200
_HEADER_KEYS = {name.lower().encode(): name for name in COMMAND_HEADERS}  # as ASGI names them
GUARDS = frozenset({"If-Match", "Idempotency-Key"})
_GUARD_KEYS = {guard.lower().encode(): guard for guard in GUARDS}
# Preconditions no command honours: a write sent with one (If-None-Match: * to create only)
# would otherwise be applied as if it had none.
_UNHONOURED = {
    name.lower().encode(): name
    for name in ("If-None-Match", "If-Unmodified-Since", "If-Modified-Since", "If-Range")
}


async def refuse_unheeded_guards(request: Request[Any, Any, Any]) -> None:
    """A `before_request` hook: a guard sent to a POST, PUT or DELETE that does not honour it
    (If-Match on a registration, either on a dry run), or a precondition no command honours
    (If-None-Match), is refused rather than ignored."""
    if request.scope["method"] in ("GET", "HEAD", "OPTIONS"):
        return
    for name, _ in request.scope["headers"]:
        guard = _GUARD_KEYS.get(name)
        if guard is not None and guard not in guards(request.route_handler):
            detail = f"This request does not take {guard}."
            raise invalid_field(guard, detail, 400, source="header")
        if (precondition := _UNHONOURED.get(name)) is not None:
            detail = f"No command takes {precondition}; If-Match expects a version."
            raise invalid_field(precondition, detail, 400, source="header")


def guards(handler: Any) -> frozenset[str]:
    """The guard headers a handler's command honours."""
    if handler.opt.get(IDEMPOTENT):
        return GUARDS if handler.opt.get(VERSIONED) else frozenset({"Idempotency-Key"})
    if "command" in handler.parsed_fn_signature.parameters:
        return GUARDS
    return frozenset()


def _actor(header: str | None) -> str:
    if header is None:
        return ANONYMOUS
    try:  # headers arrive as Latin-1; a client that sends UTF-8 means UTF-8
        header = header.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        pass
    actor = header.strip()
    if not (len(actor) <= ACTOR_MAX_LENGTH and _ACTOR.match(actor) and has_visible(actor)):
        raise invalid_field("X-Actor", f"X-Actor must be {ACTOR_RULE}.", 400, source="header")
    return actor


def expected_version(header: str | None) -> int | None:
    """The version an If-Match names (ANY_VERSION for `*`), None without one; a 400 problem
    when it names no version."""
    if header is None:
        return None
    match = _IF_MATCH.match(header)
    if match is None:
        raise invalid_field(
            "If-Match",
            'If-Match must be an account version such as "3", as in the ETag.',
            400,
            source="header",
        )
    quoted, bare, _any = match.groups()
    version = quoted or bare
    return int(version) if version else ANY_VERSION


def _idempotency_key(header: str | None) -> str | None:
    if header is not None and not _IDEMPOTENCY_KEY.fullmatch(header):
        raise invalid_field(
            "Idempotency-Key",
            "Idempotency-Key must be 1 to 255 printable ASCII characters.",
            400,
            source="header",
        )
    return header
