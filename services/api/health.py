"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from msgspec import Struct

from contracts.asyncapi import asyncapi_document
from domain.ledger import AccountLedger
from services.api.auth import Permission, guard
from services.projector import Projector
from services.publisher import Publisher

log = logging.getLogger("crm.api")
ASYNCAPI = asyncapi_document()


class Health(Struct, frozen=True):
    status: str


class Readiness(Struct, frozen=True):
    status: str
    checks: dict[str, str]


@get("/health", summary="The process is alive", tags=["operations"], sync_to_thread=False)
def health() -> Health:
    return Health(status="ok")


@get("/ready", summary="The store answers", tags=["operations"], sync_to_thread=True)
def ready(ledger: NamedDependency[AccountLedger]) -> Response[Readiness]:
    try:
        ledger.ping()
    except Exception as exc:  # any failure of the store means not ready, whatever its kind
        log.warning("readiness: store check failed: %s", type(exc).__name__)
        return Response(Readiness("unavailable", {"store": "unavailable"}), status_code=503)
    return Response(Readiness("ready", {"store": "ok"}))


class PublisherView(Struct, frozen=True):
    connected: bool
    published_position: int
    head_position: int
    backlog: int
    last_lag_ms: float | None
    lag_p50_ms: float | None
    lag_p99_ms: float | None


class Status(Struct, frozen=True):
    log_position: int
    read_models: dict[str, int]
    publisher: PublisherView | None


@get(
    "/status",
    guards=[guard(Permission.OPERATE)],
    summary="How far the read models and the publisher are",
    tags=["operations"],
    sync_to_thread=True,
)
def status(
    ledger: NamedDependency[AccountLedger],
    projector: NamedDependency[Projector],
    publisher: NamedDependency[Publisher | None],
) -> Status:
    view = None
    if publisher is not None:
        s = publisher.status
        view = PublisherView(
            connected=s.connected,
            published_position=s.published_position,
            head_position=s.head_position,
            backlog=s.backlog,
            last_lag_ms=s.last_lag_ms,
            lag_p50_ms=s.lag_percentile(0.5),
            lag_p99_ms=s.lag_percentile(0.99),
        )
    return Status(
        log_position=ledger.recorder.max_notification_id() or 0,
        read_models={name: projector.position(name) for name in projector.read_models},
        publisher=view,
    )


@get(
    "/asyncapi.json",
    summary="The AsyncAPI 3.0 document of the published events",
    tags=["operations"],
    sync_to_thread=False,
)
def asyncapi() -> dict[str, Any]:
    return ASYNCAPI
