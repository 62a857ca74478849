"""The ASGI app: every HTTP request passes the same steps, in this order (`Pipeline._answer`):

1. route        which operation the method and path name (first, so that logs, metrics and limits can name it)
2. envelope     request id; the headers every answer carries; any failure -> the ACS error envelope; access log
                and metrics (`Pipeline._http`)
3. api-version  `?api-version=` of the API the path belongs to
4. credential   the body (size-limited), then the access key's HMAC signature (or, with an OpenID Connect
                issuer configured, its Bearer token: `oidc.py`), the user's token (left to the admission
                service) or nothing, as `credential_for` decides; the rate limit
5. operation    the route's handler, which answers with a `Response`

The steps are plain calls in one function rather than a stack of middleware: a request costs what its work
costs, not a layer of wrapping per step (see README, "Benchmarks").
"""

from __future__ import annotations

import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openrooms.http import errors as wire_errors
from openrooms.http import metrics
from openrooms.http.admission import is_join_path
from openrooms.http.auth import HmacAuthenticator
from openrooms.http.calls import is_page_path
from openrooms.http.context import SCOPE_KEY, RequestContext
from openrooms.http.oidc import OidcVerifier
from openrooms.http.ratelimit import RateLimiter
from openrooms.http.versions import family_for_path
from openrooms.http.wire import query_of
from openrooms.service import errors as service_errors
from openrooms.service.clock import Clock
from openrooms.service.errors import ServiceError
from openrooms.service.ports import StoreUnavailable

access_log = logging.getLogger("openrooms.access")
log = logging.getLogger("openrooms")

UNAUTHENTICATED = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/.well-known/jwks.json"),
}
JOIN_METHODS = frozenset({"POST"})
Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[None]]


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
    if method in ("GET", "HEAD") and is_page_path(path):
        return Credential.NONE  # the call page: static files; the user's token stays in the page
    return Credential.ACCESS_KEY


# The request headers any step or the rooms operations read (`RequestContext.headers`), by their raw (lower-case)
# name; the rest are not decoded.
_READ_HEADERS = {name.encode(): name for name in (
    "authorization", "x-ms-content-sha256", "x-ms-date", "date", "host", "content-length", "transfer-encoding",
    "x-ms-client-request-id", "ms-cv", "repeatability-request-id", "repeatability-first-sent",
)}


def _headers_read(scope: Scope) -> dict[str, str]:
    # One pass over the request's headers; a repeated header: the last one.
    return {_READ_HEADERS[key]: value.decode("latin-1") for key, value in scope["headers"] if key in _READ_HEADERS}


def _request_id() -> str:
    # An opaque id for logs, not a secret: the fast generator (reseeded in each forked worker) suffices.
    return random.getrandbits(128).to_bytes(16, "big").hex()


