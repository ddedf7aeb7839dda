"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from msgspec import Struct

from domain.ledger import AccountLedger
from services.api.auth import Permission
from services.api.documentation import NO_STORE_PROBLEM
from services.projector import Projector
from services.publisher import PublisherView
from services.worker_processes import PublisherProcess, WorkerProcess

log = logging.getLogger("crm.api")


class Health(Struct, frozen=True):
    status: str


class Readiness(Struct, frozen=True):
    status: str
    checks: dict[str, str]


@get(
    "/health",
    opt={NO_STORE_PROBLEM: True},
    summary="The process is alive",
    tags=["operations"],
    sync_to_thread=False,
)
def health() -> Health:
    return Health(status="ok")


@get(
    "/ready",
    summary="Whether each dependency answers: the store, the read models, the workers",
    tags=["operations"],
    sync_to_thread=True,
    responses={
        503: ResponseSpec(
            Readiness,
            description="A dependency does not answer (see `checks`).",
            generate_examples=False,
        )
    },
)
def ready(
    ledger: NamedDependency[AccountLedger],
    projector: NamedDependency[Projector],
    projecting: NamedDependency[WorkerProcess | None],
    publisher: NamedDependency[PublisherProcess | None],
) -> Response[Readiness]:
    checks = {
        "store": _check("store", ledger.ping),
        "read_models": _check(
            "read models", lambda: [projector.position(n) for n in projector.read_models]
        ),
    }
    # A process's own projector keeps its reads fresh (one run apart, `crm project`, is out of
    # its sight); down, the reads go stale: not ready, as while its publisher is down.
    if projecting is not None:
        checks["projector"] = projecting.state()
    if publisher is not None:  # only a process that publishes depends on the broker
        checks["broker"] = publisher.view().state
    if all(state in READY_STATES for state in checks.values()):
        return Response(Readiness("ready", checks))
    return Response(Readiness("unavailable", checks), status_code=503)


READY_STATES = {"ok", "standby"}


def _check(what: str, probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as exc:  # any failure of a dependency means not ready, whatever its kind
        log.warning("readiness: %s check failed: %s", what, type(exc).__name__)
        return "unavailable"
    return "ok"


class Status(Struct, frozen=True):
    log_position: int
    read_models: dict[str, int]
    projector: str | None  # the state of `crm serve`'s projector process; None without one
    publisher: PublisherView | None


@get(
    "/status",
    opt={"permission": Permission.OPERATE},
    summary="How far the read models and the publisher are",
    tags=["operations"],
    sync_to_thread=True,
)
def status(
    ledger: NamedDependency[AccountLedger],
    projector: NamedDependency[Projector],
    projecting: NamedDependency[WorkerProcess | None],
    publisher: NamedDependency[PublisherProcess | None],
) -> Status:
    return Status(
        log_position=ledger.recorder.max_notification_id() or 0,
        read_models={name: projector.position(name) for name in projector.read_models},
        projector=None if projecting is None else projecting.state(),
        publisher=None if publisher is None else publisher.view(),
    )


@get(
    "/asyncapi.json",
    summary="The AsyncAPI 3.0 document of the published events",
    opt={NO_STORE_PROBLEM: True},
    tags=["operations"],
    sync_to_thread=False,
)
def asyncapi(events_document: NamedDependency[dict[str, Any]]) -> dict[str, Any]:
    return events_document
