"""Builds the ASGI app: services, their wire protocols and routes, put into the request pipeline (`pipeline.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from openrooms.calls.service import CallService
from openrooms.config import InvalidSettings, Settings, variable
from openrooms.http import auth, delivery, metrics, openapi
from openrooms.http.admission import AdmissionApi
from openrooms.http.calls import CallsApi
from openrooms.http.delivery import WakeSender
from openrooms.http.events import EventsApi
from openrooms.http.identity import IdentityApi
from openrooms.http.oidc import IssuerUnavailable, OidcPolicy, OidcVerifier, TokenInvalid, parse_ids
from openrooms.http.pipeline import Pipeline
from openrooms.http.ratelimit import RateLimiter
from openrooms.http.rooms import RoomsApi
from openrooms.http.webhooks import WebhooksApi
from openrooms.http.wire import json_response
from openrooms.service.admission import AdmissionService
from openrooms.service.clock import Clock, SystemClock
from openrooms.service.event_log import EventsService
from openrooms.service.identity import IdentityService
from openrooms.service.keys import KeyRing
from openrooms.service.ports import RoomStore
from openrooms.service.rooms import RoomsService
from openrooms.service.stopping import STOPPING
from openrooms.service.webhooks import WebhooksService
from openrooms.service.window_events import WindowScheduler
from openrooms.store import open_store

if TYPE_CHECKING:
    from openrooms.console.oidc import OidcSignIn
    from openrooms.livekit import LiveKitBridge

log = logging.getLogger("openrooms")
PURGE_INTERVAL_SECONDS = 600
# How long a background task that failed waits before it is started again.
RESTART_DELAY_SECONDS = 1.0


class KeptRunning:
    """A background task of the app's lifespan, which nothing else watches: should it fail, its exception is logged
    with its traceback and it is started again `RESTART_DELAY_SECONDS` later; never once the server stops."""

    def __init__(self, name: str, start: Callable[[], Coroutine[Any, Any, Any]],
                 delay: float = RESTART_DELAY_SECONDS) -> None:
        self.name = name
        self.restarts = 0
        self._start, self._delay = start, delay
        self._stopped = False
        self._restart: asyncio.TimerHandle | None = None
        self.task = self._run()

    def _run(self) -> asyncio.Task[Any]:
        task = asyncio.create_task(self._start())
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or self._stopped:
            return
        failure = task.exception()
        if failure is None:
            return  # it ended on its own: nothing to restart
        log.error("%s failed; starting it again in %s s", self.name, self._delay, exc_info=failure)
        if not STOPPING.is_set():
            self._restart = asyncio.get_running_loop().call_later(self._delay, self._again)

    def _again(self) -> None:
        self._restart = None
        if not (self._stopped or STOPPING.is_set()):
            self.restarts += 1
            self.task = self._run()

    async def stop(self) -> None:
        self._stopped = True
        if self._restart is not None:
            self._restart.cancel()
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


def create_app(settings: Settings, *, store: RoomStore | None = None, clock: Clock | None = None,
               wake_path: str | None = None) -> Pipeline:
    """Build the app. Without `store`, it opens the configured store and closes it at shutdown. With `wake_path`,
    a delivery process listening there delivers the webhooks (`http.delivery`): this app only wakes it."""
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
    waker = WakeSender(wake_path) if wake_path and settings.webhooks else None
    webhooks_service, dispatcher, sender = delivery.webhooks(
        settings, room_store, clock, identity_service, dispatching=settings.webhooks and waker is None, wake=waker)
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
        starts: list[tuple[str, Callable[[], Coroutine[Any, Any, Any]]]] = [
            ("the purge", lambda: _purge_periodically(rooms_service, events_service)),
            ("the window scheduler", window_scheduler.run)]
        if dispatcher is not None:
            starts.append(("the webhook dispatcher", dispatcher.run))
        # SQLite tells no other process of new events: this one wakes the delivery process after its commits.
        if waker is not None and not settings.database_url:
            wake = waker
            starts.append(("the event forwarding", lambda: delivery.forward_events(room_store, wake)))
        tasks = [KeptRunning(name, start) for name, start in starts]
        try:
            with STOPPING.noted_on_signals():
                yield
        finally:
            for task in tasks:
                await task.stop()
            await sender.close()
            if waker is not None:
                waker.close()
            if calls_api.service is not None:
                await calls_api.service.close()
            if owns_store:
                await room_store.close()
            metrics.flush()
            log.info("worker %s stopped: its background work ended, its store closed", os.getpid())

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
    return [(PREFIX, Console(services, session_minutes=settings.console_session_minutes,
                             oidc_sign_in=console_oidc(settings, clock)))]


def console_oidc(settings: Settings, clock: Clock) -> OidcSignIn | None:
    """The console's sign-in with the OpenID Connect issuer, when its client is configured: the ID tokens are
    checked by a verifier of the issuer's keys of its own (always with their signature), for the client's id."""
    if not (settings.oidc_issuer and settings.console_oidc_client_id):
        return None
    from openrooms.console import oidc

    verifier = OidcVerifier(OidcPolicy(issuer=settings.oidc_issuer, audience=settings.console_oidc_client_id,
                                       skew_seconds=settings.clock_skew_seconds), clock=clock)

    async def verify(token: str, audience: str) -> dict[str, Any]:
        try:
            return await verifier.verified_claims(token, audience)
        except TokenInvalid as exc:
            raise oidc.SignInRefused(f"The ID token is not valid: {exc}.") from exc
        except IssuerUnavailable as exc:
            raise oidc.IssuerUnreachable("The issuer's keys are unavailable; try again later.") from exc

    redirect_uri = settings.console_oidc_redirect_uri
    if redirect_uri is None and settings.public_url:
        redirect_uri = f"{settings.public_url.rstrip('/')}/console{oidc.CALLBACK_PATH}"
    return oidc.OidcSignIn(oidc.OidcClient(
        issuer=settings.oidc_issuer, client_id=settings.console_oidc_client_id,
        client_secret=settings.console_oidc_client_secret, redirect_uri=redirect_uri,
        required_role=settings.console_oidc_required_role,
        allowed_subjects=parse_ids(settings.console_oidc_allowed_subjects),
        allow_any_user=settings.console_oidc_allow_any_user), verify)


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
    app = create_app(settings, wake_path=os.environ.get(delivery.WAKE_ENV) or None)
    # Everything loaded so far (libraries, migrations, the app) lives as long as the worker: move it out of the
    # cyclic collector's reach, so that collections stay short and do not show up as latency spikes.
    gc.collect()
    gc.freeze()
    return app
