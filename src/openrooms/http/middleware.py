"""The request pipeline's steps, as pure ASGI middleware (listed in order in `app.py`)."""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openrooms.http import errors as wire_errors
from openrooms.http import metrics
from openrooms.http.admission import is_join_path
from openrooms.http.auth import HmacAuthenticator
from openrooms.http.context import SCOPE_KEY, RequestContext, context_of
from openrooms.http.ratelimit import RateLimiter
from openrooms.http.versions import family_for_path
from openrooms.service import errors as service_errors
from openrooms.service.clock import Clock
from openrooms.service.errors import ServiceError
from openrooms.store.protocol import StoreUnavailable

ROUTE_MATCH_KEY = "openrooms.route_match"
access_log = logging.getLogger("openrooms.access")
log = logging.getLogger("openrooms")

UNAUTHENTICATED = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/.well-known/jwks.json"),
}


class Credential(enum.Enum):
    NONE = "none"
    ACCESS_KEY = "the access key (HMAC signature)"
    USER_TOKEN = "the user's ACS access token (Bearer), checked by the admission service"


def credential_for(method: str, path: str) -> Credential:
    """The one place that decides which credential a request needs."""
    if (method, path) in UNAUTHENTICATED:
        return Credential.NONE
    if method == "POST" and is_join_path(path):
        return Credential.USER_TOKEN
    return Credential.ACCESS_KEY


class RequestEnvelope:
    """Outermost step: request id, headers every response carries, failures to the ACS envelope, access log,
    metrics."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = (), metrics: bool = False) -> None:
        self.app = app
        self._routes = routes
        self._metrics = metrics

    def _operation(self, scope: Scope) -> str:
        """The name of the route the request is for (its operation), known before routing so that every step
        (rate limits, metrics, logs) can use it; "unknown" for paths no route serves. The match is kept in the
        scope for `PrematchedRouter`, so that routing happens once per request."""
        for route in self._routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL and isinstance(route, Route):
                scope[ROUTE_MATCH_KEY] = (route, child_scope)
                return route.name
        return "unknown"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        client_request_id = headers.get(b"x-ms-client-request-id", b"").decode("latin-1")
        correlation_vector = headers.get(b"ms-cv", b"").decode("latin-1")
        ctx = RequestContext(request_id=uuid.uuid4().hex, operation=self._operation(scope))
        scope[SCOPE_KEY] = ctx
        status = 0
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                extra = [(k.lower().encode(), v.encode()) for k, v in ctx.response_headers.items()]
                extra.append((b"x-ms-request-id", ctx.request_id.encode()))
                if client_request_id:
                    extra.append((b"x-ms-client-request-id", client_request_id.encode("latin-1")))
                if correlation_vector:
                    extra.append((b"ms-cv", correlation_vector.encode("latin-1")))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if response_started:
                raise
            error = self._as_service_error(exc, ctx)
            await send_with_headers(
                {"type": "http.response.start", "status": error.status, "headers": wire_errors.wire_headers(error)}
            )
            await send_with_headers({"type": "http.response.body", "body": wire_errors.envelope(error)})
        finally:
            elapsed = time.perf_counter() - started
            if self._metrics:
                metrics.observe(ctx.operation, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                query = scope.get("query_string", b"").decode("latin-1")
                client = (scope.get("client") or ("-",))[0]
                # Never headers: Authorization carries a signature, and nothing here names a key.
                fields = {"client": client, "method": scope["method"], "path": scope["path"], "query": query,
                          "status": status, "duration_ms": round(elapsed * 1000, 1), "request_id": ctx.request_id,
                          "operation": ctx.operation, "client_request_id": client_request_id or None,
                          "ms_cv": correlation_vector or None}
                access_log.info(
                    '%s "%s %s%s" %d %.1fms %s',
                    client,
                    scope["method"],
                    scope["path"],
                    "?" + query if query else "",
                    status,
                    elapsed * 1000,
                    ctx.request_id,
                    extra={"fields": fields},
                )

    @staticmethod
    def _as_service_error(exc: Exception, ctx: RequestContext) -> ServiceError:
        if isinstance(exc, ServiceError):
            return exc
        if isinstance(exc, HTTPException):
            return wire_errors.from_http_exception(exc)
        if isinstance(exc, StoreUnavailable):
            metrics.STORE_ERRORS.inc()
            log.error("request %s: store unavailable: %s", ctx.request_id, exc)
            return service_errors.store_unavailable(str(exc))
        log.exception("request %s failed", ctx.request_id)
        return wire_errors.internal_error(ctx.request_id)


class ApiVersionCheck:
    """Resolves `?api-version=` for the API the path belongs to; answers which versions that API supports."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        family = family_for_path(scope["path"]) if scope["type"] == "http" else None
        if family is not None:
            ctx = context_of(scope)
            ctx.response_headers["api-supported-versions"] = family.supported
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
            ctx.api_version = family.resolve(query.get("api-version"))
        await self.app(scope, receive, send)


class Authenticate:
    """Reads the body (refusing more than `max_body_bytes`) and checks the request's HMAC signature (for the paths
    `credential_for` says need the access key)."""

    def __init__(
        self, app: ASGIApp, *, authenticator: Callable[[], Awaitable[HmacAuthenticator]], clock: Clock,
        max_body_bytes: int, rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.app = app
        self._authenticator = authenticator  # awaited per request: the keys may have been rotated
        self._clock = clock
        self._max_body = max_body_bytes
        self._rate_limiter = rate_limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        credential = credential_for(scope["method"], scope["path"]) if scope["type"] == "http" else Credential.NONE
        if credential is Credential.NONE:
            await self.app(scope, receive, send)
            return
        ctx = context_of(scope)
        ctx.body = body = await self._read_body(scope, receive)
        if credential is Credential.ACCESS_KEY:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            raw_path = scope.get("raw_path")
            authenticator = await self._authenticator()
            key_index = authenticator.authenticate(
                method=scope["method"],
                raw_path=raw_path.decode("latin-1") if raw_path else quote(scope["path"]),
                query=scope.get("query_string", b"").decode("latin-1"),
                headers=headers,
                body=body,
                now=self._clock.now(),
            )
            if self._rate_limiter is not None:
                wait = self._rate_limiter.retry_after(key_index, ctx.operation)
                if wait:
                    metrics.RATE_LIMITED.labels(ctx.operation).inc()
                    raise service_errors.too_many_requests(ctx.operation, wait)

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self._max_body:
                raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Any = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _too_large(self) -> ServiceError:
        return ServiceError(
            413,
            "RequestEntityTooLarge",
            f"The request body is larger than the {self._max_body} bytes this server accepts.",
        )


class PrematchedRouter(Router):
    """Starlette's router, but a request `RequestEnvelope` already matched to a route goes straight to it."""

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        prematched = scope.pop(ROUTE_MATCH_KEY, None)
        if prematched is None:
            await super().app(scope, receive, send)
            return
        route, child_scope = prematched
        scope.setdefault("router", self)
        scope.update(child_scope)
        await route.handle(scope, receive, send)
