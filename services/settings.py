"""Configuration, read once from `CRM_…` environment variables at the edge."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T", int, float)


PORT_MAX = 65535
PRIVATE = 0o700  # the mode of the directories the CRM makes for its files
# Upper bounds of numbers that the libraries beneath would take and then fail on, at run time.
CENTURY_SECONDS = 3_155_760_000  # JetStream counts a stream's max age in 64-bit nanoseconds
YEAR_SECONDS = 31_536_000


class SettingError(ValueError):
    """A `CRM_…` setting (or the option given in its place) that cannot be used; the message
    names it. `crm` stops with exit status 2 and the message, not a traceback."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    database_url: str | None = None  # postgresql://…; None means the embedded SQLite file
    database_schema: str = "public"
    database_pool_size: int = 20
    max_body_bytes: int = 64 * 1024
    read_wait_seconds: float = 2.0  # how long a read with min_position waits at most
    report_wait_seconds: float = 30.0  # how long a report waits for the one before
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
    log_level: str = "info"  # debug, info, warning or error
    metrics_port: int = 0  # crm project / crm publish: serve /metrics here; 0: do not
    host: str = "127.0.0.1"
    port: int = 8000

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        # White space around a value is no part of it ("unset or empty": the default).
        env = {k: v.strip() for k, v in (os.environ if environ is None else environ).items()}
        defaults = cls()

        def num(name: str, kind: Callable[[str], T], least: T = 0, most: T | None = None) -> T:
            # The default is that of the field the variable names: CRM_PORT, port.
            default = getattr(defaults, name.removeprefix("CRM_").lower())
            return number(env, name, kind, default, least, most)

        return cls(
            data_dir=directory(Path(env.get("CRM_DATA_DIR") or defaults.data_dir)),
            database_url=postgres_url(env.get("CRM_DATABASE_URL")),
            database_schema=schema_name(env.get("CRM_DATABASE_SCHEMA") or defaults.database_schema),
            # Each connection of the pool is opened at start-up.
            database_pool_size=num("CRM_DATABASE_POOL_SIZE", int, least=1, most=1000),
            max_body_bytes=num("CRM_MAX_BODY_BYTES", int, least=1),
            # A reader that waited a minute has given up, and held a thread all the while.
            read_wait_seconds=num("CRM_READ_WAIT_SECONDS", float, most=60),
            report_wait_seconds=num("CRM_REPORT_WAIT_SECONDS", float, most=600),
            # A batch is one transaction, and its size a LIMIT the databases hold in 64 bits.
            projector_batch_size=num("CRM_PROJECTOR_BATCH_SIZE", int, least=1, most=100_000),
            # Accounts held in memory: ten million would take tens of gigabytes.
            aggregate_cache_size=num("CRM_AGGREGATE_CACHE_SIZE", int, most=10_000_000),
            api_keys=env.get("CRM_API_KEYS") or None,
            api_keys_file=Path(env["CRM_API_KEYS_FILE"]) if env.get("CRM_API_KEYS_FILE") else None,
            rate_limit_per_minute=num("CRM_RATE_LIMIT_PER_MINUTE", int),
            cors_origins=cors_origins(env.get("CRM_CORS_ORIGINS", "")),
            nats_url=nats_url(env.get("CRM_NATS_URL")),
            nats_stream=stream_name(env.get("CRM_NATS_STREAM") or defaults.nats_stream),
            nats_max_age_seconds=max_age_seconds(
                num("CRM_NATS_MAX_AGE_SECONDS", float, most=CENTURY_SECONDS)
            ),
            nats_replicas=num("CRM_NATS_REPLICAS", int, least=1, most=5),  # JetStream: 1 to 5
            # A thread's wait takes no more than about 292 years; a year between checkpoints
            # is already more than any audit waits for.
            audit_checkpoint_seconds=checkpoint_seconds(
                num("CRM_AUDIT_CHECKPOINT_SECONDS", float, most=YEAR_SECONDS)
            ),
            log_format=(env.get("CRM_LOG_FORMAT") or defaults.log_format).lower(),
            log_level=env.get("CRM_LOG_LEVEL") or defaults.log_level,
            metrics_port=num("CRM_METRICS_PORT", int, most=PORT_MAX),
            host=env.get("CRM_HOST") or defaults.host,
            port=num("CRM_PORT", int, most=PORT_MAX),
        )

    def make_data_dir(self) -> Path:
        """CRM_DATA_DIR, made when missing. What `directory` cannot tell at start-up without
        making it (no permission, a read-only or pseudo file system such as /proc) is said so,
        naming the variable, by the first command that needs it."""
        try:
            # Made for this user alone: it holds personal data and the key cursors are signed
            # with. A directory that exists is left as the operator made it.
            self.data_dir.mkdir(mode=PRIVATE, parents=True, exist_ok=True)
        except OSError as error:
            raise SettingError(
                f"CRM_DATA_DIR {self.data_dir} cannot be made: {error.strerror}"
            ) from None
        return self.data_dir

    def naming_connections(self, name: str) -> Settings:
        """These settings with `name` as the `application_name` of every database connection
        (`crm-serve`, `crm-project`): an operator tells in `pg_stat_activity` which command
        holds which connection. One the URL gives itself is kept."""
        if self.database_url is None:
            return self
        from psycopg.conninfo import conninfo_to_dict

        if "application_name" in conninfo_to_dict(self.database_url):
            return self
        joiner = "&" if "?" in self.database_url else "?"
        return replace(self, database_url=f"{self.database_url}{joiner}application_name={name}")

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


