"""What the services log: admissions (admitted, or refused with the reason), key rotations, room updates that
change nothing. Service layer, in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from openrooms.events import types as t
from openrooms.service import keys
from openrooms.service.admission import AdmissionService
from openrooms.service.clock import TICKS_PER_SECOND, FixedClock
from openrooms.service.errors import ServiceError
from openrooms.service.identity import IdentityService
from openrooms.service.model import CreateRoom, Role, UpdateRoom
from openrooms.service.rooms import RoomsService
from openrooms.store.sqlite import SqliteStore

START = 1_790_000_000 * TICKS_PER_SECOND
HOUR = 3600 * TICKS_PER_SECOND


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    store = SqliteStore.open(None)
    yield store
    await store.close()


async def logged(store: SqliteStore, *types: str) -> list[dict[str, object]]:
    return [msgspec.json.decode(e.data) for e in await store.list_events(None, types or None, None, 100)]


async def test_joins_are_logged_admitted_or_refused_with_the_reason(store: SqliteStore) -> None:
    clock = FixedClock(START)
    identity = IdentityService(store, clock)
    rooms = RoomsService(store, clock)
    admission = AdmissionService(identity, store, clock)
    user, token = await identity.create_user(["voip"])
    assert token is not None
    stranger, stranger_token = await identity.create_user(["voip"])
    assert stranger_token is not None
    room_id = (await rooms.rooms_create(
        CreateRoom(START, START + HOUR, False, {user.raw_id: "Presenter"}), list(Role))).room.id
    await admission.admit(token.token, room_id)
    with pytest.raises(ServiceError):
        await admission.admit(stranger_token.token, room_id)
    with pytest.raises(ServiceError):
        await admission.admit("not-a-token", room_id)  # not logged: anyone could send these
    with pytest.raises(ServiceError):
        await admission.admit(token.token, "12")  # nor malformed room ids
    assert await logged(store, t.JOIN_ADMITTED) == [{"roomId": room_id, "rawId": user.raw_id, "role": "Presenter"}]
    [refused] = await logged(store, t.JOIN_REFUSED)
    assert refused["rawId"] == stranger.raw_id and refused["status"] == 403
    assert refused["code"] and refused["reason"]


async def test_a_rotation_logs_the_name_of_the_key_never_the_key(store: SqliteStore) -> None:
    await store.set_access_keys({"primary": keys.new_key(), "secondary": keys.new_key()}, START)
    new = await keys.rotate(store, "secondary", START)
    events = await store.list_events(None, [t.KEYS_ROTATED], None, 10)
    assert [msgspec.json.decode(e.data) for e in events] == [{"names": ["secondary"]}]
    assert new["secondary"].encode() not in events[0].data


async def test_an_update_that_changes_no_value_logs_nothing(store: SqliteStore) -> None:
    clock = FixedClock(START)
    rooms = RoomsService(store, clock)
    room_id = (await rooms.rooms_create(CreateRoom(START, START + HOUR), list(Role))).room.id
    await rooms.rooms_update(room_id, UpdateRoom(pstn_dial_out_enabled=False))
    assert await logged(store, t.ROOM_UPDATED) == []
    await rooms.rooms_update(room_id, UpdateRoom(START, START + 2 * HOUR))
    [updated] = await logged(store, t.ROOM_UPDATED)
    assert updated["changed"] == ["validUntil"]
