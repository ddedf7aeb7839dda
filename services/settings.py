"""Configuration, read once from `CRM_…` environment variables at the edge."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    database_url: str | None = None  # postgresql://…; None means the embedded SQLite file
    database_schema: str = "public"
    database_pool_size: int = 20
    max_body_bytes: int = 64 * 1024
    read_wait_seconds: float = 2.0  # how long a read with min_position waits at most
    projector_batch_size: int = 1000  # events applied per read-model transaction
    aggregate_cache_size: int = 10_000  # accounts kept loaded between commands; 0: none
    api_keys: str | None = None  # name:role:secret,…; none (and no file) is development mode
    api_keys_file: Path | None = None
    rate_limit_per_minute: int = 6000  # per API key; keys only (development mode has none)
    cors_origins: tuple[str, ...] = ()  # CORS stays off unless origins are named
    nats_url: str | None = None  # None: `crm serve` starts an embedded nats-server
    nats_stream: str = "CRM"
    nats_max_age_seconds: float = 0  # 0 keeps every message, so subscribers can replay all
    nats_replicas: int = 1  # of the stream, when the publisher creates it
    audit_checkpoint_seconds: float = 3600  # how often the workers record a checkpoint; 0: never
    log_format: str = "json"  # json: one object per line; text: for a terminal
    metrics_port: int = 0  # crm project / crm publish: serve /metrics here; 0: do not
    host: str = "127.0.0.1"
    port: int = 8000

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            data_dir=Path(env.get("CRM_DATA_DIR", str(defaults.data_dir))),
            database_url=env.get("CRM_DATABASE_URL") or None,
            database_schema=env.get("CRM_DATABASE_SCHEMA", defaults.database_schema),
            database_pool_size=int(env.get("CRM_DATABASE_POOL_SIZE", defaults.database_pool_size)),
            max_body_bytes=int(env.get("CRM_MAX_BODY_BYTES", defaults.max_body_bytes)),
            read_wait_seconds=float(env.get("CRM_READ_WAIT_SECONDS", defaults.read_wait_seconds)),
            projector_batch_size=int(
                env.get("CRM_PROJECTOR_BATCH_SIZE", defaults.projector_batch_size)
            ),
            aggregate_cache_size=int(
                env.get("CRM_AGGREGATE_CACHE_SIZE", defaults.aggregate_cache_size)
            ),
            api_keys=env.get("CRM_API_KEYS") or None,
            api_keys_file=Path(env["CRM_API_KEYS_FILE"]) if env.get("CRM_API_KEYS_FILE") else None,
            rate_limit_per_minute=int(
                env.get("CRM_RATE_LIMIT_PER_MINUTE", defaults.rate_limit_per_minute)
            ),
            cors_origins=tuple(
                o.strip() for o in env.get("CRM_CORS_ORIGINS", "").split(",") if o.strip()
            ),
            nats_url=env.get("CRM_NATS_URL") or None,
            nats_stream=env.get("CRM_NATS_STREAM", defaults.nats_stream),
            nats_max_age_seconds=float(
                env.get("CRM_NATS_MAX_AGE_SECONDS", defaults.nats_max_age_seconds)
            ),
            nats_replicas=int(env.get("CRM_NATS_REPLICAS", defaults.nats_replicas)),
            audit_checkpoint_seconds=float(
                env.get("CRM_AUDIT_CHECKPOINT_SECONDS", defaults.audit_checkpoint_seconds)
            ),
            log_format=env.get("CRM_LOG_FORMAT", defaults.log_format),
            metrics_port=int(env.get("CRM_METRICS_PORT", defaults.metrics_port)),
            host=env.get("CRM_HOST", defaults.host),
            port=int(env.get("CRM_PORT", defaults.port)),
        )

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "crm.sqlite3"

    @property
    def read_models_path(self) -> Path:
        """The read models' own SQLite file: the projector's transactions then never wait for
        the event store's write lock, nor commands for theirs."""
        return self.data_dir / "read_models.sqlite3"

    @property
    def store_name(self) -> str:
        return "postgresql" if self.database_url else "sqlite"
