"""A room call connection's own tasks, and the server's stop, in process over SQLite with a Janus of the test's own
(no media server): a task that fails (a pump of Janus events here) is logged once with its traceback and its
participant leaves the call as on any leave, told why; the ordinary ends of the tasks log nothing; and a call
WebSocket that has not sent its join yet ends at once when the server stops, as a joined one does."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from openrooms.calls import janus
from openrooms.calls.service import TASK_FAILED, CallConnection, CallService, ClientGone
from openrooms.events import types as t
from openrooms.http.calls import CallsApi
from openrooms.service.admission import AdmissionService
from openrooms.service.clock import TICKS_PER_SECOND, FixedClock
from openrooms.service.identity import IdentityService
from openrooms.service.model import CreateRoom, Role
from openrooms.service.rooms import RoomsService
from openrooms.service.stopping import STOPPING
from openrooms.store.sqlite import SqliteStore
from tests import support

START = 1_790_000_000 * TICKS_PER_SECOND
JANUS_URL = "ws://janus.test/"  # never dialled: the test's Janus answers in process


@pytest.fixture(autouse=True)
def no_openrooms_errors(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """As in tests/calls: a test fails when an `openrooms` logger logged an ERROR, unless marked `logs_errors`."""
    with support.no_openrooms_errors(request, caplog):
        yield


class Events:
    """A handle's event stream: what the test puts there comes out of it; an exception put there is raised."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[dict[str, Any] | Exception] = asyncio.Queue()

    def put_nowait(self, item: dict[str, Any] | Exception) -> None:
        self._queue.put_nowait(item)

    async def get(self) -> dict[str, Any]:
        item = await self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item


class Handle:
    """A VideoRoom handle: answers the requests openrooms makes as Janus does, keeping the room's participants."""

    def __init__(self, janus_: Janus, handle_id: int) -> None:
        self.janus = janus_
        self.id = handle_id
        self.events = Events()

    async def message(self, body: Mapping[str, Any], jsep: Mapping[str, Any] | None = None) -> janus.Reply:
        match body.get("request"):
            case "join" if body.get("ptype") == "publisher":
                self.janus.participants[self.id] = str(body["display"])
                self.janus.publishers.append(self)
                return janus.Reply({"videoroom": "joined", "id": self.id, "publishers": []})
            case "listparticipants":
                return janus.Reply({"participants": [{"id": feed_id, "display": display}
                                                     for feed_id, display in self.janus.participants.items()]})
            case "destroy":
                self.janus.destroyed += 1
        return janus.Reply({"videoroom": "success"})

    async def trickle(self, candidate: Mapping[str, Any] | None) -> None:
        pass

    async def detach(self) -> None:
        self.janus.participants.pop(self.id, None)


class Session:
    def __init__(self, janus_: Janus) -> None:
        self.janus = janus_
        self.handles: list[Handle] = []
        self.closed = asyncio.Event()

    async def attach(self) -> Handle:
        handle = Handle(self.janus, next(self.janus.ids))
        self.handles.append(handle)
        return handle

    async def close(self) -> None:
        for handle in self.handles:
            self.janus.participants.pop(handle.id, None)
        self.closed.set()


@dataclass
class Janus:
    """The Janus server of a test: `JanusSession.open` opens its sessions."""

    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    participants: dict[int, str] = field(default_factory=dict)  # the VideoRoom's, by feed id
    publishers: list[Handle] = field(default_factory=list)  # every handle joined as publisher, in order
    sessions: list[Session] = field(default_factory=list)  # every session opened, in order
    destroyed: int = 0

    async def open(self, url: str, api_secret: str | None) -> Session:
        self.sessions.append(Session(self))
        return self.sessions[-1]


