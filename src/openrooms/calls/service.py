"""Room calls on Janus VideoRooms: admission, the rules of every signalled request, live enforcement.

Each participant's WebSocket is a `CallConnection`: it admits the participant (`AdmissionService.admit`, the same
checks as `POST /rooms/{id}:join`, in the same order), then speaks for it to Janus over a Janus session of its own.
Every request it relays is checked against the one permission matrix (`service/admission.py`) with the
participant's current admission. The VideoRoom of a room's call is created by the first join with a secret and a
pin only openrooms knows (stored, so every instance finds it); the browser never sees either.

Live enforcement: each connection asks for admission again every `RECHECK_SECONDS` and at its grant's end
(`validUntil` or the token's expiry), and leaves the call on a refusal or a role change. Actions that touch other
participants go through Janus (kick, moderate, destroy), so they reach participants served by other instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openrooms.calls import janus
from openrooms.calls.model import CallServer, CallStore
from openrooms.events import types as t
from openrooms.service import errors, timestamps
from openrooms.service import events as build
from openrooms.service.admission import Admission, AdmissionService, Capability
from openrooms.service.clock import TICKS_PER_SECOND, Clock
from openrooms.service.errors import ServiceError
from openrooms.service.model import Participant
from openrooms.service.ports import StoreUnavailable

log = logging.getLogger("openrooms.calls")
LEFT_LISTED_SECONDS = 30.0  # how long a feed that left is not taken for one in the call

RECHECK_SECONDS = 1.0  # how often a connected participant's admission is asked again (changes land within 2 s)
# With the store's change notifications (PostgreSQL LISTEN/NOTIFY) a change wakes the recheck at once; the turn
# is then only a safety net.
RECHECK_SECONDS_NOTIFIED = 30.0
RELISTEN_SECONDS = 1.0
# How long a participant Janus removed (kicked, or its room destroyed) waits for Janus to close its PeerConnection
# before it leaves Janus (`_hung_up`).
HANGUP_WAIT_SECONDS = 1.0
MAX_PUBLISHERS = 100
# ACS call-end sub-codes used when openrooms ends a participant's call.
SUB_CODE_ROLE_CHANGED = 5317
SUB_CODE_REMOVED = 5300  # removed from the call by a Presenter or the application
SUB_CODE_CALL_ENDED = 5000  # the call was ended for everyone
# The reason a participant is given when one of its connection's tasks failed (a defect, logged with its traceback).
TASK_FAILED = "openrooms failed to relay this call (an internal error): join again"

Send = Callable[[dict[str, Any]], Awaitable[None]]


class CallsUnavailable(Exception):
    pass


class ClientGone(Exception):
    """Raised by a connection's `send` when the participant's side is gone: its connection ends as on a hang-up."""


def refusal(code: str, message: str) -> dict[str, Any]:
    return {"type": "refused", "code": code, "message": message}


def error_message(error: ServiceError) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "refused", "status": error.status, "code": error.code, "message": error.message}
    if error.call_end_sub_code is not None:
        body["callEndReason"] = {"code": error.status, "subCode": error.call_end_sub_code}
    return body


_MEDIA = re.compile(r"^m=(audio|video) ", re.MULTILINE)


def offered_media(sdp: str) -> set[str]:
    """The kinds of media an offer sends (an m-line that is not inactive nor recvonly)."""
    kinds = set()
    for section in re.split(r"(?m)^(?=m=)", sdp):
        match = _MEDIA.match(section)
        if match is None or re.search(r"(?m)^a=(inactive|recvonly)\s*$", section) or section.startswith(
                "m=" + match.group(1) + " 0 "):
            continue
        kinds.add(match.group(1))
    return kinds


def audio_mids(sdp: str) -> list[str]:
    mids = []
    for section in re.split(r"(?m)^(?=m=)", sdp):
        if section.startswith("m=audio"):
            mid = re.search(r"(?m)^a=mid:(\S+)", section)
            if mid:
                mids.append(mid.group(1))
    return mids


@dataclass
class Feed:
    """A participant of the Janus room as openrooms labels it (its `display`, as JSON)."""

    feed_id: int
    raw_id: str
    role: str
    kind: str  # camera | screen
    joined_at: int
    audio_mids: list[str] = field(default_factory=list)
    publishing: bool = False
    display_name: str | None = None

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> Feed | None:
        try:
            label = json.loads(entry.get("display") or "")
            return cls(int(entry["id"]), label["rawId"], label["role"], label["kind"], int(label["joinedAt"]),
                       list(label.get("audio", [])), bool(entry.get("publisher", False)), label.get("name"))
        except (ValueError, KeyError, TypeError):
            return None

    def display(self) -> str:
        label = {"rawId": self.raw_id, "role": self.role, "kind": self.kind, "joinedAt": self.joined_at,
                 "audio": self.audio_mids}
        if self.display_name:
            label["name"] = self.display_name
        return json.dumps(label)

    def wire(self) -> dict[str, Any]:
        return {"feedId": self.feed_id, "rawId": self.raw_id, "role": self.role, "kind": self.kind,
                "displayName": self.display_name}


class CallService:
    def __init__(self, admission: AdmissionService, store: CallStore, clock: Clock, janus_urls: Sequence[str],
                 api_secret: str | None) -> None:
        self.admission = admission
        self.store = store
        self.clock = clock
        self.janus_urls = list(janus_urls)
        self.api_secret = api_secret
        self._control: dict[str, tuple[janus.JanusSession, janus.Handle]] = {}
        self._control_lock = asyncio.Lock()
        # Feeds whose participants left through this process, and when: Janus may list a feed for a moment
        # after its session is gone, and the last one out must not take a leaver listed so for one staying.
        self._left: dict[int, float] = {}
        self.connections: set[CallConnection] = set()
        self._listen: Callable[[], AsyncIterator[str]] | None = store.listen_changes
        self._listener: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while the store's change notifications arrive

    @property
    def recheck_seconds(self) -> float:
        return RECHECK_SECONDS_NOTIFIED if self.listening.is_set() else RECHECK_SECONDS

    def watch_changes(self) -> None:
        """Start listening to the store's change notifications (once, in the serving event loop)."""
        if self._listen is not None and self._listener is None:
            self._listener = asyncio.create_task(self._listen_forever())

    async def _listen_forever(self) -> None:
        assert self._listen is not None
        while True:
            try:
                async for change in self._listen():
                    if change:
                        self._wake(change)
                    else:  # listening: changes made meanwhile are caught by one recheck
                        log.info("room calls: listening to the store's change notifications")
                        self.listening.set()
                        self._wake_all()
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:  # the database went away: recheck on the clock until it is back
                log.warning("room calls: change notifications stopped: %s", exc)
            except Exception:  # a defect, not the database: said loudly, and the calls recheck on the clock
                log.exception("room calls: change notifications stopped")
            self.listening.clear()
            self._wake_all()
            await asyncio.sleep(RELISTEN_SECONDS)

    def _wake(self, change: str) -> None:
        kind, _, key = change.partition(":")
        for connection in list(self.connections):
            if (kind == "room" and connection.room_id == key) or (
                    kind == "user" and connection.admission is not None
                    and connection.admission.participant.raw_id == key):
                connection.wake.set()

    def _wake_all(self) -> None:
        for connection in list(self.connections):
            connection.wake.set()

    async def control(self, url: str) -> janus.Handle:
        """A handle on `url` for the requests that need the room's secret (create, destroy, kick, moderate)."""
        async with self._control_lock:
            held = self._control.get(url)
            if held is not None and not held[0].closed.is_set():
                return held[1]
            try:
                session = await janus.JanusSession.open(url, self.api_secret)
                handle = await session.attach()
            except (OSError, janus.JanusError, TimeoutError, ConnectionError) as exc:
                raise CallsUnavailable(f"the Janus server {url} cannot be reached: {exc}") from exc
            self._control[url] = (session, handle)
            return handle

    async def call_server(self, room_id: str, starter: Participant) -> CallServer:
        """The room's VideoRoom, created on the first join (and again after a Janus restart); the call starts with
        the join of `starter` (its CallStarted is appended with the claim)."""
        stored = await self.store.get_call_server(room_id)
        if stored is None:
            candidate = CallServer(
                room_id, random.choice(self.janus_urls), secrets.randbelow(2**52) + 1, secrets.token_urlsafe(24),
                secrets.token_urlsafe(24), secrets.token_hex(16), self.clock.now(), starter.raw_id,
                starter.role.value, str(uuid.uuid4()),
            )
            stored = await self.store.claim_call_server(candidate, [call_events(candidate).started()])
        await janus.ensure_room(await self.control(stored.server), spec(stored), MAX_PUBLISHERS)
        return stored

    async def rooms_in_call(self, limit: int) -> list[str]:
        """The ids of up to `limit` rooms open now whose call is in progress (a call server is stored for it)."""
        return await self.store.list_call_rooms(self.clock.now(), limit)

    async def feeds(self, room_id: str) -> tuple[CallServer, list[Feed]] | None:
        stored = await self.store.get_call_server(room_id)
        if stored is None:
            return None
        return stored, await self._listed(stored)

    async def end_call(self, room_id: str, reason: str) -> bool:
        """Destroy the room's VideoRoom (everyone in it leaves) and record the call's end."""
        stored = await self.store.get_call_server(room_id)
        if stored is None:
            return False
        # Forgotten first: a join from now on starts the next call rather than one about to be destroyed.
        await self.store.release_call_server(room_id, stored.server_call_id,
                                             [call_events(stored).ended(reason, self.clock.now())])
        with contextlib.suppress(janus.JanusError, CallsUnavailable):
            await janus.destroy_room(await self.control(stored.server), spec(stored))
        return True

    async def end_call_if_empty(self, room_id: str, leaving: Collection[int] = ()) -> None:
        """End the room's call when nobody is in it. A join racing with this either lands in the call before it
        is forgotten (then it goes on: the mapping is put back) or starts the next call."""
        now = time.monotonic()
        self._left = {feed: at for feed, at in self._left.items() if now - at < LEFT_LISTED_SECONDS}
        self._left.update(dict.fromkeys(leaving, now))
        found = await self.feeds(room_id)
        # The feeds of the participants who left may still be listed for a moment after their Janus sessions
        # are gone (this one's, and those who left just before it).
        if found is None or [feed for feed in found[1] if feed.feed_id not in self._left]:
            return
        stored = found[0]
        if not await self.store.release_call_server(room_id, stored.server_call_id):
            return
        again = [feed for feed in await self._listed(stored) if feed.feed_id not in self._left]
        if again and await self.store.claim_call_server(stored) == stored:
            return  # someone came in meanwhile: the call goes on
        with contextlib.suppress(janus.JanusError, CallsUnavailable):
            await janus.destroy_room(await self.control(stored.server), spec(stored))
        # Not with the release: a join may still have put the call back (above), and it would not have ended.
        await self.store.append_events([call_events(stored).ended("AllParticipantsLeft", self.clock.now())])

    async def _listed(self, stored: CallServer) -> list[Feed]:
        try:
            listed = await (await self.control(stored.server)).message(
                {"request": "listparticipants", "room": stored.janus_room})
        except janus.JanusError as exc:
            if exc.code == janus.NO_SUCH_ROOM:
                return []
            raise
        return [feed for entry in listed.data.get("participants", []) if (feed := Feed.of(entry))]

    async def remove_participant(self, room_id: str, raw_id: str) -> bool:
        """Kick every feed of `raw_id` from the room's call (wherever it is served)."""
        found = await self.feeds(room_id)
        if found is None:
            return False
        stored, feeds = found
        control = await self.control(stored.server)
        removed = False
        for feed in feeds:
            if feed.raw_id == raw_id:
                with contextlib.suppress(janus.JanusError):
                    await control.message({"request": "kick", "room": stored.janus_room, "secret": stored.secret,
                                           "id": feed.feed_id})
                    removed = True
        return removed

    async def mute_participant(self, room_id: str, raw_id: str) -> bool:
        found = await self.feeds(room_id)
        if found is None:
            return False
        stored, feeds = found
        control = await self.control(stored.server)
        muted = False
        for feed in feeds:
            if feed.raw_id == raw_id and feed.kind == "camera":
                for mid in feed.audio_mids:
                    with contextlib.suppress(janus.JanusError):
                        await control.message({"request": "moderate", "room": stored.janus_room,
                                               "secret": stored.secret, "id": feed.feed_id, "mid": mid,
                                               "mute": True})
                        muted = True
        return muted

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        for connection in list(self.connections):
            await connection.end("server stopping", None)
        for session, _ in self._control.values():
            await session.close()
        self._control.clear()


