"""`openrooms`: serve the API, and manage what it serves."""

from __future__ import annotations

import binascii
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from openrooms import __version__
from openrooms.cli.events import events_app
from openrooms.cli.identity import identity_app
from openrooms.cli.keys import keys_app
from openrooms.cli.migrate import migrate_app
from openrooms.cli.rooms import rooms_app
from openrooms.config import DEV_ACCESS_KEY, DEV_SECONDARY_KEY, PROMETHEUS_MULTIPROC_ENV, Settings, event_loop

app = typer.Typer(
    name="openrooms",
    help="A self-hosted Azure Communication Services Rooms and Identity API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(rooms_app, name="rooms")
app.add_typer(identity_app, name="identity")
app.add_typer(keys_app, name="keys")
app.add_typer(migrate_app, name="migrate")
app.add_typer(events_app, name="events")


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"openrooms {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    pass


DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(help="PostgreSQL to keep everything in, shared by any number of instances: "
                 "postgresql://user:password@host:5432/db (default: a SQLite file in --location).",
                 envvar="OPENROOMS_DATABASE_URL", show_default=False),
]
LocationOption = Annotated[
    Path | None,
    typer.Option(help="Folder for the database and certificates (default: a per-user data folder).",
                 envvar="OPENROOMS_LOCATION", show_default=False),
]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: 127.0.0.1).",
                                             envvar="OPENROOMS_HOST", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: 8765).", envvar="OPENROOMS_PORT",
                                             show_default=False)] = None,
    location: LocationOption = None,
    in_memory: Annotated[bool, typer.Option("--in-memory", help="Keep everything in memory; lost at exit.",
                                            envvar="OPENROOMS_IN_MEMORY")] = False,
    no_tls: Annotated[bool, typer.Option("--no-tls", help="Serve plain HTTP instead of HTTPS.",
                                         envvar="OPENROOMS_NO_TLS")] = False,
    cert: Annotated[Path | None, typer.Option(help="Your own TLS certificate (PEM); needs --key.",
                                              envvar="OPENROOMS_CERT")] = None,
    key: Annotated[Path | None, typer.Option(help="Private key of --cert (PEM).", envvar="OPENROOMS_KEY")] = None,
    access_key: Annotated[str | None, typer.Option(help="Primary access key (base64) (default: the well-known "
                                                   "development key).", envvar="OPENROOMS_ACCESS_KEY",
                                                   show_default=False)] = None,
    secondary_key: Annotated[str | None, typer.Option(help="Secondary access key (base64).",
                                                      envvar="OPENROOMS_SECONDARY_KEY", show_default=False)] = None,
    silent: Annotated[bool, typer.Option("--silent", help="No access log line per request.",
                                         envvar="OPENROOMS_SILENT")] = False,
    workers: Annotated[int | None, typer.Option(help="Server worker processes (default: 1).",
                                                envvar="OPENROOMS_WORKERS", min=1, show_default=False)] = None,
    server: Annotated[str | None, typer.Option(help="HTTP server: granian or uvicorn (default: granian).",
                                               envvar="OPENROOMS_SERVER", show_default=False)] = None,
    public_url: Annotated[str | None, typer.Option(help="Origin clients use when behind a proxy, "
                                                   "e.g. https://rooms.example.com.",
                                                   envvar="OPENROOMS_PUBLIC_URL")] = None,
    page_size: Annotated[int | None, typer.Option(help="Default page size of listings (default: 100).",
                                                  envvar="OPENROOMS_PAGE_SIZE", min=1, max=1000,
                                                  show_default=False)] = None,
    purge_grace_days: Annotated[int | None, typer.Option(help="Days an ended room stays readable by id before it "
                                                         "is purged (default: 30).",
                                                         envvar="OPENROOMS_PURGE_GRACE_DAYS", min=0,
                                                         show_default=False)] = None,
    event_retention_days: Annotated[int | None, typer.Option(help="Days GET /events keeps an event before it is "
                                                             "purged (default: 7).",
                                                             envvar="OPENROOMS_EVENT_RETENTION_DAYS", min=0,
                                                             show_default=False)] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="Largest request body accepted (default: 1048576).",
                                                       envvar="OPENROOMS_MAX_BODY_BYTES", min=1024,
                                                       show_default=False)] = None,
    clock_skew_seconds: Annotated[int | None, typer.Option(help="How far a request's x-ms-date may be from the "
                                                           "server's clock (default: 300).",
                                                           envvar="OPENROOMS_CLOCK_SKEW_SECONDS", min=1,
                                                           show_default=False)] = None,
    database_url: DatabaseUrlOption = None,
    pool_size: Annotated[int | None, typer.Option(help="Connections each worker keeps to PostgreSQL at most "
                                                  "(default: 10).", envvar="OPENROOMS_POOL_SIZE", min=1,
                                                  show_default=False)] = None,
    resource_id: Annotated[str | None, typer.Option(help="ACS resource id (a GUID) in the ids of the users this "
                                                    "server creates (default: generated once and kept in the "
                                                    "database).", envvar="OPENROOMS_RESOURCE_ID",
                                                    show_default=False)] = None,
    livekit_url: Annotated[str | None, typer.Option(help="LiveKit server for room calls, e.g. wss://livekit.example.com:"
                                                    " the join answer then carries a LiveKit access token.",
                                                    envvar="OPENROOMS_LIVEKIT_URL", show_default=False)] = None,
    livekit_api_key: Annotated[str | None, typer.Option(help="API key of the LiveKit server (with --livekit-url).",
                                                        envvar="OPENROOMS_LIVEKIT_API_KEY",
                                                        show_default=False)] = None,
    livekit_api_secret: Annotated[str | None, typer.Option(help="API secret of the LiveKit server, 32 characters or "
                                                           "more (with --livekit-url).",
                                                           envvar="OPENROOMS_LIVEKIT_API_SECRET",
                                                           show_default=False)] = None,
    max_participants_per_room: Annotated[int | None, typer.Option(help="Most participants a room may have "
                                                                  "(default: 10000).", min=1, show_default=False,
                                                                  envvar="OPENROOMS_MAX_PARTICIPANTS_PER_ROOM")] = None,
    max_participants_per_request: Annotated[int | None, typer.Option(help="Most participants one request may "
                                                                     "name (default: 1000).", min=1,
                                                                     show_default=False,
                                                                     envvar="OPENROOMS_MAX_PARTICIPANTS_PER_REQUEST")
                                            ] = None,
    metrics: Annotated[bool, typer.Option("--metrics/--no-metrics", help="Serve GET /metrics (Prometheus, "
                                          "unauthenticated).", envvar="OPENROOMS_METRICS")] = True,
    log_format: Annotated[str | None, typer.Option(help="Log lines as text or json (default: text).",
                                                   envvar="OPENROOMS_LOG_FORMAT", show_default=False)] = None,
    rate_limit: Annotated[int | None, typer.Option(help="Requests per second per access key and operation, per "
                                                   "instance; 0: unlimited (default: 0).", min=0,
                                                   envvar="OPENROOMS_RATE_LIMIT", show_default=False)] = None,
) -> None:
    """Serve the ACS Rooms API (HTTPS with a local CA by default) until SIGINT or SIGTERM."""
    settings = Settings().replace(
        host=host, port=port, location=location, in_memory=in_memory or None, tls=False if no_tls else None,
        cert=cert, key=key, access_key=access_key, secondary_key=secondary_key, silent=silent or None,
        workers=workers, server=server, public_url=public_url, page_size=page_size,
        database_url=database_url, pool_size=pool_size, resource_id=resource_id,
        livekit_url=livekit_url, livekit_api_key=livekit_api_key, livekit_api_secret=livekit_api_secret,
        purge_grace_days=purge_grace_days, event_retention_days=event_retention_days, max_body_bytes=max_body_bytes,
        clock_skew_seconds=clock_skew_seconds,
        max_participants_per_room=max_participants_per_room,
        max_participants_per_request=max_participants_per_request, metrics=metrics, log_format=log_format,
        rate_limit=rate_limit,
    )
    settings = _checked(settings)
    if settings.metrics:
        _share_metrics_between_workers()
    if settings.database_url:
        _check_postgres_schema(settings.database_url)
    elif not settings.in_memory:
        import sqlite3

        from openrooms.store.sqlite import SchemaMismatch, SqliteStore

        try:
            SqliteStore.upgrade(settings.database_file)
        except (SchemaMismatch, OSError, sqlite3.Error) as exc:  # e.g. a read-only or full location
            raise fail(f"cannot open the database at {settings.database_path}: {exc}") from None
    settings = _settled_in_store(settings, access_key, secondary_key)
    ca = None
    if settings.tls and settings.cert is None:
        from openrooms.tls import ensure_certificates

        paths = ensure_certificates(settings.certs_dir, _extra_hosts(settings))
        settings = settings.replace(cert=paths.cert, key=paths.key)
        ca = paths.ca
    _print_banner(settings, ca)
    os.environ.update(settings.to_env())
    _run_server(settings)