@dataclass
class Call:
    store: SqliteStore
    janus: Janus
    service: CallService
    room_id: str
    token: str
    sent: list[dict[str, Any]] = field(default_factory=list)

    def connection(self) -> CallConnection:
        async def send(message: dict[str, Any]) -> None:
            self.sent.append(message)

        return CallConnection(self.service, self.room_id, send)

    async def event_types(self) -> list[str]:
        calls = (t.CALL_STARTED, t.CALL_ENDED, t.CALL_PARTICIPANT_ADDED, t.CALL_PARTICIPANT_REMOVED)
        return [event.type for event in await self.store.list_events(None, calls, self.room_id, 100)]


@pytest.fixture
async def call(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Call]:
    """A room with one Attendee on its roster, and a call service whose Janus is the test's."""
    fake = Janus()
    monkeypatch.setattr(janus.JanusSession, "open", fake.open)
    store = SqliteStore.open(None)
    clock = FixedClock(START)
    identity = IdentityService(store, clock)
    user, token = await identity.create_user(["voip"], 60)
    assert token is not None
    room = await RoomsService(store, clock).rooms_create(
        CreateRoom(None, None, False, {user.raw_id: Role.ATTENDEE.value}), list(Role))
    service = CallService(AdmissionService(identity, store, clock), store, clock, [JANUS_URL], None)
    try:
        yield Call(store, fake, service, room.room_id, token.token)
    finally:
        await service.close()
        await store.close()


async def joined(call: Call) -> tuple[CallConnection, Handle]:
    """A participant in the room's call, and the handle of its camera feed."""
    connection = call.connection()
    await connection.join(call.token, "Ann")
    assert call.sent[-1]["type"] == "joined"
    return connection, call.janus.publishers[-1]


async def left(connection: CallConnection) -> None:
    async with asyncio.timeout(10):  # a guard against a hang, not a measure
        await connection.ended.wait()


LEFT_AS_ON_ANY_LEAVE = [t.CALL_STARTED, t.CALL_PARTICIPANT_ADDED, t.CALL_PARTICIPANT_REMOVED, t.CALL_ENDED]


@pytest.mark.logs_errors
async def test_a_failing_pump_is_logged_with_its_traceback_and_its_participant_leaves_the_call(
        call: Call, caplog: pytest.LogCaptureFixture) -> None:
    connection, camera = await joined(call)
    camera.events.put_nowait(RuntimeError("a defect in the pump"))
    await left(connection)
    [record] = [r for r in caplog.records if r.name.startswith("openrooms") and r.levelno >= logging.ERROR]
    assert record.name == "openrooms.calls"
    assert "the camera feed's Janus events" in record.getMessage()
    assert record.exc_info is not None and str(record.exc_info[1]) == "a defect in the pump"
    assert "RuntimeError: a defect in the pump" in caplog.text  # the traceback is in the log
    assert call.sent[-1] == {"type": "ended", "reason": TASK_FAILED}
    # Through the normal leave: its removal is written, and the last one out ended the call.
    assert await call.event_types() == LEFT_AS_ON_ANY_LEAVE
    assert call.janus.participants == {} and call.janus.destroyed == 1
    assert connection not in call.service.connections


@pytest.mark.parametrize("end", ["leave", "detached", "closed", "hung up"])
async def test_the_ordinary_ends_of_a_connections_tasks_log_nothing(call: Call, end: str) -> None:
    connection, camera = await joined(call)
    if end == "leave":  # its tasks are cancelled
        await connection.handle({"type": "leave"})
        reason = "left"
    elif end == "hung up":  # the participant's side is gone as a pump tells it of a new feed
        async def gone(message: dict[str, Any]) -> None:
            raise ClientGone("the WebSocket closed")

        connection._send = gone
        camera.events.put_nowait({"janus": "event", "plugindata": {"data": {"publishers": [
            {"id": 99, "display": json.dumps({"rawId": "8:acs:x", "role": "Attendee", "kind": "camera",
                                              "joinedAt": START})}]}}})
        reason = None  # nothing reaches it
    else:  # Janus detached the handle, or its session closed
        camera.events.put_nowait({"janus": end})
        reason = "media server connection lost"
    await left(connection)
    if reason is not None:
        assert call.sent[-1] == {"type": "ended", "reason": reason}
    assert await call.event_types() == LEFT_AS_ON_ANY_LEAVE


