"""`openrooms`: serve the API, and manage what it serves."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from openrooms import __version__
from openrooms.cli.events import events_app
from openrooms.cli.identity import identity_app
from openrooms.cli.keys import keys_app
from openrooms.cli.migrate import migrate_app
from openrooms.cli.rooms import rooms_app
from openrooms.config import (
    BOUNDS,
    DEV_ACCESS_KEY,
    DEV_SECONDARY_KEY,
    MIN_LIVEKIT_SECRET_CHARACTERS,
    POSTGRES_URL_EXAMPLE,
    PROMETHEUS_MULTIPROC_ENV,
    InvalidSettings,
    Settings,
    event_loop,
    variable,
)

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
                 f"{POSTGRES_URL_EXAMPLE} (default: a SQLite file in --location).",
                 envvar="OPENROOMS_DATABASE_URL", show_default=False),
]
LocationOption = Annotated[
    Path | None,
    typer.Option(help="Folder for the database and certificates (default: a per-user data folder).",
                 envvar="OPENROOMS_LOCATION", show_default=False),
]


def _option(name: str, help: str, *declarations: str, default: str | None = None) -> Any:
    """The option of the setting `name`: its variable, its range and its default all taken from `Settings`."""
    shown = default if default is not None else str(getattr(_DEFAULTS, name))
    least, most = BOUNDS.get(name, (None, None))
    return typer.Option(*declarations, help=f"{help} (default: {shown}).", envvar=variable(name), min=least,
                        max=most, show_default=False)


_DEFAULTS = Settings()


@app.command()
def serve(
    host: Annotated[str | None, _option("host", "Address to listen on")] = None,
    port: Annotated[int | None, _option("port", "Port to listen on")] = None,
    location: LocationOption = None,
    in_memory: Annotated[bool, typer.Option("--in-memory", help="Keep everything in memory; lost at exit.",
                                            envvar="OPENROOMS_IN_MEMORY")] = False,
    no_tls: Annotated[bool, typer.Option("--no-tls", help="Serve plain HTTP instead of HTTPS.",
                                         envvar="OPENROOMS_NO_TLS")] = False,
    cert: Annotated[Path | None, typer.Option(help="Your own TLS certificate (PEM); needs --key.",
                                              envvar="OPENROOMS_CERT")] = None,
    key: Annotated[Path | None, typer.Option(help="Private key of --cert (PEM).", envvar="OPENROOMS_KEY")] = None,
    access_key: Annotated[str | None, _option("access_key", "Primary access key (base64)",
                                              default="the well-known development key")] = None,
    secondary_key: Annotated[str | None, _option("secondary_key", "Secondary access key (base64)",
                                                 default="the well-known development key")] = None,
    silent: Annotated[bool, typer.Option("--silent", help="No access log line per request.",
                                         envvar="OPENROOMS_SILENT")] = False,
    workers: Annotated[int | None, _option("workers", "Server worker processes")] = None,
    server: Annotated[str | None, _option("server", "HTTP server: granian or uvicorn")] = None,
    public_url: Annotated[str | None, _option("public_url", "Origin clients use when behind a proxy, "
                                              "e.g. https://rooms.example.com", default="none")] = None,
    page_size: Annotated[int | None, _option("page_size", "Default page size of listings")] = None,
    purge_grace_days: Annotated[int | None, _option("purge_grace_days", "Days an ended room stays readable by id "
                                                    "before it is purged")] = None,
    event_retention_days: Annotated[int | None, _option("event_retention_days", "Days GET /events keeps an event "
                                                        "before it is purged")] = None,
    max_body_bytes: Annotated[int | None, _option("max_body_bytes", "Largest request body accepted")] = None,
    clock_skew_seconds: Annotated[int | None, _option("clock_skew_seconds", "How far a request's x-ms-date may be "
                                                      "from the server's clock")] = None,
    database_url: DatabaseUrlOption = None,
    pool_size: Annotated[int | None, _option("pool_size", "Connections each worker keeps to PostgreSQL at most")
                         ] = None,
    database_connect_timeout: Annotated[int | None, _option("database_connect_timeout", "Seconds to wait for a "
                                                            "new PostgreSQL connection")] = None,
    database_pool_wait: Annotated[float | None, _option("database_pool_wait", "Seconds a request waits for a free "
                                                        "PostgreSQL connection before it is answered 503")] = None,
    database_call_timeout: Annotated[float | None, _option("database_call_timeout", "Seconds one call to "
                                                           "PostgreSQL may take in all before it is answered 503")
                                     ] = None,
    database_reconnect_timeout: Annotated[float | None, _option("database_reconnect_timeout", "Seconds the pool "
                                                                "keeps reconnecting in the background after "
                                                                "PostgreSQL went away")] = None,
    resource_id: Annotated[str | None, _option("resource_id", "ACS resource id (a GUID) in the ids of the users "
                                               "this server creates",
                                               default="generated once and kept in the database")] = None,
    livekit_url: Annotated[str | None, _option("livekit_url", "LiveKit server for room calls, e.g. "
                                               "wss://livekit.example.com: the join answer then carries a LiveKit "
                                               "access token", default="none")] = None,
    livekit_api_key: Annotated[str | None, _option("livekit_api_key", "API key of the LiveKit server (with "
                                                   "--livekit-url)", default="none")] = None,
    livekit_api_secret: Annotated[str | None, _option("livekit_api_secret", "API secret of the LiveKit server, "
                                                      f"{MIN_LIVEKIT_SECRET_CHARACTERS} characters or more (with "
                                                      "--livekit-url)", default="none")] = None,
    max_participants_per_room: Annotated[int | None, _option("max_participants_per_room", "Most participants a "
                                                             "room may have")] = None,
    max_participants_per_request: Annotated[int | None, _option("max_participants_per_request", "Most "
                                                                "participants one request may name")] = None,
    metrics: Annotated[bool, typer.Option("--metrics/--no-metrics", help="Serve GET /metrics (Prometheus, "
                                          "unauthenticated).", envvar="OPENROOMS_METRICS")] = True,
    log_format: Annotated[str | None, _option("log_format", "Log lines as text or json")] = None,
    rate_limit: Annotated[int | None, _option("rate_limit", "Requests per second per access key and operation, "
                                              "per instance; 0: unlimited")] = None,
) -> None:
    """Serve the ACS Rooms API (HTTPS with a local CA by default) until SIGINT or SIGTERM."""
    try:
        settings = Settings().replace(
            host=host, port=port, location=location, in_memory=in_memory or None, tls=False if no_tls else None,
            cert=cert, key=key, access_key=access_key, secondary_key=secondary_key, silent=silent or None,
            workers=workers, server=server, public_url=public_url, page_size=page_size,
            database_url=database_url, pool_size=pool_size, database_connect_timeout=database_connect_timeout,
            database_pool_wait=database_pool_wait, database_call_timeout=database_call_timeout,
            database_reconnect_timeout=database_reconnect_timeout, resource_id=resource_id,
            livekit_url=livekit_url, livekit_api_key=livekit_api_key, livekit_api_secret=livekit_api_secret,
            purge_grace_days=purge_grace_days, event_retention_days=event_retention_days,
            max_body_bytes=max_body_bytes, clock_skew_seconds=clock_skew_seconds,
            max_participants_per_room=max_participants_per_room,
            max_participants_per_request=max_participants_per_request, metrics=metrics, log_format=log_format,
            rate_limit=rate_limit,
        ).validated()
    except InvalidSettings as exc:
        raise fail(str(exc)) from None
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


def _settled_in_store(settings: Settings, access_key: str | None, secondary_key: str | None) -> Settings:
    """Settle, in one visit to the store, what every worker must agree on and the banner shows:
    - the resource id: the configured one, else the stored one (generated and stored on first start);
    - the access keys: keys given as flags (or OPENROOMS_* variables) replace the stored ones; otherwise the
      stored keys are used (rotated with `openrooms keys rotate`); with none stored, the development keys are.
    An in-memory store lives in the worker, so there the settings' own values serve."""
    import asyncio

    from openrooms.service import keys
    from openrooms.service.clock import SystemClock
    from openrooms.service.identity import new_resource_id
    from openrooms.store import open_store

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
            raise fail(f"--database-url must be a PostgreSQL URL: {POSTGRES_URL_EXAMPLE}")
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