def directory(path: Path) -> Path:
    """CRM_DATA_DIR when it is a directory or can be made one: what exists of it is a
    directory (a regular file there would fail the first command that stores)."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise SettingError(f"CRM_DATA_DIR must name a directory, and {existing} is a file")
    return path


def postgres_url(value: str | None) -> str | None:
    """CRM_DATABASE_URL when it can be used (None when unset or empty); the message of a bad
    one leaves out the URL, which may hold a password."""
    if not value or not value.strip():
        return None
    try:
        url = urlsplit(value.strip())
    except ValueError:  # an IPv6 address without its closing bracket
        raise SettingError("CRM_DATABASE_URL has a host that cannot be read") from None
    if url.scheme not in ("postgresql", "postgres"):
        raise SettingError(f"CRM_DATABASE_URL must start with postgresql://, not {url.scheme}:")
    if url.netloc.count("@") > 1:
        # Where the password ends is then a guess, and a message about the host or the port
        # would show what follows: the rest of the password.
        raise SettingError(
            "CRM_DATABASE_URL has more than one @ before its host: write an @ in the user or "
            "password as %40"
        )
    if "," not in url.netloc:  # several hosts, each with its port: libpq's reading, below
        try:
            url.port  # noqa: B018 (urlsplit checks the port only when asked)
        except ValueError:
            raise SettingError(
                f"CRM_DATABASE_URL has a port that is not a number from 1 to {PORT_MAX}"
            ) from None
    _check_libpq_parameters(value.strip())
    return value.strip()


def shown_database_url(url: str) -> str:
    """CRM_DATABASE_URL as a message may name it: no password, and no query (libpq takes
    ?password= too)."""
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{parts.scheme}://{user + '@' if user else ''}{host}{parts.path}"


# libpq's parameters whose values it reads only as it connects, and then either fails in
# words a supervisor would take for an outage, or leaves the pool waiting out its timeout.
_WHOLE_NUMBER_PARAMETERS = (
    "port",
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)
# libpq's parameters that take one of a few words, with those words.
_WORDS = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
    "load_balance_hosts": ("disable", "random"),
}


def _check_libpq_parameters(url: str) -> None:
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        parameters = conninfo_to_dict(url)
    except ProgrammingError as exc:
        said = str(exc)
        if said.startswith("invalid URI query parameter"):  # names the parameter alone
            raise SettingError(f"CRM_DATABASE_URL: {said}") from None
        # Other complaints quote the part they could not read, which may be the password.
        raise SettingError("CRM_DATABASE_URL cannot be read as a libpq URL") from None
    for name in _WHOLE_NUMBER_PARAMETERS:
        # One value a host, for a URL that lists several (an empty one: the default).
        for given in str(parameters.get(name, "")).split(","):
            if given and not re.fullmatch(r"-?[0-9]+", given):
                # The port is read from the URL's host part, which a password may run into.
                shown = "a port" if name == "port" else f"{name}={given!r}"
                raise SettingError(f"CRM_DATABASE_URL has {shown}, not a whole number")
            if given and name == "port" and not 0 < int(given) <= PORT_MAX:
                raise SettingError(f"CRM_DATABASE_URL has a port out of 1 to {PORT_MAX}")
    for name, words in _WORDS.items():
        if name in parameters and parameters[name] not in words:
            raise SettingError(
                f"CRM_DATABASE_URL has {name}={parameters[name]!r}, not one of {', '.join(words)}"
            )


NATS_SCHEMES = ("nats", "tls", "ws", "wss")


def nats_url(value: str | None, name: str = "CRM_NATS_URL") -> str | None:
    """CRM_NATS_URL (or the option `name`) when every server it lists is one a client can dial
    (None when unset or empty); `host:port` is taken as nats://host:port, as nats-py takes
    it."""
    if not value or not value.strip():
        return None
    for server in (part.strip() for part in value.split(",")):
        named = without_credentials(server)
        try:
            url = urlsplit(server if "://" in server else f"nats://{server}")
        except ValueError:  # an IPv6 address without its closing bracket
            raise SettingError(f"{name} has a host that cannot be read: {named!r}") from None
        try:
            url.port  # noqa: B018 (urlsplit checks the port only when asked)
        except ValueError:
            message = f"{name} has a port that is not a number: {named!r}"
            raise SettingError(message) from None
        if url.scheme not in NATS_SCHEMES or not url.hostname:
            raise SettingError(f"{name} must list servers such as nats://host:4222, not {named!r}")
    return value.strip()


def without_credentials(nats_url: str) -> str:
    """CRM_NATS_URL as a message or a log line may show it: each server without the user and
    password, or the token, that nats://user:password@host:4222 gives the broker."""
    servers = []
    for server in nats_url.split(","):
        scheme, sep, rest = server.strip().rpartition("://")
        servers.append(f"{scheme}{sep}{rest.rpartition('@')[2]}")
    return ",".join(servers)


