"""The HTTP application: routes, problem details, OpenAPI, request ids."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from litestar import Litestar, Request
from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.types import Message, Scope

from domain.ledger import AccountLedger
from services.api.accounts import AccountController
from services.api.audit import AUDIT_HANDLERS
from services.api.auth import ApiKey, Permission, authentication, guard
from services.api.command_meta import command_headers
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

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _assign_request_id(request: Request[Any, Any, Any]) -> None:
    """Keeps a sane client-sent request id (for tracing across services), else makes one."""
    sent = request.headers.get(REQUEST_ID_HEADER)
    request.state.request_id = sent if sent and _REQUEST_ID.match(sent) else uuid.uuid4().hex


# What a browser must not do with a CRM's answers: sniff types, frame them, leak the URL.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _response_headers(message: Message, scope: Scope) -> None:
    """Echoes the request id and adds the security headers to every answer, errors included."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    request_id = scope.get("state", {}).get("request_id")
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    for name, value in SECURITY_HEADERS.items():
        headers[name] = value


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
    jobs = jobs or JobRunner(ledger, settings.data_dir)
    read_options = ReadOptions(wait_seconds=settings.read_wait_seconds)
    audit = Audit(ledger)
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
        ],
        dependencies={
            "ledger": Provide(lambda: ledger, use_cache=True, sync_to_thread=False),
            "projector": Provide(lambda: projector, use_cache=True, sync_to_thread=False),
            "read_options": Provide(lambda: read_options, use_cache=True, sync_to_thread=False),
            "publisher": Provide(lambda: publisher, use_cache=True, sync_to_thread=False),
            "jobs": Provide(lambda: jobs, use_cache=True, sync_to_thread=False),
            "audit": Provide(lambda: audit, use_cache=True, sync_to_thread=False),
            "command_headers": Provide(command_headers, sync_to_thread=False),
        },
        plugins=[ProblemDetailsPlugin(PROBLEM_DETAILS)],
        middleware=authentication(keys or [], settings.rate_limit_per_minute),
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins))
        if settings.cors_origins
        else None,
        guards=[guard(Permission.READ)],
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=_assign_request_id,
        before_send=[_response_headers],
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
