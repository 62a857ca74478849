"""Builds the ASGI app: services, their wire protocols and routes, put into the request pipeline (`pipeline.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from openrooms.calls.service import CallService
from openrooms.config import InvalidSettings, Settings, variable
from openrooms.http import auth, metrics, openapi
from openrooms.http.admission import AdmissionApi
from openrooms.http.calls import CallsApi
from openrooms.http.events import EventsApi
from openrooms.http.identity import IdentityApi
from openrooms.http.oidc import OidcPolicy, OidcVerifier, parse_ids
from openrooms.http.pipeline import Pipeline
from openrooms.http.ratelimit import RateLimiter
from openrooms.http.rooms import RoomsApi
from openrooms.http.webhooks import HttpSender, WebhooksApi
from openrooms.http.wire import json_response
from openrooms.service.admission import AdmissionService
from openrooms.service.clock import Clock, SystemClock
from openrooms.service.event_log import EventsService
from openrooms.service.identity import IdentityService
from openrooms.service.keys import KeyRing
from openrooms.service.ports import RoomStore
from openrooms.service.rooms import RoomsService
from openrooms.service.webhooks import Dispatcher, Policy, WebhooksService
from openrooms.service.window_events import WindowScheduler
from openrooms.store import open_store

if TYPE_CHECKING:
    from openrooms.livekit import LiveKitBridge

log = logging.getLogger("openrooms")
PURGE_INTERVAL_SECONDS = 600


def create_app(settings: Settings, *, store: RoomStore | None = None, clock: Clock | None = None) -> Pipeline:
    """Build the app. Without `store`, it opens the configured store and closes it at shutdown."""
    clock = clock or SystemClock()
    owns_store = store is None
    room_store = store if store is not None else open_store(settings, migrate_schema=settings.in_memory)
    window_scheduler = WindowScheduler(room_store, clock)
    rooms_service = RoomsService(
        room_store, clock, page_size=settings.page_size, purge_grace_days=settings.purge_grace_days,
        max_participants_per_room=settings.max_participants_per_room,
        max_participants_per_request=settings.max_participants_per_request, on_window=window_scheduler.note,
    )
    rooms_api = RoomsApi(rooms_service, settings.public_url)
    identity_service = IdentityService(room_store, clock, resource_id=settings.resource_id)
    oidc = oidc_verifier(settings, clock)
    identity_api = IdentityApi(identity_service, oidc)
    events_service = EventsService(room_store, clock, identity_service.resource_id,
                                   retention_days=settings.event_retention_days)
    events_api = EventsApi(events_service, settings.public_url)
    webhooks_service, dispatcher, sender = _webhooks(settings, room_store, clock, identity_service)
    webhooks_api = WebhooksApi(webhooks_service)
    admission_service = AdmissionService(identity_service, room_store, clock)
    admission_api = AdmissionApi(admission_service, _livekit_bridge(settings, clock))
    calls_api = CallsApi(_call_service(settings, admission_service, room_store, clock))
    # The keys in the store win over the settings' (`openrooms keys rotate` changes them while serving).
    authenticator = auth.HmacAuthenticator(
        KeyRing(room_store, [settings.access_key, settings.secondary_key]),
        skew_seconds=settings.clock_skew_seconds,
        public_hosts=_public_hosts(settings),
    )

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        """Ready when the store answers; a StoreUnavailable becomes 503 in the ACS envelope."""
        await room_store.ping()
        return json_response({"status": "ready"})

    async def metrics_text(request: Request) -> Response:
        states = await webhooks_service.states()
        return Response(metrics.exposition() + metrics.webhook_exposition(states), media_type=metrics.CONTENT_TYPE)

    async def openapi_document(request: Request) -> Response:
        return json_response(openapi.document())

    @contextlib.asynccontextmanager
    async def lifespan(app: Pipeline) -> AsyncIterator[None]:
        purger = asyncio.create_task(_purge_periodically(rooms_service, events_service))
        windows = asyncio.create_task(window_scheduler.run())
        dispatching = None if dispatcher is None else asyncio.create_task(dispatcher.run())
        try:
            yield
        finally:
            for task in (purger, windows, dispatching):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await sender.close()
            if calls_api.service is not None:
                await calls_api.service.close()
            if owns_store:
                await room_store.close()
            metrics.flush()

    routes = [  # the busiest first: a request is matched against them in this order
        *rooms_api.routes(),
        *admission_api.routes(),
        *identity_api.routes(),
        *calls_api.routes(),
        *events_api.routes(),
        *webhooks_api.routes(),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *([Route("/metrics", metrics_text, methods=["GET"], name="metrics")] if settings.metrics else []),
        Route("/openapi.json", openapi_document, methods=["GET"]),
    ]
    # ACS has no trailing-slash redirects: `/rooms/{id}/` is an unknown path, answered in the error envelope.
    return Pipeline(
        routes,
        authenticator=authenticator,
        clock=clock,
        max_body_bytes=settings.max_body_bytes,
        rate_limiter=RateLimiter(settings.rate_limit) if settings.rate_limit > 0 else None,
        metrics=settings.metrics,
        lifespan=lifespan,
        oidc=oidc,
        websocket=calls_api.websocket,
        mounts=_console(settings, rooms_service, identity_service, events_service, calls_api.service, room_store,
                        clock, webhooks_service),
    )


def _console(settings: Settings, rooms: RoomsService, identity: IdentityService, events: EventsService,
             calls: CallService | None, store: RoomStore, clock: Clock,
             webhooks: WebhooksService) -> list[tuple[str, ASGIApp]]:
    """The web console at /console/ (`openrooms.console`), when served."""
    if not settings.console_served:
        return []
    from openrooms.console.app import PREFIX, Console, ConsoleServices

    services = ConsoleServices(rooms, identity, events, calls, store, clock, settings.endpoint,
                               (settings.access_key, settings.secondary_key), webhooks)
    return [(PREFIX, Console(services, session_minutes=settings.console_session_minutes))]


def _webhooks(settings: Settings, store: RoomStore, clock: Clock,
              identity: IdentityService) -> tuple[WebhooksService, Dispatcher | None, HttpSender]:
    """The webhook subscriptions' service and, unless --no-webhooks, this process's dispatcher."""
    sender = HttpSender()
    policy = Policy(retry_scale=settings.webhook_retry_scale, max_attempts=settings.webhook_max_attempts,
                    timeout_seconds=settings.webhook_timeout, lease_seconds=settings.webhook_lease_seconds,
                    hosts=None if settings.webhook_hosts is None else frozenset(
                        host.strip().lower() for host in settings.webhook_hosts.split(",") if host.strip()))
    dispatcher: Dispatcher | None = None
    service = WebhooksService(store, clock, identity.resource_id, sender, policy,
                              wake=lambda: dispatcher.wake() if dispatcher is not None else None,
                              origin=urlsplit(settings.endpoint).hostname or "openrooms")
    if settings.webhooks:
        dispatcher = Dispatcher(store, service, clock, observe=metrics.observe_delivery)
    return service, dispatcher, sender


def _call_service(settings: Settings, admission: AdmissionService, store: RoomStore,
                  clock: Clock) -> CallService | None:
    if not settings.janus_url:
        return None
    urls = [url.strip() for url in settings.janus_url.split(",") if url.strip()]
    return CallService(admission, store, clock, urls, settings.janus_api_secret)


def oidc_verifier(settings: Settings, clock: Clock) -> OidcVerifier | None:
    """The Bearer token verifier of the configured OpenID Connect issuer; None without one."""
    if not settings.oidc_issuer:
        return None
    return OidcVerifier(OidcPolicy(
        issuer=settings.oidc_issuer, audience=settings.oidc_audience,
        allowed_app_ids=parse_ids(settings.oidc_allowed_app_ids),
        allowed_object_ids=parse_ids(settings.oidc_allowed_object_ids),
        required_role=settings.oidc_required_role, skip_signature=settings.oidc_insecure_skip_signature,
        skew_seconds=settings.clock_skew_seconds, teams_audience=settings.oidc_teams_audience,
    ), clock=clock)


def _livekit_bridge(settings: Settings, clock: Clock) -> LiveKitBridge | None:
    if not settings.livekit_url:
        return None
    if not (settings.livekit_api_key and settings.livekit_api_secret):
        raise InvalidSettings("{livekit_url}, {livekit_api_key} and {livekit_api_secret} go together.")
    from openrooms.livekit import LiveKitBridge

    return LiveKitBridge(settings.livekit_url, settings.livekit_api_key, settings.livekit_api_secret, clock)


def _public_hosts(settings: Settings) -> list[str]:
    if not settings.public_url:
        return []
    return [urlsplit(settings.public_url).netloc]


async def _purge_periodically(service: RoomsService, events: EventsService) -> None:
    while True:
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)
        try:
            rooms, records = await service.purge_expired()
            if rooms or records:
                log.info("purged %d expired rooms and %d old idempotency records", rooms, records)
            purged = await events.purge()
            if purged:
                log.info("purged %d events older than the retention", purged)
        except Exception:
            log.exception("purging expired rooms failed; will try again")


def app_from_env() -> Pipeline:
    """Factory for server workers: `serve` passes its settings through OPENROOMS_* variables."""
    from openrooms.logs import configure_logging

    try:
        settings = Settings.from_env().validated()
    except InvalidSettings as exc:  # `serve` checked them; a worker started some other way may not have been
        raise InvalidSettings(exc.naming(variable)) from None
    configure_logging(silent=settings.silent, json_lines=settings.log_format == "json")
    app = create_app(settings)
    # Everything loaded so far (libraries, migrations, the app) lives as long as the worker: move it out of the
    # cyclic collector's reach, so that collections stay short and do not show up as latency spikes.
    gc.collect()
    gc.freeze()
    return app