def _checked(settings: Settings) -> Settings:
    from openrooms.http.auth import decode_key

    for name, value in (("--access-key", settings.access_key), ("--secondary-key", settings.secondary_key)):
        try:
            if len(decode_key(value)) < 16:
                raise fail(f"{name} must decode to at least 16 bytes.")
        except (binascii.Error, ValueError):
            raise fail(f"{name} is not valid base64.") from None
    if (settings.cert is None) != (settings.key is None):
        raise fail("--cert and --key go together.")
    if settings.cert is not None and not settings.tls:
        raise fail("--cert/--key and --no-tls contradict each other.")
    for path in (settings.cert, settings.key):
        if path is not None and not path.is_file():
            raise fail(f"{path} does not exist.")
    if settings.database_url:
        from openrooms.store.postgres import is_postgres_url

        if settings.in_memory:
            raise fail("--in-memory and --database-url contradict each other.")
        if not is_postgres_url(settings.database_url):
            raise fail("--database-url must be a PostgreSQL URL: postgresql://user:password@host:5432/db")
    if settings.in_memory and settings.workers > 1:
        raise fail("--in-memory keeps data in one process; it cannot be shared by several --workers.")
    if settings.server not in ("granian", "uvicorn"):
        raise fail("--server is granian or uvicorn.")
    if settings.log_format not in ("text", "json"):
        raise fail("--log-format is text or json.")
    if settings.resource_id is not None:
        from openrooms.service.identity import check_resource_id

        try:
            settings = settings.replace(resource_id=check_resource_id(settings.resource_id))
        except ValueError as exc:
            raise fail(f"--resource-id: {exc}.") from None
    livekit = (settings.livekit_url, settings.livekit_api_key, settings.livekit_api_secret)
    if any(livekit) and not all(livekit):
        raise fail("--livekit-url, --livekit-api-key and --livekit-api-secret go together.")
    if settings.livekit_api_secret is not None and len(settings.livekit_api_secret) < 32:
        raise fail("--livekit-api-secret must be at least 32 characters (LiveKit refuses shorter secrets).")
    return settings


