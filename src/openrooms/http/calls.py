"""Room calls on the wire (openrooms extension, api-version 2026-11-01-openrooms):

- `WS /rooms/{roomId}/call/ws`: a participant's signalling (JSON messages, see docs/calls.md); the first message
  is `{"type": "join", "accessToken": "<the user's ACS access token>"}`;
- `GET /rooms/{roomId}/call`, `POST /rooms/{roomId}/call:end`, `DELETE /rooms/{roomId}/call/participants/{rawId}`
  (access key): the application server's view and controls;
- `GET /call/{roomId}`: the call page (static HTML and JS, no credential: the token stays in the page).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from openrooms.calls.service import CallConnection, CallService, CallsUnavailable, ClientGone, refusal
from openrooms.http.versions import CALLS
from openrooms.http.wire import json_response, query_of
from openrooms.service import errors, ids, timestamps
from openrooms.service.errors import ServiceError
from openrooms.service.stopping import STOPPING

WS_PATH = re.compile(r"/rooms/(?P<room_id>[^/]+)/call/ws")
STATIC = Path(__file__).parents[1] / "calls" / "static"
PAGE_PREFIX = "/call/"
MAX_MESSAGE = 256 * 1024
JOIN_SECONDS = 30.0  # how long a connection may take to send its join
STOPPED = "server stopping"  # the reason of the `ended` every connection gets when the server stops


def is_page_path(path: str) -> bool:
    return path.startswith(PAGE_PREFIX) or path.startswith("/call-static/")


ASSET_TYPES = {"call.js": "text/javascript", "call.css": "text/css"}


@functools.cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


class CallParticipantBody(msgspec.Struct):
    rawId: str
    role: str
    joinedAt: str
    publishes: list[str]
    displayName: str | None = None


class CallBody(msgspec.Struct):
    roomId: str
    serverCallId: str
    startedAt: str
    participants: list[CallParticipantBody]


class CallsApi:
    def __init__(self, service: CallService | None) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/rooms/{room_id}/call", self.call_get, methods=["GET"]),
            Route("/rooms/{room_id}/call:end", self.call_end, methods=["POST"]),
            Route("/rooms/{room_id}/call/participants/{raw_id}", self.call_participant_remove, methods=["DELETE"]),
            Route("/call/{room_id}", self.page, methods=["GET"]),
            Route("/call-static/call.js", self.static, methods=["GET"]),
            Route("/call-static/call.css", self.static, methods=["GET"]),
        ]

    def _service(self) -> CallService:
        if self.service is None:
            raise errors.calls_not_configured()
        return self.service

    async def call_get(self, request: Request) -> Response:
        room_id = request.path_params["room_id"]
        ids.check_room_id(room_id)
        service = self._service()
        try:
            found = await service.feeds(room_id)
        except CallsUnavailable as exc:
            raise errors.calls_unavailable(str(exc)) from None
        if found is None:
            raise errors.call_not_found(room_id)
        stored, feeds = found
        people: dict[str, CallParticipantBody] = {}
        for feed in sorted(feeds, key=lambda f: (f.kind != "camera", f.joined_at)):
            person = people.get(feed.raw_id)
            if person is None:
                person = people[feed.raw_id] = CallParticipantBody(
                    feed.raw_id, feed.role, timestamps.format(feed.joined_at), [], feed.display_name)
            if feed.publishing:
                person.publishes += ["screen"] if feed.kind == "screen" else (
                    ["audio", "video"] if feed.audio_mids else ["video"])
        return json_response(CallBody(room_id, stored.server_call_id, timestamps.format(stored.started_at),
                                      list(people.values())))

    async def call_end(self, request: Request) -> Response:
        room_id = request.path_params["room_id"]
        ids.check_room_id(room_id)
        if not await self._service().end_call(room_id, "EndedByApplication"):
            raise errors.call_not_found(room_id)
        return Response(status_code=204)

    async def call_participant_remove(self, request: Request) -> Response:
        room_id, raw_id = request.path_params["room_id"], request.path_params["raw_id"]
        ids.check_room_id(room_id)
        if not await self._service().remove_participant(room_id, raw_id):
            raise errors.call_participant_not_found(raw_id, room_id)
        return Response(status_code=204)

    async def page(self, request: Request) -> Response:
        return Response(_static("call.html"), media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store"})

    async def static(self, request: Request) -> Response:
        name = request.url.path.rsplit("/", 1)[-1]
        return Response(_static(name), media_type=ASSET_TYPES[name])

    # -- the signalling WebSocket ------------------------------------------------------------------------------
    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        ws = WebSocket(scope, receive, send)
        match = WS_PATH.fullmatch(scope["path"])
        if match is None:
            await ws.close(code=4404)
            return
        await ws.accept()
        try:
            CALLS.resolve(query_of(scope["query_string"]).get("api-version"))
            ids.check_room_id(match.group("room_id"))
            service = self._service()
        except ServiceError as exc:
            await ws.send_json({"type": "refused", "status": exc.status, "code": exc.code, "message": exc.message})
            await ws.close(code=4000 + exc.status)
            return
        lock = asyncio.Lock()

        async def push(message: dict[str, Any]) -> None:
            async with lock:
                try:
                    await ws.send_text(json.dumps(message))
                except (WebSocketDisconnect, WebSocketDisconnected) as exc:  # the participant hung up
                    raise ClientGone(str(exc)) from exc

        connection = CallConnection(service, match.group("room_id"), push, ws.headers.get("user-agent", ""))
        reason = "left"
        try:
            # The server's stop: a connection that has not joined yet ends at once too, as a joined one does.
            first = await self._unless_stopping(ws.receive_text())
            if first is None:
                reason = STOPPED
                return
            hello = json.loads(first)
            if not isinstance(hello, dict) or hello.get("type") != "join" or not hello.get("accessToken"):
                await push(refusal("BadRequest", 'The first message must be {"type": "join", "accessToken": ...}.'))
                await ws.close(code=4400)
                return
            name = hello.get("displayName")
            await connection.join(str(hello["accessToken"]), str(name)[:64] if name else None)
            if connection.ended.is_set():
                await ws.close(code=4403)
                return
            reader = asyncio.create_task(self._read(ws, connection, push))
            ended = asyncio.create_task(connection.ended.wait())
            # The server's stop: leave the call as on a hang-up (its events are written before the worker ends).
            stopping = asyncio.create_task(STOPPING.wait())
            await asyncio.wait({reader, ended, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                reason = STOPPED
            for task in (reader, ended, stopping):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        except (WebSocketDisconnect, ClientGone, TimeoutError, ValueError):
            pass
        finally:
            await connection.end(reason, None)
            with contextlib.suppress(Exception):
                await ws.close(code=1000)

    @staticmethod
    async def _unless_stopping(receiving: Coroutine[Any, Any, str]) -> str | None:
        """The first message, or None once the server stops (`TimeoutError` after `JOIN_SECONDS`)."""
        received = asyncio.ensure_future(receiving)
        stopping = asyncio.ensure_future(STOPPING.wait())
        try:
            done, _ = await asyncio.wait({received, stopping}, timeout=JOIN_SECONDS,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            received.cancel()
            stopping.cancel()
        if received in done:
            return received.result()
        if stopping in done:
            return None
        raise TimeoutError

    async def _read(self, ws: WebSocket, connection: CallConnection, push: Any) -> None:
        with contextlib.suppress(WebSocketDisconnect, ClientGone):
            while True:
                raw = await ws.receive_text()
                if len(raw) > MAX_MESSAGE:
                    await push(refusal("BadRequest", "The message is too large."))
                    continue
                try:
                    message = json.loads(raw)
                except ValueError:
                    await push(refusal("BadRequest", "Messages are JSON objects."))
                    continue
                if not isinstance(message, dict):
                    await push(refusal("BadRequest", "Messages are JSON objects."))
                    continue
                await connection.handle(message)