REMOVALS = {
    "kicked": ({"videoroom": "event", "leaving": "ok", "reason": "kicked"}, "removed from the call"),
    "destroyed": ({"videoroom": "destroyed", "room": 1}, "the call was ended"),
}


@pytest.mark.parametrize("removal", list(REMOVALS))
async def test_a_participant_janus_removes_leaves_janus_once_janus_hung_up(call: Call, removal: str) -> None:
    connection, camera = await joined(call)
    [session] = [s for s in call.janus.sessions if camera in s.handles]  # the participant's own
    data, reason = REMOVALS[removal]
    camera.events.put_nowait({"janus": "webrtcup"})  # its PeerConnection is up
    camera.events.put_nowait({"janus": "event", "plugindata": {"data": data}})
    await asyncio.sleep(0.2)  # a leave would have closed the session by now
    assert not session.closed.is_set(), "left Janus before Janus closed the PeerConnection"
    camera.events.put_nowait({"janus": "hangup", "reason": "Close PC"})
    await left(connection)
    assert session.closed.is_set()
    assert call.sent[-1]["reason"] == reason
    assert await call.event_types() == LEFT_AS_ON_ANY_LEAVE


async def test_a_participant_janus_removes_without_a_hangup_leaves_after_the_bound(
        call: Call, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("openrooms.calls.service.HANGUP_WAIT_SECONDS", 0.05)
    connection, camera = await joined(call)
    camera.events.put_nowait({"janus": "webrtcup"})  # up, and no hangup comes
    camera.events.put_nowait({"janus": "event", "plugindata": {"data": REMOVALS["kicked"][0]}})
    await left(connection)
    assert next(s for s in call.janus.sessions if camera in s.handles).closed.is_set()
    assert call.sent[-1]["reason"] == "removed from the call"


class WebSocketClient:
    """The ASGI side of a call WebSocket, driven by the test: `arrive` hands the app a message; `sent` is what the
    app sent (`closed` once it closed the connection)."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.sent: list[dict[str, Any]] = []
        self.accepted = asyncio.Event()
        self.joined = asyncio.Event()
        self.closed = asyncio.Event()

    def arrive(self, message: dict[str, Any]) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(message)})

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: Mapping[str, Any]) -> None:
        self.sent.append(dict(message))
        if message["type"] == "websocket.accept":
            self.accepted.set()
        elif message["type"] == "websocket.close":
            self.closed.set()
        elif message["type"] == "websocket.send" and json.loads(message["text"])["type"] == "joined":
            self.joined.set()

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(m["text"]) for m in self.sent if m["type"] == "websocket.send"]


@pytest.mark.parametrize("joining", [False, True], ids=["before-its-join", "joined"])
async def test_a_server_stop_ends_a_call_websocket_at_once(call: Call, joining: bool) -> None:
    client = WebSocketClient()
    scope = {"type": "websocket", "path": f"/rooms/{call.room_id}/call/ws", "headers": [],
             "query_string": b"api-version=2026-11-01-openrooms", "subprotocols": []}
    serving = asyncio.create_task(CallsApi(call.service).websocket(scope, client.receive, client.send))
    async with asyncio.timeout(10):  # a guard against a hang, not a measure (a join is waited for 30 s)
        await client.accepted.wait()
        if joining:
            client.arrive({"type": "join", "accessToken": call.token})
            await client.joined.wait()
        STOPPING.begin()
        await serving
    assert client.messages()[-1] == {"type": "ended", "reason": "server stopping"}
    assert client.sent[-1] == {"type": "websocket.close", "code": 1000, "reason": ""}
    assert await call.event_types() == (LEFT_AS_ON_ANY_LEAVE if joining else [])
