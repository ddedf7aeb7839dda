"""API keys and roles.

Keys come from `CRM_API_KEYS` (`name:role:secret`, comma-separated) and/or the file named by
`CRM_API_KEYS_FILE` (one such entry a line). Only a hash of each secret is kept, and a
presented key is compared with every hash in constant time. With no keys configured the
service runs in development mode: no authentication, loopback only.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from litestar.connection import ASGIConnection, Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.rate_limit import RateLimitConfig

from projections.account_queries import looks_back
from services.api.telemetry import SAFE_METHODS
from services.settings import SettingError

# Paths anyone may reach: liveness for load balancers and the API's own documentation.
# Load balancers and orchestrators probe /health and /ready without a key; both say no more
# than whether the process and its dependencies answer.
PUBLIC_PATHS = ["^/health$", "^/ready$", "^/schema"]


class Role(StrEnum):
    VIEWER = "viewer"  # reads current state, lists, leaderboards, reports
    SALES = "sales"  # viewer + every command
    AUDITOR = "auditor"  # viewer + history, as-of, exports
    ADMIN = "admin"  # everything, operations included
    MONITOR = "monitor"  # /status and /metrics only: the key a metrics scraper holds


class Permission(StrEnum):
    READ = "read"
    WRITE = "write"
    AUDIT = "audit"
    OPERATE = "operate"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.SALES: frozenset({Permission.READ, Permission.WRITE}),
    Role.AUDITOR: frozenset({Permission.READ, Permission.AUDIT}),
    Role.ADMIN: frozenset(Permission),
    Role.MONITOR: frozenset({Permission.OPERATE}),
}


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: Role
    secret_sha256: bytes

    def allows(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


class KeyConfigError(SettingError):
    pass


# What a request can present as it is configured: a header carries ASCII (Latin-1 at most,
# which no UTF-8 secret survives), and the presented key loses the spaces around it.
_SECRET = re.compile(r"[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?")


def parse_keys(spec: str, source: str, *, by_line: bool = False) -> list[ApiKey]:
    """Keys as `name:role:secret` entries, separated by commas (CRM_API_KEYS) or one a line
    (`by_line`, a keys file: there a secret may hold a comma, and a comment line anything)."""
    keys = []
    entries = spec.splitlines() if by_line else spec.replace("\n", ",").split(",")
    for number, entry in enumerate(entries, start=1):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        parts = entry.split(":", 2)
        where = f"line {number}" if by_line else f"entry {number}"
        if len(parts) != 3 or not all(parts):
            raise KeyConfigError(f"{source}: {where} is not name:role:secret")
        name, role, secret = parts
        # A secret has 16 characters or more: one written in the place of the name or the
        # role (the parts in the wrong order) is not shown, and the key is named by its place.
        key = f"key {name!r}" if len(name) < 16 else f"the key of {where}"
        if role not in Role.__members__.values():
            said = repr(role) if len(role) < 16 else f"of {len(role)} characters"
            roles = ", ".join(Role)
            raise KeyConfigError(
                f"{source}: {key} has unknown role {said} (name:role:secret; roles: {roles})"
            )
        if len(secret) < 16:
            raise KeyConfigError(f"{source}: the secret of {key} is under 16 characters")
        if not _SECRET.fullmatch(secret):
            raise KeyConfigError(
                f"{source}: the secret of {key} is not printable ASCII without white"
                " space at its ends, so no request could present it"
            )
        keys.append(ApiKey(name, Role(role), hashlib.sha256(secret.encode()).digest()))
    return keys


def key_file_warning(file: Path | None) -> str | None:
    """What to say of a keys file other users than its owner may read or change: a warning,
    not a refusal (a mounted secret is often 0644 inside a container no other user enters)."""
    if file is None:
        return None
    try:
        mode = file.stat().st_mode & 0o777
    except OSError:
        return None  # load_keys says why it cannot be read
    if not mode & 0o077:
        return None
    return (
        f"warning: CRM_API_KEYS_FILE {file} has mode {mode:04o}: users other than its owner "
        f"may read the secrets (chmod 600 {file})"
    )


def load_keys(inline: str | None, file: Path | None) -> list[ApiKey]:
    """The keys of CRM_API_KEYS and CRM_API_KEYS_FILE; a message names the variable."""
    sources = [("CRM_API_KEYS", inline, False)] if inline else []
    if file is not None:
        try:
            sources.append(
                (f"CRM_API_KEYS_FILE {file}", file.read_text(encoding="utf-8-sig"), True)
            )
        except OSError as exc:
            raise KeyConfigError(f"CRM_API_KEYS_FILE {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise KeyConfigError(f"CRM_API_KEYS_FILE {file}: not UTF-8 text") from None
    found: list[tuple[str, ApiKey]] = []
    for source, spec, by_line in sources:
        keys = parse_keys(spec, source, by_line=by_line)
        if not keys:
            # Set and empty (a secret not mounted yet, a template left blank): without keys
            # the CRM would serve in development mode, where nothing asks for a key.
            raise KeyConfigError(
                f"{source} holds no key (name:role:secret); to serve without keys, in "
                "development mode, leave it unset"
            )
        for key in keys:
            for other_source, other in found:
                both = " and ".join(dict.fromkeys([other_source, source]))
                if other.name == key.name:
                    raise KeyConfigError(f"{both}: two API keys are named {key.name!r}")
                if other.secret_sha256 == key.secret_sha256:  # which one a request holds is unknown
                    raise KeyConfigError(
                        f"{both}: keys {other.name!r} and {key.name!r} have the same secret"
                    )
            found.append((source, key))
    return [key for _, key in found]


class KeyRing:
    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    def find(self, presented: str) -> ApiKey | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in self.keys:  # every hash is compared, so timing says nothing about which
            if hmac.compare_digest(digest, key.secret_sha256):
                found = key
        return found


class BearerKeyMiddleware(AbstractAuthenticationMiddleware):
    def __init__(self, app: Any, ring: KeyRing, **kwargs: Any) -> None:
        super().__init__(app, exclude=PUBLIC_PATHS, **kwargs)
        self.ring = ring

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]):
        header = connection.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise NotAuthorizedException(
                "Send Authorization: Bearer <key>.", headers={"WWW-Authenticate": "Bearer"}
            )
        key = self.ring.find(presented.strip())
        if key is None:
            raise NotAuthorizedException(
                "The key is not valid.", headers={"WWW-Authenticate": "Bearer"}
            )
        connection.scope["user"] = key  # known before a refusal, so its log line names it
        authorize(key, connection)
        return AuthenticationResult(user=key, auth=key.role)


# Authorization happens here, once the key is known, rather than in Litestar guards: the
# router has picked the route handler by now, and a guard would cost every request a copy of
# that handler (Litestar passes each guard its own).
PAST_READS = "past_reads_need_audit"  # in a route's `opt`: as_of and version need AUDIT


def authorize(key: ApiKey, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """A route needs READ unless it names another permission in its `opt` (the operations
    endpoints need OPERATE alone, so a monitor key reads no accounts); looking into the past
    (`as_of`, `version`, or the cursor of an `as_of` page) is the auditor's part of reading."""
    opt = connection.scope["route_handler"].opt
    _require(key, opt.get("permission", Permission.READ))
    query = connection.query_params
    if opt.get(PAST_READS) and (
        "as_of" in query or "version" in query or looks_back(query.get("cursor"))
    ):
        _require(key, Permission.AUDIT)