def schema_name(value: str) -> str:
    """A PostgreSQL schema that the event store and the read models both find: the store quotes
    the name, the read models' search_path does not (and PostgreSQL folds it to lower case), so
    only a lower-case identifier means the same schema to both. PostgreSQL keeps pg_… for its own.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value) or value.startswith("pg_"):
        raise SettingError(
            "CRM_DATABASE_SCHEMA must be a lower-case name of letters, digits and '_' "
            f"(up to 63, not starting with a digit or pg_), not {value!r}"
        )
    return value


def stream_name(value: str) -> str:
    """A name JetStream takes for a stream: no white space, dots, wildcards or slashes."""
    if not re.fullmatch(r"[^\s.*>/\\]{1,255}", value):
        raise SettingError(
            f"CRM_NATS_STREAM must be a name without spaces, dots, '*', '>' or slashes, "
            f"not {value!r}"
        )
    return value


def cors_origins(value: str) -> tuple[str, ...]:
    """Origins as a browser sends them, `scheme://host[:port]` (or `*`), written as it writes
    them: in lower case, without a user or the scheme's own port (https://App.example.com:443
    is https://app.example.com). Any other text would match no request, and the CORS setting
    would do nothing, silently."""
    origins = []
    for origin in (o.strip() for o in value.split(",") if o.strip()):
        if origin == "*":
            origins.append(origin)
            continue
        refused = SettingError(
            f"CRM_CORS_ORIGINS must name origins such as https://app.example.com, not {origin!r}"
        )
        if not re.fullmatch(r"https?://[^\s/?#@]+", origin):
            raise refused
        try:
            url = urlsplit(origin.lower())
            port = url.port
        except ValueError:  # a port out of range, a bracket not closed
            raise refused from None
        if not url.hostname:
            raise refused
        default = {"http": 80, "https": 443}[url.scheme]
        netloc = url.netloc.rpartition(":")[0] if port == default else url.netloc
        origins.append(f"{url.scheme}://{netloc}")
    return tuple(origins)


def max_age_seconds(seconds: float) -> float:
    """0 keeps every message; JetStream refuses an age limit under 100 ms, and the publisher
    would then publish nothing."""
    if 0 < seconds < 0.1:
        raise SettingError(
            f"CRM_NATS_MAX_AGE_SECONDS must be 0 (for ever) or at least 0.1, not {seconds!r}"
        )
    return seconds


def checkpoint_seconds(seconds: float) -> float:
    """0 turns the periodic checkpoints off; a shorter interval than a second would record
    one for nearly every change, reading the log all the while."""
    if 0 < seconds < 1:
        raise SettingError(
            f"CRM_AUDIT_CHECKPOINT_SECONDS must be 0 (off) or a number of at least 1, "
            f"not {seconds!r}"
        )
    return seconds


def number(
    env: Mapping[str, str],
    name: str,
    kind: Callable[[str], T],
    default: T,
    least: T = 0,
    most: T | None = None,
) -> T:
    """The variable as a number from `least` (up to `most`), or its default when unset or
    empty."""
    value = env.get(name, "").strip()
    if not value:
        return default
    what = "a whole number" if kind is int else "a number"
    try:
        if not value.isascii():  # int() and float() read other scripts' digits too: ٥ is 5
            raise ValueError(value)
        parsed = kind(value)
    except ValueError:
        raise SettingError(f"{name} must be {what}, not {value!r}") from None
    if not (math.isfinite(parsed) and parsed >= least):
        raise SettingError(f"{name} must be {what} of at least {least}, not {value!r}")
    if most is not None and parsed > most:
        raise SettingError(f"{name} must be {what} of at most {most}, not {value!r}")
    return parsed
