"""The request pipeline's steps, as pure ASGI middleware (listed in order in `app.py`)."""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openrooms.http import errors as wire_errors
from openrooms.http.admission import is_join_path
from openrooms.http.auth import HmacAuthenticator
from openrooms.http.context import SCOPE_KEY, RequestContext, context_of
from openrooms.http.versions import family_for_path
from openrooms.service import errors as service_errors
from openrooms.service.clock import Clock
from openrooms.service.errors import ServiceError
from openrooms.store.protocol import StoreUnavailable

access_log = logging.getLogger("openrooms.access")
log = logging.getLogger("openrooms")

UNAUTHENTICATED = {("GET", "/healthz"), ("GET", "/.well-known/jwks.json")}


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
    """Outermost step: request id, headers every response carries, failures to the ACS envelope, access log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        client_request_id = headers.get(b"x-ms-client-request-id", b"").decode("latin-1")
        ctx = RequestContext(request_id=uuid.uuid4().hex)
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
            if access_log.isEnabledFor(logging.INFO):
                query = scope.get("query_string", b"").decode("latin-1")
                access_log.info(
                    '%s "%s %s%s" %d %.1fms %s',
                    (scope.get("client") or ("-",))[0],
                    scope["method"],
                    scope["path"],
                    "?" + query if query else "",
                    status,
                    (time.perf_counter() - started) * 1000,
                    ctx.request_id,
                )

    @staticmethod
    def _as_service_error(exc: Exception, ctx: RequestContext) -> ServiceError:
        if isinstance(exc, ServiceError):
            return exc
        if isinstance(exc, HTTPException):
            return wire_errors.from_http_exception(exc)
        if isinstance(exc, StoreUnavailable):
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
        self, app: ASGIApp, *, authenticator: Callable[[], HmacAuthenticator], clock: Clock, max_body_bytes: int
    ) -> None:
        self.app = app
        self._authenticator = authenticator
        self._clock = clock
        self._max_body = max_body_bytes

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
            self._authenticator().authenticate(
                method=scope["method"],
                raw_path=raw_path.decode("latin-1") if raw_path else quote(scope["path"]),
                query=scope.get("query_string", b"").decode("latin-1"),
                headers=headers,
                body=body,
                now=self._clock.now(),
            )

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