def _settled_in_store(settings: Settings, access_key: str | None, secondary_key: str | None) -> Settings:
    """Settle, in one visit to the store, what every worker must agree on and the banner shows:
    - the resource id: the configured one, else the stored one (generated and stored on first start);
    - the access keys: keys given as flags (or OPENROOMS_* variables) replace the stored ones; otherwise the
      stored keys are used (rotated with `openrooms keys rotate`); with none stored, the development keys are.
    An in-memory store lives in the worker, so there the settings' own values serve."""
    import asyncio

    from openrooms.http.app import open_store
    from openrooms.service import keys
    from openrooms.service.clock import SystemClock
    from openrooms.service.identity import new_resource_id

    if settings.in_memory:
        return settings if settings.resource_id is not None else settings.replace(resource_id=new_resource_id())
    overrides = {name: value for name, value in (("primary", access_key), ("secondary", secondary_key)) if value}
    defaults = {"primary": settings.access_key, "secondary": settings.secondary_key}

    async def settled() -> Settings:
        store = open_store(settings, migrate_schema=False)
        try:
            resource_id = settings.resource_id or await store.ensure_resource_id(new_resource_id())
            stored = await keys.seed(store, defaults, overrides, SystemClock().now())
        finally:
            await store.close()
        return settings.replace(
            resource_id=resource_id, access_key=stored["primary"], secondary_key=stored["secondary"]
        )

    return asyncio.run(settled())


def _share_metrics_between_workers() -> None:
    """Point every worker at one directory for prometheus-client's multiprocess mode (set before anything
    imports prometheus_client); a fresh one per run, removed at exit, unless the operator chose one."""
    import atexit
    import shutil
    import tempfile

    if os.environ.get(PROMETHEUS_MULTIPROC_ENV):
        return
    directory = tempfile.mkdtemp(prefix="openrooms-metrics-")
    os.environ[PROMETHEUS_MULTIPROC_ENV] = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)


