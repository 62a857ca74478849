"""What the stores keep of room calls: one media server room per room's call, claimed once by whichever
instance comes first; the call's start and end go to the event log in the transaction that claims or releases it,
and only when that claim or release took effect."""

from __future__ import annotations

import msgspec

from openrooms.calls.model import CallServer
from openrooms.events import types as t
from openrooms.service import events as build
from openrooms.service.model import Room
from openrooms.store.protocol import RoomStore

ROOM = "12345678901234567"
STARTER = "8:acs:00000000-0000-0000-0000-000000000001_00000000-0000-0000-0000-000000000002"


def server(room_id: str, call_id: str) -> CallServer:
    return CallServer(room_id, "ws://janus.test:8188/", 42, "secret-" + call_id, "pin-" + call_id, call_id, 1000,
                      STARTER, "Presenter", "correlation-" + call_id)


def of(stored: CallServer) -> build.CallEvents:
    return build.CallEvents(stored.room_id, stored.server_call_id, stored.correlation_id, stored.started_by,
                            stored.started_by_role, stored.started_at)


async def logged(store: RoomStore) -> list[tuple[str, dict[str, object]]]:
    return [(e.type, msgspec.json.decode(e.data)) for e in await store.list_events(None, None, None, 100)]


async def test_the_first_claim_wins_and_a_release_names_its_call(store: RoomStore) -> None:
    first, second = server(ROOM, "a"), server(ROOM, "b")
    assert await store.get_call_server(first.room_id) is None
    assert await store.claim_call_server(first) == first
    assert await store.claim_call_server(second) == first  # the room's call is already held
    assert await store.get_call_server(first.room_id) == first
    assert await store.release_call_server(first.room_id, "b") is False  # not that call's any more
    assert await store.release_call_server(first.room_id, "a") is True
    assert await store.get_call_server(first.room_id) is None
    assert await store.claim_call_server(second) == second


async def test_a_claim_and_a_release_append_their_events_only_when_they_take_effect(store: RoomStore) -> None:
    first, second = server(ROOM, "a"), server(ROOM, "b")
    assert await store.claim_call_server(first, [of(first).started()]) == first
    assert await store.claim_call_server(second, [of(second).started()]) == first  # lost: no CallStarted
    assert not await store.release_call_server(ROOM, "b", [of(second).ended("EndedByApplication", 2000)])
    assert await store.release_call_server(ROOM, "a", [of(first).ended("EndedByApplication", 2000)])
    events = await logged(store)
    assert [kind for kind, _ in events] == [t.CALL_STARTED, t.CALL_ENDED]
    assert {data["serverCallId"] for _, data in events} == {"a"}
    assert events[1][1]["callDurationInSeconds"] == 1000 / 10_000_000
    assert (await store.list_events(None, None, None, 10))[0].room_id == ROOM


async def test_the_rooms_in_call_are_those_open_now_with_a_call_server(store: RoomStore) -> None:
    day = 864_000_000_000
    now = 17_000_000_000_000_000
    rooms = {f"{10**16 + n}": (now - day, now + day) for n in (3, 1, 2)}
    rooms[f"{10**16 + 4}"] = (now - 2 * day, now - day)  # ended: its call server lingers until the call is ended
    for room_id, (start, end) in rooms.items():
        await store.insert_room(Room(room_id, start, start, end, False), [], None)
        await store.claim_call_server(server(room_id, "call-" + room_id))
    await store.insert_room(Room(f"{10**16 + 5}", now - day, now - day, now + day, False), [], None)  # no call
    assert await store.list_call_rooms(now, 10) == [f"{10**16 + n}" for n in (1, 2, 3)]
    assert await store.list_call_rooms(now, 2) == [f"{10**16 + n}" for n in (1, 2)]
    assert await store.release_call_server(f"{10**16 + 2}", f"call-{10**16 + 2}")
    assert await store.list_call_rooms(now, 10) == [f"{10**16 + n}" for n in (1, 3)]
    assert await store.list_call_rooms(now + 2 * day, 10) == []
