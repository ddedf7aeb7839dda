"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

import logging

from litestar import Response, get
from litestar.di import NamedDependency
from msgspec import Struct

from domain.ledger import AccountLedger

log = logging.getLogger("crm.api")


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