def _check_postgres_schema(url: str) -> None:
    from openrooms.store import postgres

    try:
        postgres.check_schema(url)
    except postgres.SchemaMismatch as exc:
        raise fail(f"{postgres.redacted(url)}: {exc}") from None
    except postgres.DatabaseError as exc:
        raise fail(f"cannot reach the database at {postgres.redacted(url)}: {exc}") from None


def _extra_hosts(settings: Settings) -> tuple[str, ...]:
    if settings.host in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::"):
        return ()
    return (settings.host,)


def _print_banner(settings: Settings, ca: Path | None) -> None:
    lines = [
        f"openrooms {__version__}: Azure Communication Services Rooms API",
        f"  endpoint           {settings.endpoint}",
        f"  connection string  {settings.connection_string}",
    ]
    if ca is not None:
        lines += [
            f"  CA certificate     {ca}",
            f"                     Python: connection_verify=\"{ca}\"; Node: NODE_EXTRA_CA_CERTS={ca}; "
            f"requests: REQUESTS_CA_BUNDLE={ca}",
        ]
    elif settings.cert is not None:
        lines.append(f"  TLS certificate    {settings.cert}")
    if settings.database_url:
        from openrooms.store.postgres import redacted

        lines.append(f"  database           {redacted(settings.database_url)} (pool of {settings.pool_size})")
    else:
        lines.append(f"  database           {settings.database_path or 'in memory (lost at exit)'}")
    lines.append(f"  resource id        {settings.resource_id}  (users are 8:acs:{settings.resource_id}_...)")
    workers = f"{settings.workers} worker{'s' if settings.workers != 1 else ''}"
    lines.append(f"  server             {settings.server}, {workers}, event loop {event_loop()}")
    if settings.livekit_url:
        lines.append(f"  LiveKit            {settings.livekit_url} (join answers carry LiveKit tokens)")
    if settings.access_key == DEV_ACCESS_KEY or settings.secondary_key == DEV_SECONDARY_KEY:
        lines.append("  access keys        the well-known development keys: set --access-key and --secondary-key "
                     "for anything shared")
    print("\n".join(lines), flush=True)


def _run_server(settings: Settings) -> None:
    target = "openrooms.http.app:app_from_env"
    if settings.server == "uvicorn":
        import uvicorn

        uvicorn.run(
            target, factory=True, host=settings.host, port=settings.port, workers=settings.workers,
            ssl_certfile=str(settings.cert) if settings.tls else None,
            ssl_keyfile=str(settings.key) if settings.tls else None,
            access_log=False, log_level="warning", server_header=False, loop=event_loop(),
        )
        return
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    Server(
        target, address=settings.host, port=settings.port, interface=Interfaces.ASGI, workers=settings.workers,
        factory=True, loop=Loops(event_loop()), log_level=LogLevels.warning, log_access=False,
        ssl_cert=settings.cert if settings.tls else None, ssl_key=settings.key if settings.tls else None,
    ).serve()


@db_app.command("upgrade")
def db_upgrade(location: LocationOption = None, database_url: DatabaseUrlOption = None) -> None:
    """Create the database or bring its schema up to this version's."""
    if database_url:
        from openrooms.store import postgres

        if not postgres.is_postgres_url(database_url):
            raise fail("--database-url must be a PostgreSQL URL: postgresql://user:password@host:5432/db")
        try:
            revision = postgres.upgrade(database_url)
        except postgres.DatabaseError as exc:
            raise fail(f"cannot upgrade the database at {postgres.redacted(database_url)}: {exc}") from None
        typer.echo(f"{postgres.redacted(database_url)}: schema up to date (revision {revision})")
        return
    from openrooms.store.sqlite import SqliteStore

    settings = Settings().replace(location=location)
    SqliteStore.upgrade(settings.database_file)
    typer.echo(f"{settings.database_file}: schema up to date")


@app.command()
def openapi() -> None:
    """Print the OpenAPI document of the API openrooms serves."""
    from openrooms.http.openapi import document

    json.dump(document(), sys.stdout, indent=2)
    sys.stdout.write("\n")


def main() -> None:
    app()
