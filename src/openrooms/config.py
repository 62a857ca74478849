"""One settings object, from command-line flags and OPENROOMS_* environment variables.

`serve` resolves the settings once and hands them to server workers through the environment
(`to_env` / `from_env`), so a worker process builds exactly the app its parent described.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib.util
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from openrooms.service import paging, rooms

# Well-known development keys, published like Azurite's: anyone can read them, so they protect nothing.
# Pass --access-key / OPENROOMS_ACCESS_KEY (and the secondary) for anything but local development.
DEV_ACCESS_KEY = base64.b64encode(b"openrooms-development-access-key").decode()
DEV_SECONDARY_KEY = base64.b64encode(b"openrooms-development-second-key").decode()
DEFAULT_PORT = 8765
ENV_PREFIX = "OPENROOMS_"
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
    access_key: str = DEV_ACCESS_KEY
    secondary_key: str = DEV_SECONDARY_KEY
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
    pool_size: int = 10
    clock_skew_seconds: int = 300
    # The ACS resource id (a GUID) in user ids `8:acs:<resource id>_...`; unset: generated once, kept in the store.
    resource_id: str | None = None
    # A LiveKit server for room calls: the join answer then carries a LiveKit token (all three, or none).
    livekit_url: str | None = None
    livekit_api_key: str | None = None
    livekit_api_secret: str | None = None
    max_participants_per_room: int = rooms.DEFAULT_MAX_PARTICIPANTS_PER_ROOM
    max_participants_per_request: int = rooms.DEFAULT_MAX_PARTICIPANTS_PER_REQUEST
    # GET /metrics (Prometheus text format, unauthenticated like /healthz).
    metrics: bool = True
    log_format: str = "text"  # or "json": one JSON object per log line
    # Requests per second allowed per access key and operation, per instance (0: no limit).
    rate_limit: int = 0

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


def _convert(name: str, raw: str, annotation: Any) -> Any:
    kind = str(annotation)
    if "bool" in kind:
        lowered = raw.strip().lower()
        if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a boolean (true/false)")
        return lowered in ("1", "true", "yes", "on")
    if "int" in kind:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a whole number") from None
    if "Path" in kind:
        return Path(raw).expanduser()
    return raw
