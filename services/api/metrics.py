"""Prometheus metrics at `GET /metrics`.

Counted as they happen, in this process: HTTP requests by route template and status with
latency histograms, and accepted commands by type (services/api/telemetry.py), refused commands
by rule, and, where this process publishes, events published and the commit → ack lag
(services/publisher.py).

Read from the store at each scrape, so that every process reports the same truth whichever
of them runs the workers: the event log's head, each read model's position and lag, and the
use of the database connection pools.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from litestar import Response, get
from litestar.di import NamedDependency
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.api.auth import Permission
from services.api.documentation import NO_STORE_PROBLEM
from services.projector import Projector

if TYPE_CHECKING:
    from services.leadership import Leadership

log = logging.getLogger("crm.metrics")

REFUSED = Counter("crm_commands_refused", "Commands refused, by the rule that refused", ["rule"])
CONTENT_TYPE = "text/plain; version=0.0.4"  # Litestar adds the charset


class StoreCollector(Collector):
    """What the store says when scraped; a store that cannot answer reports store_up 0."""

    def __init__(
        self, projector: Projector, *, projects: bool = False, leadership: Leadership | None = None
    ) -> None:
        self.projector = projector
        self.leadership = leadership  # `crm project`'s: whether this one applies the batches
        # The projector's pool is reported by the process that projects (`crm project`): an API
        # process uses it only to create the read models' tables at start-up.
        self.pools = {"read_models": projector.database.reader}
        if projects:
            self.pools["projector"] = projector.database.writer

    def describe(self) -> list[Metric]:
        # Without it the registry would collect once on registering, reading a store that may
        # not hold its tables yet (a fresh database, before the projector made them): a
        # warning at every first start.
        return []

    def collect(self) -> Iterator[Metric]:
        if self.leadership is not None:  # whether it holds the lock: known without the store
            yield GaugeMetricFamily(
                "crm_projector_active",
                "1 while this process is the active projector",
                value=int(self.leadership.active),
            )
        up = GaugeMetricFamily("crm_store_up", "1 when the event store and read models answer")
        try:
            families = list(self._read())
        except Exception as exc:  # a scrape must answer even while the store is away
            log.warning("metrics: the store did not answer: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> Iterator[Metric]:
        ledger, projector = self.projector.ledger, self.projector
        head = ledger.recorder.max_notification_id() or 0
        yield GaugeMetricFamily(
            "crm_event_log_position", "The last position in the event log", value=head
        )
        position = GaugeMetricFamily(
            "crm_read_model_position", "Last log position applied", labels=["read_model"]
        )
        lag = GaugeMetricFamily(
            "crm_read_model_lag_events", "Log positions not yet applied", labels=["read_model"]
        )
        for name in projector.read_models:
            at = projector.position(name)
            position.add_metric([name], at)
            lag.add_metric([name], max(head - at, 0))
        yield position
        yield lag
        in_use = GaugeMetricFamily(
            "crm_db_pool_in_use", "Database connections in use, by pool", labels=["pool"]
        )
        size = GaugeMetricFamily(
            "crm_db_pool_size", "Database connections the pool keeps", labels=["pool"]
        )
        for name, engine in self.pools.items():
            in_use.add_metric([name], engine.pool.checkedout())  # type: ignore[attr-defined]
            size.add_metric([name], engine.pool.size())  # type: ignore[attr-defined]
        pool = getattr(getattr(ledger.recorder, "datastore", None), "pool", None)
        if pool is not None and hasattr(pool, "get_stats"):  # PostgreSQL's event store pool
            stats = pool.get_stats()
            in_use.add_metric(
                ["events"], stats.get("pool_size", 0) - stats.get("pool_available", 0)
            )
            size.add_metric(["events"], pool.max_size)
        yield in_use
        yield size


def exposition(projector: Projector) -> bytes:
    """This process's counters, and the store's figures read now."""
    store = CollectorRegistry(auto_describe=False)
    store.register(StoreCollector(projector))
    return generate_latest(REGISTRY) + generate_latest(store)


@get(
    "/metrics",
    opt={"permission": Permission.OPERATE, NO_STORE_PROBLEM: True},
    summary="Prometheus metrics",
    tags=["operations"],
    sync_to_thread=True,
    media_type=CONTENT_TYPE,
    include_in_schema=True,
)
def metrics(projector: NamedDependency[Projector]) -> Response[bytes]:
    return Response(exposition(projector), media_type=CONTENT_TYPE)
