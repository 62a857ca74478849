"""The web console at /console/: server-rendered pages (Jinja2) over the services, with htmx for partial updates.

A protocol-layer peer of `openrooms.http`: it calls the services only. Every route but the sign-in page and the
static files needs a session (`session.py`); every form post needs the session's CSRF token. The API's own
authentication is untouched: the console is a separate ASGI app the pipeline hands `/console` paths to.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from openrooms.calls.service import CallService, CallsUnavailable
from openrooms.console import oidc
from openrooms.console import session as sessions
from openrooms.console.views import (
    MAX_COUNTED_ROOMS,
    MAX_LISTED_CALLS,
    STATES,
    call_people,
    dead_letter_row,
    event_row,
    room_row,
    timeline,
    webhook_row,
    window_state,
)
from openrooms.events.types import TYPES
from openrooms.service import errors, keys, timestamps
from openrooms.service.clock import TICKS_PER_SECOND, Clock
from openrooms.service.console_sessions import ACCESS_KEY, OIDC, ConsoleSessions, Principal, Session
from openrooms.service.errors import ServiceError
from openrooms.service.event_log import EventsService
from openrooms.service.identity import MAX_TOKEN_MINUTES, MIN_TOKEN_MINUTES, IdentityService
from openrooms.service.keys import KeyRing
from openrooms.service.model import CreateRoom, Page, Role, UpdateRoom
from openrooms.service.ports import RoomStore, StoreUnavailable
from openrooms.service.rooms import RoomsService, Upsert
from openrooms.service.stopping import STOPPING
from openrooms.service.webhooks import WebhooksService

log = logging.getLogger("openrooms")
PREFIX = "/console"
HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".LICENSE": "text/plain; charset=utf-8"}
ROLES = [role.value for role in Role]
SCOPES = ("chat", "voip", "chat.join", "chat.join.limited", "voip.join")
JOIN_AS_MINUTES = MIN_TOKEN_MINUTES  # the shortest-lived token the Identity service issues
SSE_WAIT_SECONDS = 15
_IDS_SPLIT = re.compile(r"[\s,;]+")
Handler = Callable[[Request, "Context"], Awaitable[Response]]


@dataclass
class Context:
    """What a signed-in request carries to its page: the session and the form it posted."""

    session: Session
    form: dict[str, list[str]]

    def field(self, name: str, default: str = "") -> str:
        values = self.form.get(name)
        return values[0].strip() if values else default

    def fields(self, name: str) -> list[str]:
        return [value for value in self.form.get(name, []) if value.strip()]


@dataclass(frozen=True)
class ConsoleServices:
    rooms: RoomsService
    identity: IdentityService
    events: EventsService
    calls: CallService | None
    store: RoomStore  # the access keys (`service.keys`)
    clock: Clock
    endpoint: str  # what clients connect to (the connection string's endpoint)
    initial_keys: tuple[str, str]
    webhooks: WebhooksService | None = None


def _form(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _ticks_of_local(text: str, name: str) -> int | None:
    """A `datetime-local` field's value, read as UTC; empty: None."""
    if not text:
        return None
    ticks = timestamps.parse(text)
    if ticks is None:
        raise errors.not_a_date_time(text, name)
    return ticks


def local_input(ticks: int) -> str:
    """Ticks as the value of a `datetime-local` field (UTC, to the minute)."""
    return datetime.fromtimestamp(ticks / TICKS_PER_SECOND, UTC).strftime("%Y-%m-%dT%H:%M")