def call_events(stored: CallServer) -> build.CallEvents:
    return build.CallEvents(stored.room_id, stored.server_call_id, stored.correlation_id, stored.started_by,
                            stored.started_by_role, stored.started_at)


def spec(stored: CallServer) -> janus.VideoRoomSpec:
    return janus.VideoRoomSpec(stored.janus_room, stored.secret, stored.pin)


class CallConnection:
    """One participant's signalling connection to its room's call."""

    def __init__(self, service: CallService, room_id: str, send: Send, user_agent: str = "") -> None:
        self.service = service
        self.room_id = room_id
        self.user_agent = user_agent
        self._send = send
        self.admission: Admission | None = None
        self._token = ""
        self._session: janus.JanusSession | None = None
        self._server: CallServer | None = None
        self._publishers: dict[str, janus.Handle] = {}  # kind -> handle joined as publisher
        self._feeds: dict[str, Feed] = {}  # kind -> our own feed
        self._subscribers: dict[int, janus.Handle] = {}  # remote feed id -> subscriber handle
        self._tasks: list[asyncio.Task[None]] = []
        self.ended = asyncio.Event()
        self.wake = asyncio.Event()  # a change to the room or the user: ask for admission again now
        self._end_lock = asyncio.Lock()
        self._ending = False

    # -- the connection's tasks ------------------------------------------------------------------------------
    def _spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run `work` (`what` it does, for the log) as a task of this connection: cancelled when it leaves, and
        watched. A task that fails is not left dead while the connection looks healthy (its relay silently gone,
        its enforcement stopped): the failure is logged once with its traceback, and the participant leaves the
        call through `end`, as on any leave, told why. Cancellation and a task's own return are ordinary ends."""
        task = asyncio.create_task(work)
        task.add_done_callback(functools.partial(self._task_done, what))
        self._tasks.append(task)

    def _task_done(self, what: str, task: asyncio.Task[None]) -> None:
        if task.cancelled() or (failure := task.exception()) is None:
            return
        if isinstance(failure, ClientGone):  # the participant hung up meanwhile: an ordinary leave
            self._spawn(self.end("left", None), "the leave")
            return
        raw_id = self.admission.participant.raw_id if self.admission is not None else "?"
        log.error("room %s: %s of participant %s failed; the participant leaves the call", self.room_id, what,
                  raw_id, exc_info=failure)
        self._spawn(self.end(TASK_FAILED, None), "the leave after a failure")

    # -- joining ----------------------------------------------------------------------------------------------
    async def join(self, access_token: str, display_name: str | None) -> None:
        try:
            self.admission = await self.service.admission.admit(access_token, self.room_id)
        except ServiceError as exc:
            await self._send(error_message(exc))
            self._ending = True
            self.ended.set()
            return
        self._token = access_token
        admission = self.admission
        camera = Feed(0, admission.participant.raw_id, admission.participant.role.value, "camera",
                      self.service.clock.now(), display_name=display_name)
        try:
            for attempt in range(3):
                self._server = await self.service.call_server(self.room_id, admission.participant)
                if self._session is None:
                    self._session = await janus.JanusSession.open(self._server.server, self.service.api_secret)
                try:
                    joined = await self._join_as_publisher(camera, pump=False)
                except janus.JanusError as exc:
                    # The call ended (its room destroyed) between reading it and joining it: start the next one.
                    if exc.code != janus.NO_SUCH_ROOM or attempt == 2:
                        raise
                    continue
                # The call may have emptied and been released (by the last one out, see `end_call_if_empty`)
                # between reading it and this join, its room about to be destroyed: then leave it and start or
                # join the next call. Still the call's: the last one out, if it releases the call now, finds
                # this participant in it and puts the call back.
                current = await self.service.store.get_call_server(self.room_id)
                if current is not None and current.server_call_id == self._server.server_call_id:
                    break
                if attempt == 2:
                    raise CallsUnavailable("the room's call ended while joining it, three times")
                await self._close_janus()
                self._publishers.clear()
                self._feeds.clear()
            # Only now: an event of a room left above (its destruction) must not end this connection.
            self._spawn(self._pump(self._publishers["camera"], "camera"), "the camera feed's Janus events")
        except (CallsUnavailable, OSError, janus.JanusError, TimeoutError, ConnectionError) as exc:
            log.warning("room %s: the call could not be joined: %s", self.room_id, exc)
            await self._send(refusal("CallsUnavailable", "The room's call cannot be reached right now."))
            await self._close_janus()
            self._ending = True
            self.ended.set()
            return
        assert self._server is not None
        self.service.connections.add(self)
        self.service.watch_changes()
        await self.service.store.append_events([self._participant_event(t.CALL_PARTICIPANT_ADDED, camera.joined_at)])
        others = [f.wire() for entry in joined.data.get("publishers", []) if (f := Feed.of(entry))]
        await self._send({
            "type": "joined", "roomId": self.room_id, "feedId": camera.feed_id,
            "participant": {"rawId": camera.raw_id, "role": camera.role},
            "capabilities": {c.value: s.is_present for c, s in admission.capabilities.items()},
            "grantExpiresAt": admission.grant_expires_at, "feeds": others,
        })
        self._spawn(self._enforce(), "the admission recheck")

    def _participant_event(self, type_: str, now: int) -> t.NewEvent:
        """CallParticipantAdded or CallParticipantRemoved of this connection's participant (its camera feed)."""
        assert self._server is not None and self.admission is not None
        camera = self._feeds.get("camera")
        participant = self.admission.participant
        return call_events(self._server).participant(
            type_, participant.raw_id, participant.role.value, camera.display_name if camera else None,
            str(camera.feed_id) if camera else "", self.user_agent, now)

    async def _join_as_publisher(self, feed: Feed, *, pump: bool = True) -> janus.Reply:
        assert self._session is not None and self._server is not None
        handle = await self._session.attach()
        try:
            joined = await handle.message({"request": "join", "ptype": "publisher", "room": self._server.janus_room,
                                           "pin": self._server.pin, "display": feed.display()})
        except BaseException:
            await handle.detach()
            raise
        feed.feed_id = int(joined.data["id"])
        self._publishers[feed.kind] = handle
        self._feeds[feed.kind] = feed
        if pump:
            self._spawn(self._pump(handle, feed.kind), f"the {feed.kind} feed's Janus events")
        return joined

    # -- requests ---------------------------------------------------------------------------------------------
    async def handle(self, message: Mapping[str, Any]) -> None:
        """One request of the participant; anything not allowed is refused and nothing happens."""
        if self.admission is None or self._ending:
            return
        kind = message.get("type")
        try:
            match kind:
                case "publish":
                    await self._publish(message)
                case "unpublish":
                    await self._unpublish(str(message.get("feed", "camera")))
                case "subscribe":
                    await self._subscribe(int(message["feedId"]))
                case "start":
                    await self._start(int(message["feedId"]), message["jsep"])
                case "trickle":
                    await self._trickle(message)
                case "mute":
                    await self._moderate(Capability.MUTE_OTHERS, str(message.get("target", "")))
                case "remove":
                    await self._moderate(Capability.REMOVE_PARTICIPANT, str(message.get("target", "")))
                case "leave":
                    await self.end("left", None)
                case _:
                    await self._send(refusal("UnknownRequest", f"Unknown request type {kind!r}: openrooms relays "
                                             "publish, unpublish, subscribe, start, trickle, mute, remove and "
                                             "leave; the media server's API is not reachable through it."))
        except (KeyError, ValueError, TypeError):
            await self._send(refusal("BadRequest", f"The {kind} request is missing a field or has a bad one."))
        except janus.JanusError as exc:
            await self._send(refusal("MediaServerError", f"The media server refused the {kind} request: "
                                     f"{exc.reason}"))

    def _allowed(self, capability: Capability) -> bool:
        return self.admission is not None and self.admission.has(capability)

    async def _forbidden(self, request: str, capability: Capability) -> None:
        assert self.admission is not None
        await self._send(refusal("Forbidden", f"A {self.admission.participant.role} may not {request} in this "
                                 f"room's call (capability {capability} is not present)."))

    async def _publish(self, message: Mapping[str, Any]) -> None:
        kind = str(message.get("feed", "camera"))
        jsep = message["jsep"]
        sdp = str(jsep["sdp"])
        media = offered_media(sdp)
        if kind == "screen":
            if not self._allowed(Capability.SHARE_SCREEN):
                return await self._forbidden("share the screen", Capability.SHARE_SCREEN)
        elif kind == "camera":
            if "audio" in media and not self._allowed(Capability.UNMUTE_MIC):
                return await self._forbidden("send audio", Capability.UNMUTE_MIC)
            if "video" in media and not self._allowed(Capability.TURN_VIDEO_ON):
                return await self._forbidden("send video", Capability.TURN_VIDEO_ON)
        else:
            raise ValueError(kind)
        if kind not in self._publishers:
            assert self.admission is not None
            camera = self._feeds["camera"]
            await self._join_as_publisher(Feed(0, camera.raw_id, camera.role, kind, self.service.clock.now(),
                                               display_name=camera.display_name))
        feed = self._feeds[kind]
        feed.audio_mids = audio_mids(sdp)
        answer = await self._publishers[kind].message(
            {"request": "configure", "audio": "audio" in media, "video": "video" in media,
             "display": feed.display()}, {"type": "offer", "sdp": sdp})
        await self._send({"type": "answer", "feed": kind, "feedId": feed.feed_id, "jsep": answer.jsep})

    async def _unpublish(self, kind: str) -> None:
        handle = self._publishers.get(kind)
        if handle is not None:
            await handle.message({"request": "unpublish"})

    async def _subscribe(self, feed_id: int) -> None:
        assert self._session is not None and self._server is not None
        handle = await self._session.attach()
        offer = await handle.message({"request": "join", "ptype": "subscriber", "room": self._server.janus_room,
                                      "pin": self._server.pin, "streams": [{"feed": feed_id}]})
        self._subscribers[feed_id] = handle
        await self._send({"type": "offer", "feedId": feed_id, "jsep": offer.jsep})

    async def _start(self, feed_id: int, jsep: Mapping[str, Any]) -> None:
        handle = self._subscribers[feed_id]
        await handle.message({"request": "start"}, {"type": "answer", "sdp": str(jsep["sdp"])})

    async def _trickle(self, message: Mapping[str, Any]) -> None:
        if "feedId" in message:
            handle = self._subscribers.get(int(message["feedId"]))
        else:
            handle = self._publishers.get(str(message.get("feed", "camera")))
        if handle is not None:
            await handle.trickle(message.get("candidate"))

    async def _moderate(self, capability: Capability, target: str) -> None:
        verb = "mute others" if capability is Capability.MUTE_OTHERS else "remove participants"
        if not self._allowed(capability):
            return await self._forbidden(verb, capability)
        if capability is Capability.MUTE_OTHERS:
            done = await self.service.mute_participant(self.room_id, target)
        else:
            done = await self.service.remove_participant(self.room_id, target)
        await self._send({"type": "done", "request": "mute" if capability is Capability.MUTE_OTHERS else "remove",
                          "target": target, "found": done})

    # -- events from Janus ------------------------------------------------------------------------------------
    async def _pump(self, handle: janus.Handle, kind: str) -> None:
        connected = False  # whether the handle's PeerConnection is up (from Janus's webrtcup to its hangup)
        while True:
            event = await handle.events.get()
            if event.get("janus") in ("closed", "detached"):
                if kind == "camera":
                    await self.end("media server connection lost", None)
                return
            if event.get("janus") in ("webrtcup", "hangup"):
                connected = event.get("janus") == "webrtcup"
                continue
            if event.get("janus") == "media":
                continue
            data = (event.get("plugindata") or {}).get("data") or {}
            if data.get("videoroom") == "destroyed":
                if connected:
                    await _hung_up(handle)
                await self.end("the call was ended", SUB_CODE_CALL_ENDED)
                return
            if data.get("leaving") == "ok" and data.get("reason") == "kicked":
                if connected:
                    await _hung_up(handle)
                await self.end("removed from the call", SUB_CODE_REMOVED)
                return
            publishers = [f.wire() for entry in data.get("publishers", []) if (f := Feed.of(entry))]
            if publishers:
                await self._send({"type": "feeds", "feeds": publishers})
            gone = data.get("unpublished") or data.get("leaving")
            if isinstance(gone, int):
                await self._send({"type": "left", "feedId": gone})
                handle_of = self._subscribers.pop(gone, None)
                if handle_of is not None:
                    self._spawn(handle_of.detach(), "the detach of a subscription")
            if data.get("videoroom") == "talking" or data.get("videoroom") == "stopped-talking":
                continue
            if "moderation" in data or (data.get("videoroom") == "event" and "mid" in data and "moderation" in data):
                await self._send({"type": "muted", "feedId": data.get("id")})

    # -- live enforcement -------------------------------------------------------------------------------------
    async def _enforce(self) -> None:
        assert self.admission is not None
        role = self.admission.participant.role
        failed = False  # the last ask failed (the store away): the next is not before RECHECK_SECONDS
        while not self.ended.is_set():
            left = (self.admission.grant_expires_at - self.service.clock.now()) / TICKS_PER_SECOND
            if failed and left <= 0:  # the grant ran out and the store cannot be asked: leave (fail closed)
                await self._grant_expired()
                return
            wait = min(RECHECK_SECONDS if failed else self.service.recheck_seconds, left)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait)):
                    await self._woken()
            self.wake.clear()
            if self.ended.is_set():
                return
            try:
                admission = await self.service.admission.admit(self._token, self.room_id)
            except ServiceError as exc:
                ending = {"RoomEnded": "RoomEnded", "RoomNotFound": "RoomDeleted"}.get(exc.code)
                await self.end(exc.message, exc.call_end_sub_code, error=exc, ending_call=ending)
                return
            except StoreUnavailable as exc:  # the store is away for a moment: ask again at the next turn
                log.warning("room %s: admission could not be asked again: %s", self.room_id, exc)
                failed = True
                continue
            except Exception:
                log.exception("room %s: admission could not be asked again", self.room_id)
                failed = True
                continue
            failed = False
            if admission.participant.role is not role:
                await self.end(f"The participant's role changed from {role} to {admission.participant.role}: "
                               "join again to take part with the new role.", SUB_CODE_ROLE_CHANGED)
                return
            self.admission = admission

    async def _grant_expired(self) -> None:
        """End the participant's call at its grant's end without the store, with the refusal admission gives
        then: the room ended (its validUntil, and the call ends for everyone) or the token expired."""
        assert self.admission is not None
        room = self.admission.room
        if self.admission.grant_expires_at >= room.valid_until:
            error = errors.admission_room_ended(room.id, timestamps.format(room.valid_until))
        else:
            error = errors.invalid_access_token("it has expired")
        await self.end(error.message, error.call_end_sub_code, error=error,
                       ending_call="RoomEnded" if error.code == "RoomEnded" else None)

    async def _woken(self) -> None:
        ended = asyncio.ensure_future(self.ended.wait())
        woken = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait({ended, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            woken.cancel()

    async def end(self, reason: str, sub_code: int | None, *, error: ServiceError | None = None,
                  ending_call: str | None = None) -> None:
        """Leave the call, then (with `ending_call`, the reason) end it for everyone, and only then tell the
        participant: what it reads next (the room's call, the events) already says so."""
        async with self._end_lock:
            if self._ending:
                return
            self._ending = True
        message: dict[str, Any] = {"type": "ended", "reason": reason}
        if error is not None:
            message = {**error_message(error), "type": "ended", "reason": reason}
        elif sub_code is not None:
            message["callEndReason"] = {"code": 0 if sub_code == SUB_CODE_CALL_ENDED else 403, "subCode": sub_code}
        # Left first, ended only then: the connection is closed (and the task that called this, its reader,
        # cancelled) once it is set, and leaving must not be cut short (Janus session, call end, events).
        try:
            try:
                await self._leave()
                if ending_call is not None:
                    try:
                        await self.service.end_call(self.room_id, ending_call)
                    except Exception as exc:  # every participant leaves on its own; the store may be away
                        log.warning("room %s: the call's end could not be recorded: %s", self.room_id, exc)
            finally:
                with contextlib.suppress(Exception):
                    await self._send(message)
        finally:
            self.ended.set()

    async def _leave(self) -> None:
        self.service.connections.discard(self)
        if self._server is not None and self.admission is not None:
            with contextlib.suppress(Exception):
                await self.service.store.append_events([self._participant_event(
                    t.CALL_PARTICIPANT_REMOVED, self.service.clock.now())])
        await self._close_janus()
        # The last one out ends the call, as in ACS.
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self.service.end_call_if_empty(self.room_id, {f.feed_id for f in self._feeds.values()})

    async def _close_janus(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _hung_up(handle: janus.Handle) -> None:
    """Wait, at most `HANGUP_WAIT_SECONDS`, until Janus has closed the handle's PeerConnection (one that is up).
    Janus tells a participant it kicked, or whose room it destroyed, before it closes that participant's
    PeerConnection, in the same request: a Janus session destroyed in between is read after it was freed, and Janus
    1.1 crashes (seen on a loaded machine), taking every call it serves with it. So whoever Janus removes leaves
    Janus once it hung up. The handle's other events meanwhile are dropped: the participant is leaving."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(HANGUP_WAIT_SECONDS):
            while (await handle.events.get()).get("janus") not in ("hangup", "closed", "detached"):
                pass
