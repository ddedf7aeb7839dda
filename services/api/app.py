"""The HTTP application: routes, problem details, OpenAPI, request ids."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from domain.ledger import AccountLedger
from services.api import metrics
from services.api.accounts import AccountController
from services.api.audit import AUDIT_HANDLERS
from services.api.auth import ApiKey, authentication, route_permission
from services.api.command_meta import AccountCommand, CommandHeaders, command_headers
from services.api.health import asyncapi, health, ready, status
from services.api.jobs import read_job, upload_import
from services.api.objectives import ObjectivesController
from services.api.openapi import document_problems
from services.api.problems import EXCEPTION_HANDLERS, PROBLEM_DETAILS
from services.api.read_models import READ_MODEL_HANDLERS, ReadOptions
from services.api.screening_policies import ScreeningPolicyController
from services.audit import Audit
from services.jobs import JobRunner
from services.projector import Projector
from services.publisher import Publisher
from services.settings import Settings

log = logging.getLogger("crm.requests")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()  # as ASGI servers pass header names
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

# What a browser must not do with a CRM's answers: sniff types, frame them, leak the URL.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _request_id(scope: Scope) -> str:
    """Keeps a sane client-sent request id (for tracing across services), else makes one."""
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_KEY:
            sent = value.decode("latin-1")
            if _REQUEST_ID.match(sent):
                return sent
            break
    return os.urandom(16).hex()  # as random as a UUID4, without building one


class RequestContext:
    """The outermost middleware of every route: gives the request its id (which the events it
    causes record) and notes when it began, before authentication can refuse it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.setdefault("state", {})  # type: ignore[typeddict-item]
        state.setdefault("request_id", _request_id(scope))
        state.setdefault("started", time.perf_counter())
        await self.app(scope, receive, send)


async def _on_response_start(message: Message, scope: Scope) -> None:
    """Echoes the request id, adds the security headers, counts an accepted command and
    writes the request's one log line, for every answer (errors and unknown paths too).
    A coroutine: Litestar runs a plain function hook in a worker thread, for every message."""
    if message["type"] != "http.response.start" or scope["type"] != "http":
        return
    state = scope.setdefault("state", {})  # type: ignore[typeddict-item]
    request_id = state.setdefault("request_id", _request_id(scope))  # unrouted: no middleware
    headers = MutableScopeHeaders.from_message(message)
    headers[REQUEST_ID_HEADER] = request_id
    for name, value in SECURITY_HEADERS.items():
        headers[name] = value
    status = message["status"]
    handler = scope.get("route_handler")
    route = scope.get("path_template") or None
    if handler is not None and scope["method"] not in SAFE_METHODS and status < 400:
        metrics.COMMANDS.labels(handler.handler_name).inc()
    started = state.get("started")
    user = scope.get("user")
    log.info(
        "%s %s %s",
        scope["method"],
        scope["path"],
        status,
        extra={
            "fields": {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)
                if started
                else None,
                "key": getattr(user, "name", None),
            }
        },
    )


def create_app(
    ledger: AccountLedger,
    projector: Projector,
    settings: Settings | None = None,
    publisher: Publisher | None = None,
    jobs: JobRunner | None = None,
    keys: list[ApiKey] | None = None,
    on_startup: Sequence[Callable[[], Any]] = (),
    on_shutdown: Sequence[Callable[[], Any]] = (),
) -> Litestar:
    settings = settings or Settings()
    jobs = jobs or JobRunner(ledger, settings)
    read_options = ReadOptions(wait_seconds=settings.read_wait_seconds)
    audit = Audit(ledger)

    def account_command(command_headers: NamedDependency[CommandHeaders]) -> AccountCommand:
        return AccountCommand(ledger, command_headers)

    app = Litestar(
        route_handlers=[
            AccountController,
            ObjectivesController,
            ScreeningPolicyController,
            upload_import,
            read_job,
            *READ_MODEL_HANDLERS,
            *AUDIT_HANDLERS,
            health,
            ready,
            status,
            asyncapi,
            metrics.metrics,
        ],
        dependencies={
            "ledger": Provide(lambda: ledger, use_cache=True, sync_to_thread=False),
            "projector": Provide(lambda: projector, use_cache=True, sync_to_thread=False),
            "read_options": Provide(lambda: read_options, use_cache=True, sync_to_thread=False),
            "publisher": Provide(lambda: publisher, use_cache=True, sync_to_thread=False),
            "jobs": Provide(lambda: jobs, use_cache=True, sync_to_thread=False),
            "audit": Provide(lambda: audit, use_cache=True, sync_to_thread=False),
            "command_headers": Provide(command_headers, sync_to_thread=False),
            "command": Provide(account_command, sync_to_thread=False),
        },
        plugins=[ProblemDetailsPlugin(PROBLEM_DETAILS)],
        middleware=[
            RequestContext,
            metrics.REQUESTS.middleware,
            *authentication(keys or [], settings.rate_limit_per_minute),
        ],
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins))
        if settings.cors_origins
        else None,
        guards=[route_permission],
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[_on_response_start],
        logging_config=None,  # records go to the root logger, which services/logs.py formats
        request_max_body_size=settings.max_body_bytes,
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
        openapi_config=OpenAPIConfig(
            title="ABM CRM",
            version="0.1.0",
            description="Event-sourced CRM for account-based B2B marketing.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
    )
    document_problems(app.openapi_schema)
    return app
