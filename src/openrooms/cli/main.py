"""`openrooms`: serve the API, and manage what it serves."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from openrooms import __version__
from openrooms.cli.events import events_app
from openrooms.cli.identity import identity_app
from openrooms.cli.keys import keys_app
from openrooms.cli.migrate import migrate_app
from openrooms.cli.rooms import rooms_app
from openrooms.cli.subscriptions import subscriptions_app
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

if TYPE_CHECKING:
    from openrooms.service.keys import KeyInForce

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
events_app.add_typer(subscriptions_app, name="subscriptions")


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
                                              default="the stored key; on a first start, the well-known "
                                              "development key, unless --secondary-key is given")] = None,
    secondary_key: Annotated[str | None, _option("secondary_key", "Secondary access key (base64)",
                                                 default="the stored key; with --access-key, a new random key, "
                                                 "stored")] = None,
    allow_development_keys: Annotated[bool, typer.Option("--allow-development-keys",
                                                         help="Serve beyond loopback (--host) even with the "
                                                         "well-known development keys: a shared test lab only.",
                                                         envvar="OPENROOMS_ALLOW_DEVELOPMENT_KEYS")] = False,
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
    janus_url: Annotated[str | None, _option("janus_url", "Janus WebRTC Server(s) for room calls: WebSocket URLs "
                                             "of their JSON API, comma-separated, e.g. ws://127.0.0.1:8188/",
                                             default="none")] = None,
    janus_api_secret: Annotated[str | None, _option("janus_api_secret", "The Janus servers' api_secret (with "
                                                    "--janus-url)", default="none")] = None,
    max_participants_per_room: Annotated[int | None, _option("max_participants_per_room", "Most participants a "
                                                             "room may have")] = None,
    max_participants_per_request: Annotated[int | None, _option("max_participants_per_request", "Most "
                                                                "participants one request may name")] = None,
    metrics: Annotated[bool, typer.Option("--metrics/--no-metrics", help="Serve GET /metrics (Prometheus, "
                                          "unauthenticated).", envvar="OPENROOMS_METRICS")] = True,
    log_format: Annotated[str | None, _option("log_format", "Log lines as text or json")] = None,
    rate_limit: Annotated[int | None, _option("rate_limit", "Requests per second per access key and operation, "
                                              "per instance; 0: unlimited")] = None,
    oidc_issuer: Annotated[str | None, _option("oidc_issuer", "OpenID Connect issuer (Entra ID, Keycloak) whose "
                                               "Bearer tokens the access-key operations accept beside HMAC, e.g. "
                                               "https://sts.windows.net/<tenant id>/", default="none")] = None,
    oidc_audience: Annotated[str | None, _option("oidc_audience", "Audience (aud) the Bearer tokens must name")
                             ] = None,
    oidc_teams_audience: Annotated[str | None, _option("oidc_teams_audience", "Audience of the Teams users' tokens "
                                                       "exchanged by POST /teamsUser/:exchangeAccessToken")] = None,
    oidc_allowed_app_id: Annotated[list[str] | None, _option("oidc_allowed_app_ids", "Application (client) id "
                                                             "allowed to sign in (appid or azp claim); repeatable",
                                                             "--oidc-allowed-app-id", default="any")] = None,
    oidc_allowed_object_id: Annotated[list[str] | None, _option("oidc_allowed_object_ids", "Object id allowed to "
                                                                "sign in (oid claim); repeatable",
                                                                "--oidc-allowed-object-id", default="any")] = None,
    oidc_required_role: Annotated[str | None, _option("oidc_required_role", "Role (roles claim) a Bearer token "
                                                      "must carry", default="none")] = None,
    oidc_insecure_skip_signature: Annotated[bool, typer.Option("--oidc-insecure-skip-signature",
                                                               help="Development only: accept Bearer tokens "
                                                               "without checking their signature.",
                                                               envvar="OPENROOMS_OIDC_INSECURE_SKIP_SIGNATURE")
                                            ] = False,
    console: Annotated[bool | None, typer.Option("--console/--no-console", help="Serve the web console at "
                                                 "/console/ (default: when --host is a loopback address).",
                                                 envvar="OPENROOMS_CONSOLE", show_default=False)] = None,
    console_session_minutes: Annotated[int | None, _option("console_session_minutes", "Minutes a console sign-in "
                                                           "lasts")] = None,
    console_oidc_client_id: Annotated[str | None, _option("console_oidc_client_id", "Client id of the console at "
                                                          "the --oidc-issuer: offers sign-in with the issuer",
                                                          default="none")] = None,
    console_oidc_client_secret: Annotated[str | None, _option("console_oidc_client_secret", "Secret of that "
                                                              "client when it is confidential", default="none: a "
                                                              "public client, PKCE alone")] = None,
    console_oidc_redirect_uri: Annotated[str | None, _option("console_oidc_redirect_uri", "Redirect URI registered "
                                                             "for that client, when a proxy hides the console's "
                                                             "origin", default="<origin>/console/sign-in/oidc/"
                                                             "callback")] = None,
    console_oidc_required_role: Annotated[str | None, _option("console_oidc_required_role", "Role (roles claim of "
                                                              "the ID token) that lets a person sign in to the "
                                                              "console", default="none")] = None,
    console_oidc_allowed_subject: Annotated[list[str] | None, _option("console_oidc_allowed_subjects", "oid or sub "
                                                                      "of a person who may sign in to the console; "
                                                                      "repeatable",
                                                                      "--console-oidc-allowed-subject",
                                                                      default="none")] = None,
    console_oidc_allow_any_user: Annotated[bool, typer.Option("--console-oidc-allow-any-user", help="Let anyone "
                                                              "the --oidc-issuer signs in use the console.",
                                                              envvar="OPENROOMS_CONSOLE_OIDC_ALLOW_ANY_USER")
                                           ] = False,
    webhooks: Annotated[bool, typer.Option("--webhooks/--no-webhooks", help="Deliver the webhook subscriptions' "
                                           "events from this instance.", envvar="OPENROOMS_WEBHOOKS")] = True,
    webhook_retry_scale: Annotated[float | None, _option("webhook_retry_scale", "Factor on Event Grid's retry "
                                                         "schedule and the 24 h time to live of webhook deliveries")
                                   ] = None,
    webhook_max_attempts: Annotated[int | None, _option("webhook_max_attempts", "Attempts at a webhook delivery "
                                                        "before it is dead-lettered")] = None,
    webhook_timeout: Annotated[float | None, _option("webhook_timeout", "Seconds a webhook receiver has to answer")
                               ] = None,
    webhook_lease_seconds: Annotated[float | None, _option("webhook_lease_seconds", "Seconds an instance holds a "
                                                           "webhook queue before another may take it over")] = None,
    webhook_hosts: Annotated[str | None, _option("webhook_hosts", "Hosts webhook endpoints may name, "
                                                 "comma-separated", default="any")] = None,
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
            janus_url=janus_url, janus_api_secret=janus_api_secret,
            purge_grace_days=purge_grace_days, event_retention_days=event_retention_days,
            max_body_bytes=max_body_bytes, clock_skew_seconds=clock_skew_seconds,
            max_participants_per_room=max_participants_per_room,
            max_participants_per_request=max_participants_per_request, metrics=metrics, log_format=log_format,
            rate_limit=rate_limit, allow_development_keys=allow_development_keys or None,
            oidc_issuer=oidc_issuer, oidc_audience=oidc_audience,
            oidc_teams_audience=oidc_teams_audience, oidc_required_role=oidc_required_role,
            oidc_allowed_app_ids=",".join(oidc_allowed_app_id) if oidc_allowed_app_id else None,
            oidc_allowed_object_ids=",".join(oidc_allowed_object_id) if oidc_allowed_object_id else None,
            oidc_insecure_skip_signature=oidc_insecure_skip_signature or None,
            console=console, console_session_minutes=console_session_minutes,
            console_oidc_client_id=console_oidc_client_id, console_oidc_client_secret=console_oidc_client_secret,
            console_oidc_redirect_uri=console_oidc_redirect_uri, console_oidc_required_role=console_oidc_required_role,
            console_oidc_allowed_subjects=",".join(console_oidc_allowed_subject) if console_oidc_allowed_subject
            else None, console_oidc_allow_any_user=console_oidc_allow_any_user or None,
            webhooks=webhooks, webhook_retry_scale=webhook_retry_scale, webhook_max_attempts=webhook_max_attempts,
            webhook_timeout=webhook_timeout, webhook_lease_seconds=webhook_lease_seconds, webhook_hosts=webhook_hosts,
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
    settings, in_force = _settled_in_store(settings, access_key, secondary_key)
    ca = None
    if settings.tls and settings.cert is None:
        from openrooms.tls import ensure_certificates

        paths = ensure_certificates(settings.certs_dir, _extra_hosts(settings))
        settings = settings.replace(cert=paths.cert, key=paths.key)
        ca = paths.ca
    _print_banner(settings, ca, in_force)
    os.environ.update(settings.to_env())
    _run_server(settings)


def _settled_in_store(
    settings: Settings, access_key: str | None, secondary_key: str | None
) -> tuple[Settings, dict[str, KeyInForce]]:
    """Settle, in one visit to the store, what every worker must agree on and the banner shows:
    - the resource id: the configured one, else the stored one (generated and stored on first start);
    - the access keys in force (`service.keys.resolve`): keys given as flags (or OPENROOMS_* variables)
      replace the stored ones; the well-known development keys serve only while no key was ever given or
      rotated; refused beyond loopback unless --allow-development-keys.
    An in-memory store lives in the worker, so there the settings carry the keys and the resource id."""
    import asyncio

    from openrooms.service import keys
    from openrooms.service.clock import SystemClock
    from openrooms.service.identity import new_resource_id
    from openrooms.store import open_store

    given = {name: value for name, value in (("primary", access_key), ("secondary", secondary_key)) if value}

    def with_keys(settled: Settings, in_force: dict[str, KeyInForce]) -> tuple[Settings, dict[str, KeyInForce]]:
        return settled.replace(access_key=in_force["primary"].key,
                               secondary_key=in_force["secondary"].key), in_force

    if settings.in_memory:
        in_force = keys.resolve(given, {})
        _refuse_development_keys_beyond_loopback(settings, in_force)
        return with_keys(settings.replace(resource_id=settings.resource_id or new_resource_id()), in_force)

    async def settled() -> tuple[Settings, dict[str, KeyInForce]]:
        store = open_store(settings, migrate_schema=False)
        try:
            in_force = keys.resolve(given, await store.get_access_keys())
            _refuse_development_keys_beyond_loopback(settings, in_force)
            resource_id = settings.resource_id or await store.ensure_resource_id(new_resource_id())
            in_force = await keys.seed(store, in_force, SystemClock().now())
        finally:
            await store.close()
        return with_keys(settings.replace(resource_id=resource_id), in_force)

    return asyncio.run(settled())


def _refuse_development_keys_beyond_loopback(settings: Settings, in_force: dict[str, KeyInForce]) -> None:
    from openrooms.service import keys

    public = keys.well_known_in_force(in_force)
    if not public or settings.allow_development_keys or _is_loopback(settings.host):
        return
    raise fail(
        f"--host {settings.host} serves beyond this machine, and the well-known development "
        f"{' and '.join(public)} key{'s' if len(public) > 1 else ''} (published in the README) would be accepted. "
        "Set your own keys with --access-key (OPENROOMS_ACCESS_KEY) and, if you like, --secondary-key "
        "(OPENROOMS_SECONDARY_KEY; without it, a new random key), or rotate them with `openrooms keys rotate`; "
        "or, for a shared test lab only, say --allow-development-keys (OPENROOMS_ALLOW_DEVELOPMENT_KEYS)."
    )


def _is_loopback(host: str) -> bool:
    from openrooms.config import is_loopback

    return is_loopback(host)


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


def _print_banner(settings: Settings, ca: Path | None, in_force: dict[str, KeyInForce]) -> None:
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
    if settings.janus_url:
        lines.append(f"  Janus              {settings.janus_url} (room calls: /rooms/<id>/call)")
    if settings.console_served:
        with_issuer = " or with the OIDC issuer" if settings.console_oidc_client_id else ""
        lines.append(f"  console            {settings.endpoint}console/ (sign in with an access key{with_issuer})")
    if settings.oidc_issuer:
        lines.append(f"  Entra ID / OIDC    Bearer tokens of {settings.oidc_issuer} for {settings.oidc_audience}")
        if settings.oidc_insecure_skip_signature:
            lines.append("  !!! INSECURE !!!   --oidc-insecure-skip-signature: Bearer token signatures are NOT "
                         "checked; anyone can sign in. Development only.")
    flags = {"primary": "--access-key", "secondary": "--secondary-key"}
    origins = {
        "given": "given ({flag})",
        "stored": "stored (from an earlier start or `openrooms keys rotate`)",
        "new": "new random key, stored (`openrooms keys show` prints it)",
        "development": "the well-known development key (public)",
    }
    for name, key in in_force.items():
        public = " (public: a well-known development key)" if key.origin != "development" and \
            key.key in (DEV_ACCESS_KEY, DEV_SECONDARY_KEY) else ""
        lines.append(f"  {name + ' key':<19}{origins[key.origin].format(flag=flags[name])}{public}")
    if any(key.key in (DEV_ACCESS_KEY, DEV_SECONDARY_KEY) for key in in_force.values()):
        lines.append("  access keys        the well-known development keys: set --access-key (and --secondary-key) "
                     "for anything shared")
    if not settings.tls and not _is_loopback(settings.host):
        lines.append(f"  plain HTTP         on {settings.host}: requests and tokens cross the network unencrypted")
    print("\n".join(lines), flush=True)


def _run_server(settings: Settings) -> None:
    from openrooms.cli import server

    server.run(settings)


@db_app.command("upgrade")
def db_upgrade(location: LocationOption = None, database_url: DatabaseUrlOption = None) -> None:
    """Create the database or bring its schema up to this version's."""
    if database_url:
        from openrooms.store import postgres

        if not postgres.is_postgres_url(database_url):
            raise fail(f"--database-url must be a PostgreSQL URL: {POSTGRES_URL_EXAMPLE}")
        try:
            revision = postgres.upgrade(database_url)
        except (postgres.DatabaseError, postgres.SchemaMismatch) as exc:
            raise fail(f"cannot upgrade the database at {postgres.redacted(database_url)}: {exc}") from None
        typer.echo(f"{postgres.redacted(database_url)}: schema up to date (revision {revision})")
        return
    import sqlite3

    from openrooms.store.sqlite import SchemaMismatch, SqliteStore

    settings = Settings().replace(location=location)
    try:
        SqliteStore.upgrade(settings.database_file)
    except (SchemaMismatch, OSError, sqlite3.Error) as exc:
        raise fail(f"cannot upgrade the database at {settings.database_file}: {exc}") from None
    typer.echo(f"{settings.database_file}: schema up to date (revision {SqliteStore.revision(settings.database_file)})")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="The schema revision to go back to: the head of the release to "
                                                 "run next (docs/deployment.md, 'Going back to an earlier "
                                                 "release'), e.g. 0014.", show_default=False)],
    location: LocationOption = None, database_url: DatabaseUrlOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before undoing the migrations.")] = False,
) -> None:
    """Bring the schema back to an earlier revision, to run an earlier release on this database.

    Run it with this (the newer) release, with every instance stopped; what the undone migrations added (their
    tables, columns and what they hold) is lost. It asks first, listing the migrations it undoes."""
    import sqlite3

    from openrooms.store import migrate, postgres
    from openrooms.store.sqlite import SqliteStore

    if database_url:
        if not postgres.is_postgres_url(database_url):
            raise fail(f"--database-url must be a PostgreSQL URL: {POSTGRES_URL_EXAMPLE}")
        where = postgres.redacted(database_url)
        try:
            current = postgres.revision(database_url)
        except postgres.DatabaseError as exc:
            raise fail(f"cannot reach the database at {where}: {exc}") from None
    else:
        database = Settings().replace(location=location).database_file
        where = str(database)
        if not database.exists():
            raise fail(f"there is no database at {where}")
        try:
            current = SqliteStore.revision(database)
        except (OSError, sqlite3.Error) as exc:
            raise fail(f"cannot open the database at {where}: {exc}") from None
    try:
        steps = migrate.steps_down(current, revision)
    except ValueError as exc:
        raise fail(f"{where}: {exc}") from None
    typer.echo(f"{where}: schema revision {current}; going back to {revision} undoes, newest first:")
    for undone, title in steps:
        typer.echo(f"  {undone}  {title}")
    typer.echo("What these migrations added to the database, and what it holds, is lost. Stop every instance first.")
    if not yes:
        if not sys.stdin.isatty():
            raise fail("not asked on a terminal: pass --yes to go ahead")
        if not typer.confirm(f"Go back to revision {revision}?", default=False):
            raise typer.Exit(1)
    try:
        if database_url:
            postgres.downgrade(database_url, revision)
        else:
            SqliteStore.downgrade(database, revision)
    except (postgres.DatabaseError, OSError, sqlite3.Error) as exc:
        raise fail(f"cannot downgrade the database at {where}: {exc}; it is unchanged") from None
    typer.echo(f"{where}: schema at revision {revision}: run a release whose schema head is {revision}")


@app.command()
def openapi() -> None:
    """Print the OpenAPI document of the API openrooms serves."""
    from openrooms.http.openapi import document

    json.dump(document(), sys.stdout, indent=2)
    sys.stdout.write("\n")


def main() -> None:
    app()