def shown(ticks: int) -> str:
    return datetime.fromtimestamp(ticks / TICKS_PER_SECOND, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def explained(error: ServiceError) -> str:
    """An error of the catalogue in words: its message, and its details' (where the specifics are)."""
    return " ".join([error.message, *(detail.message for detail in error.details)])


def mask(key: str) -> str:
    return f"{key[:4]}…{key[-4:]}"


class Console:
    def __init__(self, services: ConsoleServices, *, session_minutes: int,
                 oidc_sign_in: oidc.OidcSignIn | None = None) -> None:
        self.services = services
        self.oidc = oidc_sign_in  # sign-in with the OpenID Connect issuer (`oidc.py`); None: access key only
        self.sessions = ConsoleSessions(services.store, KeyRing(services.store, list(services.initial_keys)),
                                        session_minutes)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined)
        self.templates.globals.update(prefix=PREFIX, shown=shown, local_input=local_input, roles=ROLES,
                                      event_types=TYPES, scopes=SCOPES, mask=mask)
        page = self._signed_in
        self.router = Router([
            Route(PREFIX, self.to_overview, methods=["GET"]),
            Route(f"{PREFIX}/sign-in", self.sign_in_page, methods=["GET"]),
            Route(f"{PREFIX}/sign-in", self.sign_in, methods=["POST"]),
            *([Route(PREFIX + oidc.START_PATH, self.oidc_start, methods=["GET"]),
               Route(PREFIX + oidc.CALLBACK_PATH, self.oidc_callback, methods=["GET"])] if self.oidc else []),
            Route(f"{PREFIX}/static/{{name}}", self.static, methods=["GET"]),
            Route(f"{PREFIX}/", page(self.overview), methods=["GET"]),
            Route(f"{PREFIX}/sign-out", page(self.sign_out), methods=["POST"]),
            Route(f"{PREFIX}/rooms", page(self.rooms), methods=["GET"]),
            Route(f"{PREFIX}/rooms", page(self.room_create), methods=["POST"]),
            Route(f"{PREFIX}/rooms/{{room_id}}", page(self.room), methods=["GET"]),
            Route(f"{PREFIX}/rooms/{{room_id}}/window", page(self.room_window), methods=["POST"]),
            Route(f"{PREFIX}/rooms/{{room_id}}/pstn", page(self.room_pstn), methods=["POST"]),
            Route(f"{PREFIX}/rooms/{{room_id}}/delete", page(self.room_delete), methods=["POST"]),
            Route(f"{PREFIX}/rooms/{{room_id}}/roster", page(self.roster), methods=["POST"]),
            Route(f"{PREFIX}/rooms/{{room_id}}/join-as", page(self.join_as), methods=["POST"]),
            Route(f"{PREFIX}/rooms/{{room_id}}/call", page(self.call_panel), methods=["GET"]),
            Route(f"{PREFIX}/rooms/{{room_id}}/call/remove", page(self.call_remove), methods=["POST"]),
            Route(f"{PREFIX}/rooms/{{room_id}}/call/end", page(self.call_end), methods=["POST"]),
            Route(f"{PREFIX}/users", page(self.users), methods=["GET"]),
            Route(f"{PREFIX}/users", page(self.user_action), methods=["POST"]),
            Route(f"{PREFIX}/events", page(self.events), methods=["GET"]),
            Route(f"{PREFIX}/events/stream", page(self.event_stream), methods=["GET"]),
            Route(f"{PREFIX}/events/webhooks/{{subscription_id}}/redeliver", page(self.redeliver), methods=["POST"]),
            Route(f"{PREFIX}/keys", page(self.keys), methods=["GET"]),
            Route(f"{PREFIX}/keys/rotate", page(self.keys_rotate), methods=["POST"]),
        ])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.router(scope, receive, send)

    # -- sessions ---------------------------------------------------------------------------------------------
    def _cookie(self, request: Request, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path=sessions.COOKIE_PATH, httponly=True,
                            secure=request.url.scheme == "https", samesite="strict")

    def _signed_in(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                session = await self.sessions.check(request.cookies.get(sessions.COOKIE))
            except StoreUnavailable:
                return self._unavailable(request)
            if session is None:
                if request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"{PREFIX}/sign-in?{urlencode({'next': target})}", status_code=303)
                return self._refused(request, 401, "Sign in first: this session has ended or never began.")
            form: dict[str, list[str]] = {}
            if request.method == "POST":
                form = _form(await request.body())
                token = request.headers.get("x-csrf-token") or (form.get("csrf") or [""])[0]
                if not hmac.compare_digest(token.encode(), session.csrf.encode()):
                    return self._refused(request, 403, "This form has no valid CSRF token; reload the page.")
            return await handler(request, Context(session, form))

        return endpoint

    def _refused(self, request: Request, status: int, message: str) -> Response:
        return self.render(request, "refused.html", None, status=status, message=message)

    def _unavailable(self, request: Request) -> Response:
        response = self._refused(request, 503, "The database cannot be reached now; try again in a moment.")
        response.headers["Retry-After"] = "1"
        return response

    async def start_session(self, request: Request, principal: Principal, next_path: str = "", *,
                            from_elsewhere: bool = False) -> Response:
        """Sign `principal` in (it has just proved who it is): a new session, its cookie, and the way on to
        `next_path` (a console path; else the overview). The one way a session begins, whatever signed it in.

        `from_elsewhere`: the browser came from another site (the OpenID Connect issuer). The way on is then a page
        of the console's own site that moves on, not a redirect: a browser does not send the Strict session cookie
        along a redirect chain that began on another site."""
        session = await self.sessions.start(principal)
        next_path = next_path if next_path.startswith(PREFIX + "/") else f"{PREFIX}/"
        response: Response = RedirectResponse(next_path, status_code=303)
        if from_elsewhere:
            response = self.render(request, "signed_in.html", None, next=next_path, principal=principal.name)
        self._cookie(request, response, sessions.COOKIE, session.token, self.sessions.seconds_left(session))
        response.delete_cookie(sessions.SIGN_IN_COOKIE, path=sessions.COOKIE_PATH)
        return response

    def render(self, request: Request, template: str, session: Session | None, *, status: int = 200,
               **values: Any) -> HTMLResponse:
        body = self.templates.get_template(template).render(
            request=request, path=request.url.path, csrf=session.csrf if session else "",
            signed_in=session is not None, htmx=request.headers.get("hx-request") == "true",
            who=session.principal if session else "", who_oidc=session is not None and session.record.kind == OIDC,
            **values)
        return HTMLResponse(body, status_code=status, headers={
            "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; "
                                       "base-uri 'none'"})

    async def to_overview(self, request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file() or path.suffix not in STATIC_TYPES:
            return Response("Not found", status_code=404, media_type="text/plain")
        return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=3600"})

    def _sign_in_form(self, request: Request, *, status: int = 200, error: str | None = None,
                      next_path: str | None = None, issuer_sign_out: str | None = None) -> Response:
        token = secrets.token_urlsafe(18)
        next_path = next_path if next_path is not None else request.query_params.get("next") or ""
        response = self.render(request, "sign_in.html", None, status=status, error=error, sign_in_csrf=token,
                               next=next_path if next_path.startswith(PREFIX + "/") else "",
                               oidc_label=self.oidc.client.label if self.oidc else None,
                               issuer_sign_out=issuer_sign_out)
        self._cookie(request, response, sessions.SIGN_IN_COOKIE, token, 3600)
        return response

    async def sign_in_page(self, request: Request) -> Response:
        try:
            if await self.sessions.check(request.cookies.get(sessions.COOKIE)) is not None:
                return RedirectResponse(f"{PREFIX}/", status_code=303)
        except StoreUnavailable:
            return self._unavailable(request)
        issuer_sign_out = None
        if self.oidc and request.query_params.get("signed-out") == "issuer":
            issuer_sign_out = await self.oidc.end_session_url()
        return self._sign_in_form(request, issuer_sign_out=issuer_sign_out)

    async def sign_in(self, request: Request) -> Response:
        form = _form(await request.body())
        token = (form.get("csrf") or [""])[0]
        next_path = (form.get("next") or [""])[0]
        expected = request.cookies.get(sessions.SIGN_IN_COOKIE) or ""
        if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
            return self._sign_in_form(request, status=403, error="The form had no valid CSRF token; try again.",
                                      next_path=next_path)
        client = request.client.host if request.client else "-"
        try:
            wait = await self.sessions.retry_after(client)
            if wait:
                response = self._sign_in_form(request, status=429, next_path=next_path,
                                              error=f"Too many failed sign-ins; try again in {wait} seconds.")
                response.headers["Retry-After"] = str(wait)
                return response
            principal = await self.sessions.key_principal((form.get("access_key") or [""])[0])
            if principal is None:
                await self.sessions.failed(client)
                return self._sign_in_form(request, status=401, error="That is not an access key of this server.",
                                          next_path=next_path)
            return await self.start_session(request, principal, next_path)
        except StoreUnavailable:
            return self._unavailable(request)

    async def sign_out(self, request: Request, ctx: Context) -> Response:
        await self.sessions.end(ctx.session)
        # Signed in with the issuer: the sign-in page then offers to sign out there too.
        after = "?signed-out=issuer" if self.oidc and ctx.session.record.kind == OIDC else ""
        response = RedirectResponse(f"{PREFIX}/sign-in{after}", status_code=303)
        response.delete_cookie(sessions.COOKIE, path=sessions.COOKIE_PATH)
        return response

    # -- sign-in with the OpenID Connect issuer (oidc.py) ------------------------------------------------------
    def _redirect_uri(self, request: Request) -> str:
        assert self.oidc is not None
        return self.oidc.client.redirect_uri or f"{request.url.scheme}://{request.url.netloc}{PREFIX}" \
            f"{oidc.CALLBACK_PATH}"

    async def _oidc_failed(self, request: Request, client: str, failure: oidc.SignInFailed,
                           next_path: str) -> Response:
        await self.sessions.failed(client)
        log.info("console sign-in with the issuer failed from %s: %s", client, failure.__cause__ or failure)
        response = self._sign_in_form(request, status=failure.status, error=str(failure), next_path=next_path)
        response.delete_cookie(oidc.FLOW_COOKIE, path=PREFIX + oidc.START_PATH)
        return response

    async def _too_many(self, request: Request, client: str, next_path: str) -> Response | None:
        wait = await self.sessions.retry_after(client)
        if not wait:
            return None
        response = self._sign_in_form(request, status=429, next_path=next_path,
                                      error=f"Too many failed sign-ins; try again in {wait} seconds.")
        response.headers["Retry-After"] = str(wait)
        return response

    async def oidc_start(self, request: Request) -> Response:
        """Off to the issuer's sign-in, with this sign-in's state, nonce and PKCE verifier in the flow cookie."""
        assert self.oidc is not None
        client = request.client.host if request.client else "-"
        next_path = request.query_params.get("next") or ""
        next_path = next_path if next_path.startswith(PREFIX + "/") else f"{PREFIX}/"
        try:
            if (refused := await self._too_many(request, client, next_path)) is not None:
                return refused
            try:
                target, flow = await self.oidc.start(self._redirect_uri(request), next_path)
            except oidc.SignInFailed as exc:
                return await self._oidc_failed(request, client, exc, next_path)
        except StoreUnavailable:
            return self._unavailable(request)
        response = RedirectResponse(target, status_code=303)
        # SameSite=Lax, not Strict: the issuer sends the browser back to the callback by a cross-site navigation,
        # with which a browser sends Lax cookies (top-level GET) and never Strict ones. The cookie holds only this
        # sign-in's random state, nonce and PKCE verifier, is sent to the callback only (its path) and is gone in
        # minutes; the session cookie itself stays Strict.
        response.set_cookie(oidc.FLOW_COOKIE, flow.cookie(), max_age=oidc.FLOW_SECONDS,
                            path=PREFIX + oidc.START_PATH, httponly=True, secure=request.url.scheme == "https",
                            samesite="lax")
        return response

    async def oidc_callback(self, request: Request) -> Response:
        """The issuer's answer: checked (`OidcSignIn.finish`), then a session for the person it signs in."""
        assert self.oidc is not None
        client = request.client.host if request.client else "-"
        flow = oidc.Flow.of_cookie(request.cookies.get(oidc.FLOW_COOKIE), time.time())
        next_path = flow.next_path if flow else f"{PREFIX}/"
        try:
            if (refused := await self._too_many(request, client, next_path)) is not None:
                return refused
            try:
                person = await self.oidc.finish(dict(request.query_params), flow, self._redirect_uri(request))
            except oidc.SignInFailed as exc:
                return await self._oidc_failed(request, client, exc, next_path)
            response = await self.start_session(request, Principal(OIDC, person.shown), next_path,
                                                from_elsewhere=True)
        except StoreUnavailable:
            return self._unavailable(request)
        response.delete_cookie(oidc.FLOW_COOKIE, path=PREFIX + oidc.START_PATH)
        return response

    # -- overview ---------------------------------------------------------------------------------------------
    async def _keys_in_force(self) -> dict[str, str]:
        stored = await self.services.store.get_access_keys()
        return {name: stored.get(name, initial) for name, initial in zip(keys.NAMES, self.services.initial_keys,
                                                                         strict=True)}

    async def overview(self, request: Request, ctx: Context) -> Response:
        counts = {}
        for state in STATES:  # counted by the store, up to a bound: beyond it, "10000+"
            found = await self.services.rooms.count_in_state(state, MAX_COUNTED_ROOMS + 1)
            counts[state] = f"{MAX_COUNTED_ROOMS}+" if found > MAX_COUNTED_ROOMS else str(found)
        calls = self.services.calls
        in_call = [] if calls is None else await calls.rooms_in_call(MAX_LISTED_CALLS + 1)
        in_force = await self._keys_in_force()
        return self.render(
            request, "overview.html", ctx.session, counts=counts, **await self._webhooks(dead_letters=False),
            calls=in_call[:MAX_LISTED_CALLS], more_calls=len(in_call) > MAX_LISTED_CALLS,
            calls_configured=calls is not None,
            connection_string=f"endpoint={self.services.endpoint};accesskey={in_force['primary']}")

    # -- rooms ------------------------------------------------------------------------------------------------
    async def rooms(self, request: Request, ctx: Context, *, error: str | None = None, status: int = 200) -> Response:
        query = request.query_params
        search, state = query.get("q", "").strip(), query.get("state", "")
        participant = query.get("participant", "").strip()
        cursor = query.get("cursor") or None
        now = self.services.clock.now()
        filters = {"q": search, "state": state, "participant": participant}
        try:
            page = await self.services.rooms.rooms_query(
                states=[state] if state else None, participant=participant or None, id_prefix=search or None,
                cursor=cursor)
        except ServiceError as exc:
            if error is None:
                error, status = explained(exc), exc.status
            page = Page([], None)
        next_link = None
        if page.next_cursor:
            next_link = f"{PREFIX}/rooms?{urlencode({**filters, 'cursor': page.next_cursor})}"
        return self.render(request, "rooms.html", ctx.session, status=status, error=error, now=now,
                           rows=[room_row(room, now) for room in page.items], next_link=next_link, **filters)

    async def room_create(self, request: Request, ctx: Context) -> Response:
        try:
            command = CreateRoom(
                valid_from=_ticks_of_local(ctx.field("valid_from"), "validFrom"),
                valid_until=_ticks_of_local(ctx.field("valid_until"), "validUntil"),
                pstn_dial_out_enabled=ctx.field("pstn") == "on",
                participants={raw_id: ctx.field("role") or None for raw_id in _IDS_SPLIT.split(ctx.field("ids"))
                              if raw_id},
            )
            created = await self.services.rooms.rooms_create(command, list(Role))
        except ServiceError as exc:
            return await self.rooms(request, ctx, error=explained(exc), status=exc.status)
        return RedirectResponse(f"{PREFIX}/rooms/{created.room_id}", status_code=303)

    async def room(self, request: Request, ctx: Context, *, error: str | None = None, status: int = 200,
                   notice: str | None = None) -> Response:
        room_id = request.path_params["room_id"]
        try:
            room = await self.services.rooms.rooms_get(room_id)
            roster = []
            cursor = None
            while True:
                page = await self.services.rooms.participants_list(room_id, cursor)
                roster += page.items
                cursor = page.next_cursor
                if cursor is None:
                    break
        except ServiceError as exc:
            return self._refused(request, exc.status, f"Room {room_id}: {explained(exc)}")
        now = self.services.clock.now()
        return self.render(request, "room.html", ctx.session, status=status, room=room, roster=roster,
                           state=window_state(room, now), timeline=timeline(room, now), now=now, error=error,
                           notice=notice, join_minutes=JOIN_AS_MINUTES, **await self._call_values(room_id))

    async def _room_change(self, request: Request, ctx: Context, change: Callable[[str], Awaitable[object]],
                           ) -> Response:
        room_id = request.path_params["room_id"]
        try:
            await change(room_id)
        except ServiceError as exc:
            return await self.room(request, ctx, error=explained(exc), status=exc.status)
        return RedirectResponse(f"{PREFIX}/rooms/{room_id}", status_code=303)

    async def room_window(self, request: Request, ctx: Context) -> Response:
        async def change(room_id: str) -> object:
            return await self.services.rooms.rooms_update(room_id, UpdateRoom(
                valid_from=_ticks_of_local(ctx.field("valid_from"), "validFrom"),
                valid_until=_ticks_of_local(ctx.field("valid_until"), "validUntil")))

        return await self._room_change(request, ctx, change)

    async def room_pstn(self, request: Request, ctx: Context) -> Response:
        async def change(room_id: str) -> object:
            return await self.services.rooms.rooms_update(
                room_id, UpdateRoom(pstn_dial_out_enabled=ctx.field("pstn") == "on"))

        return await self._room_change(request, ctx, change)

    async def room_delete(self, request: Request, ctx: Context) -> Response:
        room_id = request.path_params["room_id"]
        if ctx.field("confirm") != room_id:
            response = await self.room(request, ctx)
            if response.status_code != 200:
                return response
            return self.render(request, "confirm_delete.html", ctx.session, room_id=room_id)
        try:
            await self.services.rooms.rooms_delete(room_id)
        except ServiceError as exc:
            return await self.room(request, ctx, error=explained(exc), status=exc.status)
        return RedirectResponse(f"{PREFIX}/rooms", status_code=303)

    async def roster(self, request: Request, ctx: Context) -> Response:
        action = ctx.field("action")
        changes: dict[str, Upsert | None]
        if action == "add":
            changes = {raw_id: Upsert(ctx.field("role") or None) for raw_id in _IDS_SPLIT.split(ctx.field("ids"))
                       if raw_id}
        elif action == "role":
            changes = {raw_id: Upsert(ctx.field("new_role") or None) for raw_id in ctx.fields("selected")}
        elif action == "remove":
            changes = dict.fromkeys(ctx.fields("selected"))
        else:
            return await self.room(request, ctx, error="Choose what to do with the roster.", status=400)
        if not changes:
            return await self.room(request, ctx, error="No participant given: paste ids or select rows.", status=400)

        async def change(room_id: str) -> object:
            await self.services.rooms.participants_update(room_id, changes, list(Role))
            return None

        return await self._room_change(request, ctx, change)

    async def join_as(self, request: Request, ctx: Context) -> Response:
        room_id, raw_id = request.path_params["room_id"], ctx.field("raw_id")
        try:
            token = await self.services.identity.issue_token(raw_id, ["voip"], JOIN_AS_MINUTES)
        except ServiceError as exc:
            return await self.room(request, ctx, error=f"{raw_id}: {explained(exc)}", status=exc.status)
        fragment = urlencode({"token": token.token, "name": ctx.field("name") or raw_id[-8:]}, quote_via=quote)
        return RedirectResponse(f"/call/{room_id}#{fragment}", status_code=303)

    # -- the live call ----------------------------------------------------------------------------------------
    async def _call_values(self, room_id: str) -> dict[str, Any]:
        calls = self.services.calls
        found, problem = None, None
        if calls is not None:
            try:
                found = await calls.feeds(room_id)
            except CallsUnavailable as exc:
                problem = str(exc)
        values = {"room_id": room_id, "configured": calls is not None, "problem": problem,
                  "started_at": found[0].started_at if found else None,
                  "people": call_people(found[1]) if found else []}
        return {**values, "digest": hashlib.sha256(repr(sorted(values.items())).encode()).hexdigest()[:16]}

    async def call_panel(self, request: Request, ctx: Context, *, notice: str | None = None) -> Response:
        """The call panel; polled by htmx with the digest of what it shows, and answered 204 (nothing to swap,
        focus stays where it is) while that has not changed."""
        values = await self._call_values(request.path_params["room_id"])
        htmx = request.headers.get("hx-request") == "true"
        if htmx and request.method == "GET" and request.query_params.get("seen") == values["digest"]:
            return Response(status_code=204)
        return self.render(request, "call_panel.html" if htmx else "call_page.html", ctx.session, notice=notice,
                           **values)

    async def _call_action(self, request: Request, ctx: Context, act: Callable[[CallService, str], Awaitable[bool]],
                           done: str, missing: str) -> Response:
        room_id = request.path_params["room_id"]
        calls = self.services.calls
        if calls is None:
            return self._refused(request, 501, "Room calls are not configured on this server (--janus-url).")
        try:
            acted = await act(calls, room_id)
        except CallsUnavailable as exc:
            return self._refused(request, 503, str(exc))
        if request.headers.get("hx-request") == "true":
            return await self.call_panel(request, ctx, notice=done if acted else missing)
        return RedirectResponse(f"{PREFIX}/rooms/{room_id}", status_code=303)

    async def call_remove(self, request: Request, ctx: Context) -> Response:
        raw_id = ctx.field("raw_id")
        return await self._call_action(request, ctx, lambda calls, room: calls.remove_participant(room, raw_id),
                                       f"{raw_id} was taken out of the call.", f"{raw_id} is not in the call.")

    async def call_end(self, request: Request, ctx: Context) -> Response:
        return await self._call_action(request, ctx, lambda calls, room: calls.end_call(room, "EndedByApplication"),
                                       "The call was ended.", "No call is in progress.")

    # -- users ------------------------------------------------------------------------------------------------
    async def users(self, request: Request, ctx: Context, *, status: int = 200, **values: Any) -> Response:
        values = {"error": None, "notice": None, "created": None, "token": None, "user_id": "", **values}
        return self.render(request, "users.html", ctx.session, status=status, min_minutes=MIN_TOKEN_MINUTES,
                           max_minutes=MAX_TOKEN_MINUTES, **values)

    async def user_action(self, request: Request, ctx: Context) -> Response:
        identity = self.services.identity
        action, raw_id = ctx.field("action"), ctx.field("user_id")
        try:
            if action == "create":
                user, _ = await identity.create_user()
                return await self.users(request, ctx, created=user.raw_id, user_id=user.raw_id)
            if action == "token":
                minutes = ctx.field("minutes")
                if minutes and not minutes.isdigit():
                    raise errors.not_a_whole_number("expiresInMinutes")
                token = await identity.issue_token(raw_id, ctx.fields("scopes"), int(minutes) if minutes else None)
                return await self.users(request, ctx, token=token, user_id=raw_id)
            if action == "revoke":
                await identity.revoke_tokens(raw_id)
                return await self.users(request, ctx, notice=f"The tokens of {raw_id} were revoked.",
                                        user_id=raw_id)
            if action == "delete":
                await identity.delete_user(raw_id)
                return await self.users(request, ctx, notice=f"{raw_id} was deleted.")
        except ServiceError as exc:
            return await self.users(request, ctx, status=exc.status, error=explained(exc), user_id=raw_id)
        return await self.users(request, ctx, status=400, error="Choose what to do.", user_id=raw_id)

    # -- events -----------------------------------------------------------------------------------------------
    def _event_filters(self, request: Request) -> tuple[list[str] | None, str | None]:
        types = [name for name in request.query_params.getlist("type") if name]
        return types or None, request.query_params.get("room_id") or None

    async def events(self, request: Request, ctx: Context, *, notice: str | None = None, error: str | None = None,
                     status: int = 200) -> Response:
        types, room_id = self._event_filters(request)
        try:
            latest, after = await self.services.events.latest(types, room_id, 50)
        except ServiceError as exc:
            return self._refused(request, exc.status, explained(exc))
        stream = f"{PREFIX}/events/stream?" + urlencode(
            [("type", name) for name in types or []] + ([("room_id", room_id)] if room_id else [])
            + ([("after", after)] if after else []))
        return self.render(request, "events.html", ctx.session, rows=[event_row(e) for e in reversed(latest)],
                           chosen_types=types or [], room_id=room_id or "", stream=stream, status=status,
                           notice=notice, error=error, **await self._webhooks(dead_letters=True))

    async def _webhooks(self, *, dead_letters: bool) -> dict[str, Any]:
        """The webhook subscriptions with their delivery state (and, on the events page, their dead letters)."""
        service = self.services.webhooks
        if service is None:
            return {}
        views = await service.list_all()
        letters = {}
        if dead_letters:
            letters = {view.subscription.id: [dead_letter_row(*letter) for letter in
                                              await service.dead_letters(view.subscription.id)]
                       for view in views if view.state.dead_lettered}
        return {"webhooks": [webhook_row(view) for view in views], "dead_letters": letters}

    async def redeliver(self, request: Request, ctx: Context) -> Response:
        service = self.services.webhooks
        if service is None:
            return self._refused(request, 404, "Webhook subscriptions are not served here.")
        subscription_id = request.path_params["subscription_id"]
        chosen = ctx.fields("event_id")
        try:
            count = await service.redeliver(subscription_id, chosen or None)
        except ServiceError as exc:
            return await self.events(request, ctx, error=explained(exc), status=exc.status)
        return await self.events(request, ctx, notice=f"{count} dead letter{'s' if count != 1 else ''} queued again "
                                                      f"for {subscription_id}.")

    async def event_stream(self, request: Request, ctx: Context) -> Response:
        """Server-sent events: each new event of the log (with the page's filters) as a rendered row."""
        types, room_id = self._event_filters(request)
        after = request.headers.get("last-event-id") or request.query_params.get("after") or None
        row = self.templates.get_template("event_row.html")
        try:
            await self.services.events.read(after, types, room_id, 1)  # bad filters: refused before streaming
        except ServiceError as exc:
            return Response(exc.message, status_code=exc.status, media_type="text/plain")

        async def stream(after: str | None) -> Any:
            yield ": tail\n\n"
            # The session's end (expiry, or sign-out on any worker) ends the stream too: checked after each wait; and
            # the server's stop (the browser reconnects to another worker, or once the server is back).
            while not STOPPING.is_set() and await self.sessions.check(ctx.session.token) is not None:
                page = await self.services.events.read(after, types, room_id, 100, SSE_WAIT_SECONDS)
                if not page:
                    yield ": still here\n\n"
                    continue
                for logged in page:
                    html = row.render(row=event_row(logged)).replace("\n", "")
                    yield f"id: {logged.cursor}\nevent: logged\ndata: {html}\n\n"
                after = page[-1].cursor

        return StreamingResponse(stream(after), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # -- keys -------------------------------------------------------------------------------------------------
    async def keys(self, request: Request, ctx: Context, *, notice: str | None = None, error: str | None = None,
                   status: int = 200) -> Response:
        in_force = await self._keys_in_force()
        rows = [{"name": name, "key": key, "well_known": keys.is_well_known(key)} for name, key in in_force.items()]
        return self.render(request, "keys.html", ctx.session, status=status, rows=rows, notice=notice, error=error)

    async def keys_rotate(self, request: Request, ctx: Context) -> Response:
        name = ctx.field("name")
        if name not in keys.NAMES:
            return await self.keys(request, ctx, error="Choose the primary or the secondary key.", status=400)
        if ctx.field("confirm") != "yes":
            return await self.keys(request, ctx, status=400,
                                   error=f"Tick the box to confirm: clients signing with the {name} key stop working.")
        new = await keys.rotate(self.services.store, name, self.services.clock.now())
        # Re-read at once: sessions signed in with a key rotated away end now in this worker (within a second in the
        # others). This session goes on, signed in anew with the primary key in force (if it was a key's).
        self.sessions.ring = KeyRing(self.services.store, keys.ordered(await self._keys_in_force()))
        session = ctx.session
        if session.record.kind == ACCESS_KEY:
            primary = (await self.sessions.ring.refresh())[0]
            session = await self.sessions.renew(session, Principal(ACCESS_KEY, "the primary access key", primary))
        response = await self.keys(request, Context(session, {}), notice=f"Rotated: {', '.join(sorted(new))}. "
                                   "Clients need the new connection string.")
        if session is not ctx.session:
            self._cookie(request, response, sessions.COOKIE, session.token, self.sessions.seconds_left(session))
        return response
