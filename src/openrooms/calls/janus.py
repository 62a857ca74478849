"""The Janus WebRTC Server's JSON API over WebSocket (subprotocol `janus-protocol`), and its VideoRoom plugin.

A `JanusSession` is one Janus session on one WebSocket: requests are matched to their replies by `transaction`
(an `ack` only says an asynchronous request was taken; its answer comes as an `event` with the same
transaction), and every other event goes to the queue of the plugin handle it is about (`sender`). A keepalive
is sent well inside Janus's 60 s session timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

log = logging.getLogger("openrooms.calls")

VIDEOROOM = "janus.plugin.videoroom"
KEEPALIVE_SECONDS = 25
REQUEST_TIMEOUT = 10.0
# VideoRoom error codes openrooms looks at.
NO_SUCH_ROOM = 426
ROOM_EXISTS = 427
NO_SUCH_FEED = 428


class JanusError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"Janus error {code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass
class Reply:
    data: dict[str, Any]  # the plugin's answer (`plugindata.data`), or Janus's own body
    jsep: dict[str, Any] | None = None


@dataclass
class Handle:
    session: JanusSession
    id: int
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def message(self, body: Mapping[str, Any], jsep: Mapping[str, Any] | None = None) -> Reply:
        request: dict[str, Any] = {"janus": "message", "handle_id": self.id, "body": dict(body)}
        if jsep is not None:
            request["jsep"] = dict(jsep)
        return await self.session.request(request)

    async def trickle(self, candidate: Mapping[str, Any] | None) -> None:
        await self.session.send({"janus": "trickle", "handle_id": self.id,
                                 "candidate": dict(candidate) if candidate else {"completed": True}})

    async def detach(self) -> None:
        with contextlib.suppress(JanusError, OSError, websockets.ConnectionClosed, TimeoutError):
            await self.session.request({"janus": "detach", "handle_id": self.id})
        self.session.handles.pop(self.id, None)


class JanusSession:
    def __init__(self, connection: ClientConnection, api_secret: str | None) -> None:
        self._connection = connection
        self._api_secret = api_secret
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.handles: dict[int, Handle] = {}
        self.session_id = 0
        self.closed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(cls, url: str, api_secret: str | None) -> JanusSession:
        connection = await websockets.connect(url, subprotocols=[websockets.Subprotocol("janus-protocol")],
                                              open_timeout=REQUEST_TIMEOUT, max_size=2**22)
        session = cls(connection, api_secret)
        session._tasks.append(asyncio.create_task(session._read()))
        try:
            created = await session.request({"janus": "create"})
        except BaseException:
            await session.close()
            raise
        session.session_id = int(created.data["data"]["id"])
        session._tasks.append(asyncio.create_task(session._keepalive()))
        return session

    async def attach(self, plugin: str = VIDEOROOM) -> Handle:
        attached = await self.request({"janus": "attach", "plugin": plugin})
        handle = Handle(self, int(attached.data["data"]["id"]))
        self.handles[handle.id] = handle
        return handle

    async def send(self, request: dict[str, Any]) -> str:
        transaction = secrets.token_hex(8)
        request["transaction"] = transaction
        if self.session_id:
            request["session_id"] = self.session_id
        if self._api_secret:
            request["apisecret"] = self._api_secret
        await self._connection.send(json.dumps(request))
        return transaction

    async def request(self, request: dict[str, Any]) -> Reply:
        """Send and wait for the reply (after any `ack`); a Janus or plugin error raises `JanusError`."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        transaction = await self._send_pending(request, future)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                reply = await future
        finally:
            self._pending.pop(transaction, None)
        if reply.get("janus") == "error":
            error = reply.get("error", {})
            raise JanusError(int(error.get("code", 0)), str(error.get("reason", "")))
        plugindata = reply.get("plugindata")
        if plugindata is not None:
            data = plugindata.get("data", {})
            if "error_code" in data or "error" in data:
                raise JanusError(int(data.get("error_code", 0)), str(data.get("error", "")))
            return Reply(data, reply.get("jsep"))
        return Reply(reply)

    async def _send_pending(self, request: dict[str, Any], future: asyncio.Future[dict[str, Any]]) -> str:
        transaction = secrets.token_hex(8)
        self._pending[transaction] = future
        request["transaction"] = transaction
        if self.session_id:
            request["session_id"] = self.session_id
        if self._api_secret:
            request["apisecret"] = self._api_secret
        try:
            await self._connection.send(json.dumps(request))
        except BaseException:
            self._pending.pop(transaction, None)
            raise
        return transaction

    async def _read(self) -> None:
        try:
            async for raw in self._connection:
                message = json.loads(raw)
                kind = message.get("janus")
                if kind in ("ack", "keepalive"):
                    continue
                future = self._pending.get(message.get("transaction", ""))
                if future is not None and not future.done() and kind in ("success", "error", "event"):
                    future.set_result(message)
                    continue
                handle = self.handles.get(int(message.get("sender", 0) or 0))
                if handle is not None:
                    handle.events.put_nowait(message)
        except (websockets.ConnectionClosed, OSError, ValueError) as exc:
            log.info("janus session %s ended: %s", self.session_id, exc)
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the Janus connection closed"))
            for handle in self.handles.values():
                handle.events.put_nowait({"janus": "closed"})

    async def _keepalive(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed, OSError):
            while True:
                await asyncio.sleep(KEEPALIVE_SECONDS)
                await self.send({"janus": "keepalive"})

    async def close(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed, OSError, JanusError, TimeoutError, ConnectionError):
            if self.session_id and not self.closed.is_set():
                await self.request({"janus": "destroy"})
        for task in self._tasks:
            task.cancel()
        await self._connection.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass(frozen=True, slots=True)
class VideoRoomSpec:
    """A VideoRoom as openrooms makes it: its number, and the secret and pin only openrooms knows."""

    number: int
    secret: str
    pin: str


async def ensure_room(handle: Handle, spec: VideoRoomSpec, publishers: int) -> None:
    """Create the VideoRoom (again, after a Janus restart); one that exists already is fine."""
    try:
        await handle.message({"request": "create", "room": spec.number, "secret": spec.secret, "pin": spec.pin,
                              "publishers": publishers, "is_private": True, "permanent": False,
                              "notify_joining": True, "description": "openrooms"})
    except JanusError as exc:
        if exc.code != ROOM_EXISTS:
            raise


async def destroy_room(handle: Handle, spec: VideoRoomSpec) -> None:
    try:
        await handle.message({"request": "destroy", "room": spec.number, "secret": spec.secret})
    except JanusError as exc:
        if exc.code != NO_SUCH_ROOM:
            raise
