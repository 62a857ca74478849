"""The call's lifecycle against the real Janus, in process (the service's connections without a browser): a race
between the last one out ending the call and a join, set up step by step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from openrooms.calls.model import CallServer
from openrooms.calls.service import CallConnection, CallService, Feed
from openrooms.service.admission import AdmissionService
from openrooms.service.clock import SystemClock
from openrooms.service.identity import IdentityService
from openrooms.service.model import CreateRoom, Participant, Role
from openrooms.service.rooms import RoomsService
from openrooms.store.sqlite import SqliteStore
from tests.calls.conftest import JANUS_SECRET


class Steps(CallService):
    """A call service that stops at two points once armed: a join right after it read the room's call (before
    joining its VideoRoom), and the last one out right after it released the call and found it empty again
    (before destroying the VideoRoom). The test lets each go on in the order it wants."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.armed = False
        self.read = asyncio.Event()  # the join read the call
        self.released = asyncio.Event()  # the last one out released it and found it empty
        self.joined = asyncio.Event()  # the join is done (the test sets it)
        self._listings = 0

    async def call_server(self, room_id: str, starter: Participant) -> CallServer:
        stored = await super().call_server(room_id, starter)
        if self.armed and not self.read.is_set():
            self.read.set()
            await self.released.wait()
        return stored

    async def _listed(self, stored: CallServer) -> list[Feed]:
        listed = await super()._listed(stored)
        if self.armed and self.read.is_set():
            self._listings += 1
            if self._listings == 2:  # end_call_if_empty's second look, after the release
                self.released.set()
                await self.joined.wait()
        return listed


@pytest.fixture
async def sqlite() -> AsyncIterator[SqliteStore]:
    store = SqliteStore.open(None)
    yield store
    await store.close()


async def test_a_join_right_after_the_call_emptied_stays_in_the_call(sqlite: SqliteStore, janus_url: str) -> None:
    clock = SystemClock()
    identity = IdentityService(sqlite, clock)
    users = [await identity.create_user(["voip"], 60) for _ in range(2)]
    room = await RoomsService(sqlite, clock).rooms_create(
        CreateRoom(None, None, False, {user.raw_id: Role.ATTENDEE.value for user, _ in users}), list(Role))
    service = Steps(AdmissionService(identity, sqlite, clock), sqlite, clock, [janus_url], JANUS_SECRET)
    sent: dict[str, list[dict[str, Any]]] = {"first": [], "second": []}

    def sender(name: str) -> Any:
        async def send(message: dict[str, Any]) -> None:
            sent[name].append(message)
            if name == "second" and message["type"] in ("joined", "refused"):
                service.joined.set()
        return send

    first = CallConnection(service, room.room_id, sender("first"))
    second = CallConnection(service, room.room_id, sender("second"))
    tokens = [token.token for _, token in users if token is not None]
    try:
        await first.join(tokens[0], None)
        assert sent["first"][-1]["type"] == "joined"
        service.armed = True
        async with asyncio.timeout(30):  # a guard against a hang, not a measure
            joining = asyncio.create_task(second.join(tokens[1], None))
            await service.read.wait()  # the second read the call the first is in
            await first.end("left", None)  # the last one out: releases the call, finds it empty, destroys it
            await joining
        assert sent["second"][-1]["type"] == "joined"
        found = await service.feeds(room.room_id)
        assert found is not None, "the call of the participant who joined was ended"
        assert [feed.raw_id for feed in found[1]] == [users[1][0].raw_id]
        assert not second.ended.is_set()
    finally:
        await service.close()
