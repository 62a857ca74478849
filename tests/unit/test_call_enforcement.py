"""Live enforcement of a room call while the store is away (in process over SQLite, fixed clock, no media server):
a participant whose grant ran out leaves at the grant's end without the store (fail closed), and a failing store
is not asked again in a busy loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from openrooms.calls.service import CallConnection, CallService
from openrooms.service.admission import Admission, AdmissionService
from openrooms.service.clock import TICKS_PER_SECOND, FixedClock
from openrooms.service.identity import IdentityService
from openrooms.service.model import CreateRoom, Role
from openrooms.service.ports import StoreUnavailable
from openrooms.service.rooms import RoomsService
from openrooms.store.sqlite import SqliteStore

START = 1_790_000_000 * TICKS_PER_SECOND
MINUTE = 60 * TICKS_PER_SECOND


class Store:
    """The SQLite store, or, once `down`, a database that cannot be reached: every call raises StoreUnavailable."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.down = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailable("the database cannot be reached")
            return await method(*args, **kwargs)

        return call


class CountedAdmission(AdmissionService):
    asks = 0

    async def admit(self, access_token: str, room_id: str) -> Admission:
        self.asks += 1
        return await super().admit(access_token, room_id)


@dataclass
class Call:
    clock: FixedClock
    store: Store
    admission: CountedAdmission
    connection: CallConnection
    sent: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def sqlite() -> AsyncIterator[SqliteStore]:
    store = SqliteStore.open(None)
    yield store
    await store.close()


async def joined(sqlite: SqliteStore, *, room_minutes: int, token_minutes: int) -> Call:
    """A participant admitted to a room's call as a join admits it; its connection does not enforce yet."""
    clock = FixedClock(START)
    store = Store(sqlite)
    identity = IdentityService(store, clock)
    user, token = await identity.create_user(["voip"], token_minutes)
    assert token is not None
    room = await RoomsService(sqlite, clock).rooms_create(
        CreateRoom(None, START + room_minutes * MINUTE, False, {user.raw_id: Role.ATTENDEE.value}), list(Role))
    admission = CountedAdmission(identity, store, clock)
    call = Call(clock, store, admission, CallConnection(CallService(admission, store, clock, [], None),
                                                          room.room_id, lambda m: _sent(call, m)))
    call.connection.admission = await admission.admit(token.token, room.room_id)
    call.connection._token = token.token
    return call


async def _sent(call: Call, message: dict[str, Any]) -> None:
    call.sent.append(message)


async def enforce_after_the_grant_with_the_store_away(call: Call) -> None:
    assert call.connection.admission is not None
    call.clock.advance(call.connection.admission.grant_expires_at - call.clock.now())
    call.store.down = True
    call.admission.asks = 0
    try:  # a guard against the busy loop of an enforcement that fails open, not a measure
        async with asyncio.timeout(3):
            await call.connection._enforce()
    except TimeoutError:
        pass


async def test_at_valid_until_the_participant_leaves_without_the_store(sqlite: SqliteStore) -> None:
    call = await joined(sqlite, room_minutes=10, token_minutes=60)
    await enforce_after_the_grant_with_the_store_away(call)
    assert call.admission.asks == 1  # asked once at the grant's end, then left
    assert call.connection.ended.is_set()
    ended = call.sent[-1]
    assert (ended["type"], ended["code"], ended["callEndReason"]) == ("ended", "RoomEnded",
                                                                      {"code": 403, "subCode": 5829})


class BrokenNotifications:
    """A store whose change notifications fail with `failure` at once; `called` is set at the first listen."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure
        self.called = asyncio.Event()

    async def listen_changes(self) -> AsyncIterator[str]:
        self.called.set()
        raise self.failure
        yield ""  # an async generator


async def listen_until_the_first_failure(sqlite: SqliteStore, failure: Exception) -> None:
    clock = FixedClock(START)
    identity = IdentityService(sqlite, clock)
    store = BrokenNotifications(failure)
    service = CallService(AdmissionService(identity, sqlite, clock), store, clock, [], None)  # type: ignore[arg-type]
    service.watch_changes()
    async with asyncio.timeout(10):  # a guard against a hang, not a measure
        await store.called.wait()
        await asyncio.sleep(0)  # the failure is logged before the listener waits to listen again
        await service.close()


async def test_lost_change_notifications_are_one_warning(sqlite: SqliteStore,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    await listen_until_the_first_failure(sqlite, StoreUnavailable("the database cannot be reached"))
    [record] = [r for r in caplog.records if r.name == "openrooms.calls"]
    assert (record.levelno, record.exc_info) == (logging.WARNING, None)
    assert record.getMessage() == "room calls: change notifications stopped: the database cannot be reached"


async def test_any_other_failure_of_the_change_notifications_is_an_error_with_its_traceback(
        sqlite: SqliteStore, caplog: pytest.LogCaptureFixture) -> None:
    await listen_until_the_first_failure(sqlite, RuntimeError("a defect"))
    [record] = [r for r in caplog.records if r.name == "openrooms.calls"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
