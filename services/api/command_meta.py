"""Reads who sent a command and its guards (If-Match, Idempotency-Key) from the request.

`command_headers` is a Litestar dependency, so these headers appear in the OpenAPI document of
every command that uses it. Account commands take it inside `AccountCommand`: one dependency
chain rather than two dependencies side by side, which Litestar would resolve in a task group
of their own on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request
from litestar.params import HeaderParameter

from domain.ledger import AccountLedger, CommandMeta, CommandResult
from domain.receipts import IdempotencyKey
from services.api.auth import caller
from services.api.problems import invalid_field

ANONYMOUS = "anonymous"
_IF_MATCH = re.compile(r'^\s*(?:"(\d{1,18})"|(\d{1,18})|(\*))\s*$')
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_ACTOR = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


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


def command_headers(
    request: Request[Any, Any, Any],
    if_match: Annotated[
        str | None,
        HeaderParameter(
            name="If-Match",
            required=False,
            description='The account version the command expects, as in the ETag: "3".',
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key",
            required=False,
            description="Sending the same key and body again returns the first response.",
        ),
    ] = None,
    x_actor: Annotated[
        str | None, HeaderParameter(name="X-Actor", required=False, description="Who sends it.")
    ] = None,
) -> CommandHeaders:
    key = caller(request)
    return CommandHeaders(
        # An authenticated caller is recorded by its key's name; X-Actor counts only in
        # development mode, where there are no keys.
        actor=key.name if key is not None else _actor(x_actor),
        request_id=request.state.get("request_id"),
        expected_version=_expected_version(if_match),
        idempotency_key=_idempotency_key(idempotency_key),
        method=request.method,
        path=request.scope["path"],
    )


def _actor(header: str | None) -> str:
    if header is None:
        return ANONYMOUS
    actor = header.strip()
    if not _ACTOR.match(actor):
        raise invalid_field("X-Actor", "X-Actor must be 1 to 200 printable characters.", 400)
    return actor


def _expected_version(header: str | None) -> int | None:
    if header is None:
        return None
    match = _IF_MATCH.match(header)
    if match is None:
        raise invalid_field(
            "If-Match", 'If-Match must be an account version such as "3", as in the ETag.', 400
        )
    quoted, bare, _any = match.groups()
    version = quoted or bare
    return int(version) if version else None


def _idempotency_key(header: str | None) -> str | None:
    if header is not None and not _IDEMPOTENCY_KEY.match(header):
        raise invalid_field(
            "Idempotency-Key", "Idempotency-Key must be 1 to 255 printable ASCII characters.", 400
        )
    return header