def _require(key: ApiKey, permission: Permission) -> None:
    if not key.allows(permission):
        raise PermissionDeniedException(f"The {key.role} role may not {permission.value} here.")


def authentication(
    keys: list[ApiKey], per_minute: int, cors_origins: tuple[str, ...] = ()
) -> list[Any]:
    """The middleware to install: authentication, then a rate limit per key; without keys, the
    refusal of what a web page could send."""
    if not keys:
        return [DefineMiddleware(LoopbackOnly, cors_origins=cors_origins)]
    middleware: list[Any] = [DefineMiddleware(BearerKeyMiddleware, ring=KeyRing(keys))]
    if per_minute > 0:
        limit = RateLimitConfig(
            rate_limit=("minute", per_minute),
            identifier_for_request=_key_name,
            exclude=PUBLIC_PATHS,
        )
        middleware.append(limit.middleware)
    return middleware


class LoopbackOnly:
    """Development mode authenticates nobody, and serves loopback alone; but a web page the
    developer opens can make the browser send requests there. Refused: a request for another
    host name (a page whose name was pointed at 127.0.0.1, DNS rebinding, would read every
    answer) and a write a page of another origin sends (a form or a fetch), unless
    CRM_CORS_ORIGINS names that origin."""

    def __init__(self, app: Any, cors_origins: tuple[str, ...]) -> None:
        from services.api.problems import problem  # which imports this module (its metrics)

        self.app = app
        self.origins = {origin.encode() for origin in cors_origins}
        self.any_origin = "*" in cors_origins  # as CORS itself lets every page read
        self.problem = problem

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = origin = None
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value
                elif name == b"origin":
                    origin = value
            if host is not None and not _loopback(host):
                raise self.problem(
                    421,
                    "Misdirected Request",
                    "Without API keys the CRM answers only requests for localhost, 127.0.0.1 or "
                    "[::1]: configure keys to serve it under another name.",
                    kind="misdirected-request",
                )
            if (
                origin is not None
                and scope["method"] not in SAFE_METHODS  # what a page reads, it is not let see
                and not self.any_origin
                and origin not in self.origins
                and not _loopback_origin(origin)
            ):
                raise self.problem(
                    403,
                    "Forbidden",
                    "Without API keys the CRM refuses what a page of another origin sends: "
                    "name the origin in CRM_CORS_ORIGINS, or configure keys.",
                    kind="cross-origin",
                )
        await self.app(scope, receive, send)


@functools.lru_cache(maxsize=256)  # a request names one of a few; reading an address is slow
def _loopback(host: bytes) -> bool:
    """Whether a Host header (a name or address, and perhaps a port) names this machine."""
    name = host.partition(b"]")[0] + b"]" if host.startswith(b"[") else host.partition(b":")[0]
    name = name.lower().removesuffix(b".")  # `localhost.` is the same name, fully qualified
    if name == b"localhost" or name.endswith(b".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(name.strip(b"[]").decode("ascii")).is_loopback
    except (ValueError, UnicodeDecodeError):
        return False


def _loopback_origin(origin: bytes) -> bool:
    scheme, sep, host = origin.partition(b"://")
    return bool(sep) and scheme in (b"http", b"https") and b"/" not in host and _loopback(host)


def _key_name(request: Request[Any, Any, Any]) -> str:
    key = caller(request)
    return f"key:{key.name}" if key else f"address:{request.client.host if request.client else ''}"


def caller(connection: ASGIConnection[Any, Any, Any, Any]) -> ApiKey | None:
    """The authenticated key, or None in development mode."""
    return connection.scope.get("user")  # type: ignore[return-value]
