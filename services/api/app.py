"""The HTTP application: routes, problem details, OpenAPI, request ids."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from litestar import Litestar, Request
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins.problem_details import ProblemDetailsPlugin

from contracts.asyncapi import asyncapi_document
from domain.ledger import AccountLedger
from services.api import metrics, openapi
from services.api.accounts import AccountController
from services.api.audit import AUDIT_HANDLERS
from services.api.auth import ApiKey, authentication
from services.api.command_meta import (
    AccountCommand,
    command_headers,
    refuse_unheeded_guards,
)
from services.api.head import HeadAsGet
from services.api.health import asyncapi, health, ready, status
from services.api.jobs import cancel_job, list_jobs, read_job, upload_import
from services.api.objectives import ObjectivesController
from services.api.page_cache import PageCache
from services.api.parameters import (
    note_what_routes_take,
    refuse_content_coding,
    refuse_parameters_not_taken,
    refuse_unread_body,
)
from services.api.problems import EXCEPTION_HANDLERS, PROBLEM_DETAILS
from services.api.read_models import READ_MODEL_HANDLERS, Reads
from services.api.reference_page import assets, swagger_page
from services.api.screening_policies import ScreeningPolicyController
from services.api.telemetry import RequestContext, on_response_start
from services.audit import Audit
from services.jobs import JobRunner
from services.projector import Projector
from services.settings import Settings, without_credentials
from services.worker_processes import PublisherProcess, WorkerProcess

# A browser shows a page on another origin only the response headers CORS safelists and those
# an answer exposes: a frontend reads these to send If-Match and min_position, to follow a
# Location, and to back off. The OpenAPI document lists each (tests/security compares them).
EXPOSED_HEADERS = [
    "Content-Disposition",  # an export's file name
    "CRM-Position",
    "CRM-Stale",
    "ETag",
    "Idempotent-Replayed",
    "Location",
    "RateLimit-Limit",
    "RateLimit-Policy",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
    "WWW-Authenticate",
    "X-Request-ID",
]


async def check_request(request: Request[Any, Any, Any]) -> None:
    """Before any handler: what a request sends that its route would ignore or misread is
    refused."""
    refuse_parameters_not_taken(request)
    await refuse_unread_body(request)
    refuse_content_coding(request)
    await refuse_unheeded_guards(request)


def create_app(
    ledger: AccountLedger,
    projector: Projector,
    settings: Settings | None = None,
    projecting: WorkerProcess | None = None,
    publisher: PublisherProcess | None = None,
    jobs: JobRunner | None = None,
    keys: list[ApiKey] | None = None,
    on_startup: Sequence[Callable[[], Any]] = (),
    on_shutdown: Sequence[Callable[[], Any]] = (),
    broker_url: str | None = None,
) -> Litestar:
    """`broker_url`: the NATS the events are published to, when not CRM_NATS_URL (the embedded
    one), for the AsyncAPI document."""
    settings = settings or Settings()
    jobs = jobs or JobRunner(ledger, settings)
    pages = PageCache(projector.database)
    reads = Reads(projector, settings.read_wait_seconds, pages, settings.report_wait_seconds)
    audit = Audit(ledger)
    broker_url = broker_url or settings.nats_url
    events_document = asyncapi_document(
        settings.nats_stream, brokers=broker_url and without_credentials(broker_url)
    )

    def account_command(request: Request[Any, Any, Any]) -> AccountCommand:
        return AccountCommand(ledger, command_headers(request))

    app = HeadAsGet(
        route_handlers=[
            AccountController,
            ObjectivesController,
            ScreeningPolicyController,
            upload_import,
            list_jobs,
            read_job,
            cancel_job,
            *READ_MODEL_HANDLERS,
            *AUDIT_HANDLERS,
            health,
            ready,
            status,
            asyncapi,
            metrics.metrics,
            assets(),
        ],
        dependencies={
            "ledger": Provide(lambda: ledger, use_cache=True, sync_to_thread=False),
            "projector": Provide(lambda: projector, use_cache=True, sync_to_thread=False),
            "reads": Provide(lambda: reads, use_cache=True, sync_to_thread=False),
            "projecting": Provide(lambda: projecting, use_cache=True, sync_to_thread=False),
            "publisher": Provide(lambda: publisher, use_cache=True, sync_to_thread=False),
            "jobs": Provide(lambda: jobs, use_cache=True, sync_to_thread=False),
            "audit": Provide(lambda: audit, use_cache=True, sync_to_thread=False),
            "events_document": Provide(
                lambda: events_document, use_cache=True, sync_to_thread=False
            ),
            "command_headers": Provide(command_headers, sync_to_thread=False),
            "command": Provide(account_command, sync_to_thread=False),
        },
        plugins=[ProblemDetailsPlugin(PROBLEM_DETAILS)],
        middleware=[
            RequestContext,
            *authentication(keys or [], settings.rate_limit_per_minute, settings.cors_origins),
        ],
        cors_config=CORSConfig(
            allow_origins=list(settings.cors_origins), expose_headers=EXPOSED_HEADERS
        )
        if settings.cors_origins
        else None,
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[on_response_start],
        before_request=check_request,
        logging_config=None,  # records go to the root logger, which services/logs.py formats
        request_max_body_size=settings.max_body_bytes,
        # The jobs a stop interrupted run again once the rest has started; an app started again
        # in the same process (a test client entered twice) runs its jobs again too.
        on_startup=[*on_startup, jobs.resume],
        on_shutdown=[jobs.stop, *on_shutdown, pages.close],  # jobs first, while the ledger is open
        openapi_config=OpenAPIConfig(
            title="ABM CRM",
            version="0.1.0",
            description="Event-sourced CRM for account-based B2B marketing.",
            path="/schema",
            render_plugins=[swagger_page()],  # the first is /schema's too
        ),
    )
    note_what_routes_take(app)
    openapi.complete(app)
    return app
