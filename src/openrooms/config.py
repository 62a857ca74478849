"""One settings object, from command-line flags and OPENROOMS_* environment variables.

`serve` resolves the settings once and hands them to server workers through the environment
(`to_env` / `from_env`), so a worker process builds exactly the app its parent described.
"""

from __future__ import annotations

import binascii
import dataclasses
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from openrooms.service import keys, paging, rooms
from openrooms.service.keys import DEV_ACCESS_KEY as DEV_ACCESS_KEY  # re-exported: tests and tools sign with
from openrooms.service.keys import DEV_SECONDARY_KEY as DEV_SECONDARY_KEY  # the well-known development keys
from openrooms.service.webhooks import Policy as WebhookPolicy

DEFAULT_PORT = 8765
ENV_PREFIX = "OPENROOMS_"
SERVERS = ("granian", "uvicorn")
LOG_FORMATS = ("text", "json")
POSTGRES_URL_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
POSTGRES_URL_EXAMPLE = "postgresql://user:password@host:5432/db"
MIN_ACCESS_KEY_BYTES = 16
MIN_LIVEKIT_SECRET_CHARACTERS = 32  # LiveKit refuses shorter secrets
# PostgreSQL client: connections per worker, and timeouts in seconds (libpq's connect timeout is whole seconds).
DEFAULT_POOL_SIZE = 10
DEFAULT_DATABASE_CONNECT_TIMEOUT = 3
DEFAULT_DATABASE_POOL_WAIT = 5.0
DEFAULT_DATABASE_CALL_TIMEOUT = 15.0
DEFAULT_DATABASE_RECONNECT_TIMEOUT = 5.0
# The range of each numeric setting, (least, most or None); the command line's options take theirs from here.
BOUNDS: dict[str, tuple[float, float | None]] = {
    "port": (0, 65535),
    "workers": (1, None),
    "page_size": (1, paging.MAX_PAGE_SIZE),
    "purge_grace_days": (0, None),
    "event_retention_days": (0, None),
    "max_body_bytes": (1024, None),
    "pool_size": (1, None),
    "database_connect_timeout": (1, None),
    "database_pool_wait": (0.001, None),
    "database_call_timeout": (0.001, None),
    "database_reconnect_timeout": (0.001, None),
    "clock_skew_seconds": (1, None),
    "max_participants_per_room": (1, None),
    "max_participants_per_request": (1, None),
    "rate_limit": (0, None),
    "console_session_minutes": (1, None),
    "webhook_retry_scale": (0.0001, None),
    "webhook_max_attempts": (1, None),
    "webhook_timeout": (0.01, None),
    "webhook_lease_seconds": (0.05, None),
}
# prometheus-client's multiprocess directory, read when prometheus_client is first imported: `serve` sets it
# before any worker imports it, so that every worker's counters are summed.
PROMETHEUS_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def event_loop() -> str:
    """The event loop `serve`'s workers run on: uvloop, which comes with openrooms (except on Windows), else
    asyncio's own. Named rather than left to the server's "auto", which would take any other loop that happens
    to be installed."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def default_location() -> Path:
    return Path(platformdirs.user_data_dir("openrooms", appauthor=False))


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    location: Path = field(default_factory=default_location)
    in_memory: bool = False
    tls: bool = True
    cert: Path | None = None
    key: Path | None = None
    # The keys in force (see service/keys.py for which): `serve` settles them before its workers start.
    access_key: str = DEV_ACCESS_KEY
    secondary_key: str = DEV_SECONDARY_KEY
    # Serve beyond loopback even with a well-known development key in force (a shared test lab).
    allow_development_keys: bool = False
    silent: bool = False
    workers: int = 1
    server: str = "granian"
    # The origin clients use to reach this server when it sits behind a proxy (for nextLink and signatures).
    public_url: str | None = None
    page_size: int = paging.DEFAULT_PAGE_SIZE
    purge_grace_days: int = rooms.DEFAULT_PURGE_GRACE_DAYS
    # Days the event log keeps an event (GET /events), purged with the ended rooms.
    event_retention_days: int = 7
    max_body_bytes: int = 1024 * 1024
    # PostgreSQL (postgresql://...) shared by any number of instances; unset: the embedded SQLite file.
    database_url: str | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    database_connect_timeout: int = DEFAULT_DATABASE_CONNECT_TIMEOUT
    database_pool_wait: float = DEFAULT_DATABASE_POOL_WAIT
    database_call_timeout: float = DEFAULT_DATABASE_CALL_TIMEOUT
    database_reconnect_timeout: float = DEFAULT_DATABASE_RECONNECT_TIMEOUT
    clock_skew_seconds: int = 300
    # The ACS resource id (a GUID) in user ids `8:acs:<resource id>_...`; unset: generated once, kept in the store.
    resource_id: str | None = None
    # A LiveKit server for room calls: the join answer then carries a LiveKit token (all three, or none).
    livekit_url: str | None = None
    livekit_api_key: str | None = None
    livekit_api_secret: str | None = None
    # Janus servers (WebSocket URLs, comma-separated) that hold room calls (openrooms.calls), and their API secret.
    janus_url: str | None = None
    janus_api_secret: str | None = None
    max_participants_per_room: int = rooms.DEFAULT_MAX_PARTICIPANTS_PER_ROOM
    max_participants_per_request: int = rooms.DEFAULT_MAX_PARTICIPANTS_PER_REQUEST
    # GET /metrics (Prometheus text format, unauthenticated like /healthz).
    metrics: bool = True
    log_format: str = "text"  # or "json": one JSON object per log line
    # Requests per second allowed per access key and operation, per instance (0: no limit).
    rate_limit: int = 0
    # Entra ID / OpenID Connect sign-in (Authorization: Bearer) beside the access key; unset: access key only.
    oidc_issuer: str | None = None
    oidc_audience: str = "https://communication.azure.com"
    oidc_teams_audience: str = "https://auth.msft.communication.azure.com"
    oidc_allowed_app_ids: str | None = None  # comma-separated; matched against the `appid` or `azp` claim
    oidc_allowed_object_ids: str | None = None  # comma-separated; matched against the `oid` claim
    oidc_required_role: str | None = None
    # Development only: accept well-formed, unexpired tokens of the issuer and audience without their signature.
    oidc_insecure_skip_signature: bool = False
    # Webhook delivery (docs/events.md): whether this process dispatches, Event Grid's retry schedule and time to
    # live scaled by a factor, the attempts before a dead letter, a receiver's time to answer, the lease of a queue.
    webhooks: bool = True
    webhook_retry_scale: float = WebhookPolicy.retry_scale
    webhook_max_attempts: int = WebhookPolicy.max_attempts
    webhook_timeout: float = WebhookPolicy.timeout_seconds
    webhook_lease_seconds: float = WebhookPolicy.lease_seconds
    # Hosts a subscription's endpoint may name (comma-separated); unset: any.
    webhook_hosts: str | None = None
    # The web console at /console/ (openrooms.console); unset: served when `host` is a loopback address.
    console: bool | None = None
    # Minutes a console sign-in lasts.
    console_session_minutes: int = 60
    # Console sign-in with the --oidc-issuer (docs/console.md): the console's client registered there (a
    # confidential client with its secret, else a public client: PKCE alone), its redirect URI when a proxy hides
    # the console's origin (else from each request, or --public-url), and who may sign in: a role in the ID token's
    # `roles`, listed `oid`/`sub` values (comma-separated), or explicitly anyone the issuer signs in.
    console_oidc_client_id: str | None = None
    console_oidc_client_secret: str | None = None
    console_oidc_redirect_uri: str | None = None
    console_oidc_required_role: str | None = None
    console_oidc_allowed_subjects: str | None = None
    console_oidc_allow_any_user: bool = False

    @property
    def console_served(self) -> bool:
        """Whether /console/ is served: as set, else only when listening on a loopback address."""
        return self.console if self.console is not None else is_loopback(self.host)

    @property
    def database_file(self) -> Path:
        """Where the embedded database lives under `location` (unused with --in-memory)."""
        return self.location / "openrooms.db"

    @property
    def database_path(self) -> Path | None:
        return None if self.in_memory else self.database_file

    @property
    def certs_dir(self) -> Path:
        return self.location / "certs"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def endpoint(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return self.public_url or f"{self.scheme}://{host}:{self.port}/"

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.endpoint};accesskey={self.access_key}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def validated(self) -> Settings:
        """These settings, checked as a whole (and the resource id in lower case, as ACS writes it); raises
        `InvalidSettings` naming the setting at fault. `serve` checks them before it starts anything, and each
        server worker checks them again as it reads them from the environment."""
        for name in ("access_key", "secondary_key"):
            try:
                decoded = keys.decode_key(getattr(self, name))
            except (binascii.Error, ValueError):
                raise InvalidSettings(f"{{{name}}} is not valid base64.") from None
            if len(decoded) < MIN_ACCESS_KEY_BYTES:
                raise InvalidSettings(f"{{{name}}} must decode to at least {MIN_ACCESS_KEY_BYTES} bytes.")
        for name, (least, most) in BOUNDS.items():
            value = getattr(self, name)
            if value < least or (most is not None and value > most):
                within = f"at least {least}" if most is None else f"between {least} and {most}"
                raise InvalidSettings(f"{{{name}}} is {_literal(value)}; it must be {within}.")
        if (self.cert is None) != (self.key is None):
            raise InvalidSettings("{cert} and {key} go together.")
        if self.cert is not None and not self.tls:
            raise InvalidSettings("{cert}/{key} and {tls} contradict each other.")
        for path in (self.cert, self.key):
            if path is not None and not path.is_file():
                raise InvalidSettings(f"{_literal(path)} does not exist.")
        if self.database_url:
            if self.in_memory:
                raise InvalidSettings("{in_memory} and {database_url} contradict each other.")
            if not is_postgres_url(self.database_url):
                raise InvalidSettings(f"{{database_url}} must be a PostgreSQL URL: {POSTGRES_URL_EXAMPLE}")
        if self.in_memory and self.workers > 1:
            raise InvalidSettings("{in_memory} keeps data in one process; it cannot be shared by several {workers}.")
        if self.server not in SERVERS:
            raise InvalidSettings(f"{{server}} is {' or '.join(SERVERS)}.")
        if self.log_format not in LOG_FORMATS:
            raise InvalidSettings(f"{{log_format}} is {' or '.join(LOG_FORMATS)}.")
        checked = self
        if self.resource_id is not None:
            from openrooms.service.identity import check_resource_id  # with the token machinery: only when needed

            try:
                checked = self.replace(resource_id=check_resource_id(self.resource_id))
            except ValueError as exc:
                raise InvalidSettings(f"{{resource_id}}: {_literal(exc)}.") from None
        livekit = (self.livekit_url, self.livekit_api_key, self.livekit_api_secret)
        if any(livekit) and not all(livekit):
            raise InvalidSettings("{livekit_url}, {livekit_api_key} and {livekit_api_secret} go together.")
        if self.livekit_api_secret is not None and len(self.livekit_api_secret) < MIN_LIVEKIT_SECRET_CHARACTERS:
            raise InvalidSettings(f"{{livekit_api_secret}} must be at least {MIN_LIVEKIT_SECRET_CHARACTERS} "
                                  "characters (LiveKit refuses shorter secrets).")
        if self.oidc_issuer is None and (self.oidc_allowed_app_ids or self.oidc_allowed_object_ids
                                         or self.oidc_required_role or self.oidc_insecure_skip_signature):
            raise InvalidSettings("{oidc_allowed_app_ids}, {oidc_allowed_object_ids}, {oidc_required_role} and "
                                  "{oidc_insecure_skip_signature} need {oidc_issuer}.")
        if self.webhook_lease_seconds <= self.webhook_timeout:
            raise InvalidSettings("{webhook_lease_seconds} must be longer than {webhook_timeout}: a queue's lease "
                                  "outlasts a delivery.")
        if self.oidc_issuer is not None and urlsplit(self.oidc_issuer).scheme not in ("https", "http"):
            raise InvalidSettings("{oidc_issuer} must be an http(s) URL, e.g. https://sts.windows.net/<tenant id>/")
        self._check_console_oidc()
        return checked

    def _check_console_oidc(self) -> None:
        who = (self.console_oidc_required_role, self.console_oidc_allowed_subjects)
        if self.console_oidc_client_id is None:
            if (self.console_oidc_client_secret or self.console_oidc_redirect_uri or any(who)
                    or self.console_oidc_allow_any_user):
                raise InvalidSettings("{console_oidc_client_secret}, {console_oidc_redirect_uri}, "
                                      "{console_oidc_required_role}, {console_oidc_allowed_subjects} and "
                                      "{console_oidc_allow_any_user} need {console_oidc_client_id}.")
            return
        if self.oidc_issuer is None:
            raise InvalidSettings("{console_oidc_client_id} needs {oidc_issuer}: the console signs people in with "
                                  "that issuer.")
        if not any(who) and not self.console_oidc_allow_any_user:
            raise InvalidSettings("{console_oidc_client_id} needs to know who may sign in to the console: "
                                  "{console_oidc_required_role}, {console_oidc_allowed_subjects}, or (anyone the "
                                  "issuer signs in) {console_oidc_allow_any_user}.")
        if any(who) and self.console_oidc_allow_any_user:
            raise InvalidSettings("{console_oidc_allow_any_user} contradicts {console_oidc_required_role} and "
                                  "{console_oidc_allowed_subjects}.")
        redirect = self.console_oidc_redirect_uri
        if redirect is not None and (urlsplit(redirect).scheme not in ("https", "http") or not urlsplit(
                redirect).hostname):
            raise InvalidSettings("{console_oidc_redirect_uri} must be an http(s) URL, e.g. "
                                  "https://rooms.example.com/console/sign-in/oidc/callback")

    def to_env(self) -> dict[str, str]:
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                env[ENV_PREFIX + f.name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
        return env

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        environ = dict(os.environ) if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw, f.type)
        return cls(**values)


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (a host name other than localhost may resolve to anything)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme in POSTGRES_URL_SCHEMES


def flag(name: str) -> str:
    """The command-line option of the setting `name`."""
    return {"tls": "--no-tls", "metrics": "--metrics/--no-metrics", "webhooks": "--webhooks/--no-webhooks",
            "oidc_allowed_app_ids": "--oidc-allowed-app-id",
            "oidc_allowed_object_ids": "--oidc-allowed-object-id",
            "console_oidc_allowed_subjects": "--console-oidc-allowed-subject"}.get(name, "--" + name.replace("_", "-"))


def variable(name: str) -> str:
    """The environment variable of the setting `name` (as `serve` reads it, and as its workers do)."""
    return ENV_PREFIX + name.upper()


class InvalidSettings(ValueError):
    """A setting's value, or a combination of settings, that cannot be served. The message names the settings
    by their options (`str(error)`) or by their environment variables (`error.naming(variable)`)."""

    def __init__(self, template: str) -> None:
        self.template = template  # settings named as `{field}`
        super().__init__(self.naming(flag))

    def naming(self, name: Callable[[str], str]) -> str:
        return self.template.format_map(_Names(name))


def _literal(value: object) -> str:
    """A value shown in an `InvalidSettings` template, as itself."""
    return str(value).replace("{", "{{").replace("}", "}}")


class _Names(dict[str, str]):
    def __init__(self, name: Callable[[str], str]) -> None:
        super().__init__()
        self._name = name

    def __missing__(self, key: str) -> str:
        return self._name(key)


def _convert(name: str, raw: str, annotation: Any) -> Any:
    kind = str(annotation)
    if "bool" in kind:
        lowered = raw.strip().lower()
        if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a boolean (true/false)")
        return lowered in ("1", "true", "yes", "on")
    if "float" in kind:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a number") from None
    if "int" in kind:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a whole number") from None
    if "Path" in kind:
        return Path(raw).expanduser()
    return raw