class Pipeline:
    def __init__(
        self, routes: Sequence[Route], *, authenticator: HmacAuthenticator, clock: Clock,
        max_body_bytes: int, rate_limiter: RateLimiter | None, metrics: bool, lifespan: Lifespan,
        oidc: OidcVerifier | None = None,
        websocket: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None,
        mounts: Sequence[tuple[str, ASGIApp]] = (),
    ) -> None:
        self._websocket = websocket  # the room calls' signalling (openrooms.calls), when configured
        # Apps of their own under a path prefix (the web console), outside these steps: they authenticate alone.
        self._mounts = tuple(mounts)
        self.routes = list(routes)  # the busiest first: a request is matched against them in this order
        self._table = [(route.path_regex, frozenset(route.methods or ()), route) for route in self.routes]
        self._authenticator = authenticator
        self._clock = clock
        self._max_body = max_body_bytes
        self._rate_limiter = rate_limiter
        self._metrics = metrics
        self._lifespan_context = lifespan
        self._oidc = oidc  # Bearer tokens of an OpenID Connect issuer, beside the access key

    @property
    def mounts(self) -> tuple[tuple[str, ASGIApp], ...]:
        return self._mounts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for prefix, mounted in self._mounts:
                if scope["path"] == prefix or scope["path"].startswith(prefix + "/"):
                    await mounted(scope, receive, send)
                    return
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif self._websocket is not None:  # the room calls' signalling; it checks its own credential
            await self._websocket(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1000})

    # -- 1. route ---------------------------------------------------------------------------------------------
    def _route(self, method: str, path: str) -> tuple[Route | None, dict[str, str], frozenset[str]]:
        """The route for the method and path, its path parameters; without a route, the methods the path takes."""
        if method != "POST" and is_join_path(path):
            return None, {}, JOIN_METHODS
        allowed: frozenset[str] = frozenset()
        for regex, methods, route in self._table:
            match = regex.match(path)
            if match is not None:
                if method in methods:
                    return route, match.groupdict(), methods
                allowed |= methods
        return None, {}, allowed

    # -- 2. envelope ------------------------------------------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        route, path_params, allowed = self._route(scope["method"], scope["path"])
        headers = _headers_read(scope)
        ctx = RequestContext(request_id=_request_id(), operation=route.name if route else "unknown", headers=headers)
        scope[SCOPE_KEY] = ctx
        status = 0
        try:
            response = await self._answer(scope, receive, headers, ctx, route, path_params, allowed)
            status = response.status_code
            await send({"type": "http.response.start", "status": status,
                        "headers": response.raw_headers + _common_headers(ctx, headers)})
            await send({"type": "http.response.body", "body": response.body})
        except Exception as exc:
            if status:  # the answer had started: nothing more can be said on this connection
                raise
            error = _as_service_error(exc, ctx)
            status = error.status
            await send({"type": "http.response.start", "status": status,
                        "headers": wire_errors.wire_headers(error) + _common_headers(ctx, headers)})
            await send({"type": "http.response.body", "body": wire_errors.envelope(error)})
        finally:
            elapsed = time.perf_counter() - started
            if self._metrics:
                metrics.observe(ctx.operation, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                _log_access(scope, headers, ctx, status, elapsed)

    async def _answer(
        self, scope: Scope, receive: Receive, headers: dict[str, str], ctx: RequestContext, route: Route | None,
        path_params: dict[str, str], allowed: frozenset[str],
    ) -> Response:
        method, path = scope["method"], scope["path"]
        # A join path takes POST only: answered before the version and the credential steps, and never handed to
        # the room routes (whose `{room_id}` would match `x:join`).
        if route is None and is_join_path(path):
            raise service_errors.method_not_allowed(JOIN_METHODS)
        # -- 3. api-version
        requested = query_of(scope["query_string"]).get("api-version")
        family = family_for_path(path, method, requested)
        if family is not None:
            ctx.api_family = family
            ctx.api_version = family.resolve(requested)
        # -- 4. credential
        credential = credential_for(method, path)
        if credential is not Credential.NONE:
            ctx.body = await self._read_body(scope, headers, receive)
            if credential is Credential.ACCESS_KEY and self._oidc is not None and _is_bearer(headers):
                claims = await self._oidc.authenticate(headers["authorization"])
                self._limit(("oidc", claims.get("oid") or claims.get("sub")), ctx)
            elif credential is Credential.ACCESS_KEY:
                if self._authenticator.keys_due:  # the keys may have been rotated: re-read at most every second
                    await self._authenticator.refresh_keys()
                self._authenticate(scope, headers, ctx)
        # -- 5. operation
        if route is None:
            raise service_errors.method_not_allowed(allowed) if allowed else service_errors.not_found()
        scope["path_params"] = path_params
        response: Response = await route.endpoint(Request(scope, receive))
        return response

    # -- 4. credential ----------------------------------------------------------------------------------------
    def _authenticate(self, scope: Scope, headers: dict[str, str], ctx: RequestContext) -> None:
        raw_path = scope.get("raw_path")
        key_index = self._authenticator.authenticate(
            method=scope["method"],
            raw_path=raw_path.decode("latin-1") if raw_path else quote(scope["path"]),
            query=scope["query_string"].decode("latin-1"),
            headers=headers,
            body=ctx.body,
            now=self._clock.now(),
        )
        self._limit(key_index, ctx)

    def _limit(self, caller: object, ctx: RequestContext) -> None:
        """The rate limit of one caller (an access key, or a bearer token's principal) and operation."""
        if self._rate_limiter is not None:
            wait = self._rate_limiter.retry_after(caller, ctx.operation)
            if wait:
                metrics.RATE_LIMITED.labels(ctx.operation).inc()
                raise service_errors.too_many_requests(ctx.operation, wait)

    async def _read_body(self, scope: Scope, headers: dict[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length", "")
        if declared == "0" or (not declared and "transfer-encoding" not in headers
                               and scope.get("http_version") in ("1.0", "1.1")):
            return b""  # no body to wait for (an HTTP/1 request without either header has none: RFC 9112, 6.3)
        expected = int(declared) if declared.isdigit() else None
        if expected is not None and expected > self._max_body:
            raise service_errors.request_too_large(self._max_body)
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise service_errors.request_too_large(self._max_body)
            chunks.append(chunk)
            # With the declared length in hand the body is whole: granian would still answer one more receive,
            # with an empty last message, and each receive is a round trip through the event loop.
            if not message.get("more_body", False) or size == expected:
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- lifespan ---------------------------------------------------------------------------------------------
    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        started = False
        try:
            async with self._lifespan_context(self):
                started = True
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
        except BaseException as exc:
            failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": failed, "message": f"{type(exc).__name__}: {exc}"})
            raise
        await send({"type": "lifespan.shutdown.complete"})


def _is_bearer(headers: dict[str, str]) -> bool:
    return headers.get("authorization", "")[:7].lower() == "bearer "


def _common_headers(ctx: RequestContext, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """What every answer carries, errors too: the request id, the client's correlation ids echoed."""
    common = [] if ctx.api_family is None else [ctx.api_family.supported_header]
    common.append((b"x-ms-request-id", ctx.request_id.encode()))
    client_request_id = headers.get("x-ms-client-request-id")
    if client_request_id:
        common.append((b"x-ms-client-request-id", client_request_id.encode("latin-1")))
    correlation_vector = headers.get("ms-cv")
    if correlation_vector:
        common.append((b"ms-cv", correlation_vector.encode("latin-1")))
    return common


def _as_service_error(exc: Exception, ctx: RequestContext) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, StoreUnavailable):
        metrics.STORE_ERRORS.inc()
        log.error("request %s: store unavailable: %s", ctx.request_id, exc)
        return service_errors.store_unavailable(str(exc))
    log.exception("request %s failed", ctx.request_id)
    return service_errors.internal_error(ctx.request_id)


def _log_access(scope: Scope, headers: dict[str, str], ctx: RequestContext, status: int, elapsed: float) -> None:
    query = scope["query_string"].decode("latin-1")
    client = (scope.get("client") or ("-",))[0]
    # Never headers: Authorization carries a signature, and nothing here names a key.
    fields = {"client": client, "method": scope["method"], "path": scope["path"], "query": query,
              "status": status, "duration_ms": round(elapsed * 1000, 1), "request_id": ctx.request_id,
              "operation": ctx.operation, "client_request_id": headers.get("x-ms-client-request-id") or None,
              "ms_cv": headers.get("ms-cv") or None}
    access_log.info('%s "%s %s%s" %d %.1fms %s', client, scope["method"], scope["path"], "?" + query if query else "",
                    status, elapsed * 1000, ctx.request_id, extra={"fields": fields})
