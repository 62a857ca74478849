"""Each roster entry's copy of its room (migration 0014, read by the participant's room queries) equals the room
after every write, on both stores: a create with its roster (with and without an idempotency record), roster
additions, role changes and removals, updates of the window and of dial-out, an update that changes nothing, the
deletion of a room and of a user. After each, the participant's query lists the room as it is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from openrooms.service.model import CommunicationUser, CreateRecord, Participant, Role, Room
from openrooms.service.ports import RoomQuery
from openrooms.store.protocol import RoomStore, RosterFull
from tests.store import roster_copies
from tests.store.conftest import StoreFactory
from tests.support import user_id

DAY = 864_000_000_000  # ticks
T0 = 17_000_000_000_000_000
Copies = dict[tuple[str, str], tuple[roster_copies.Copy, roster_copies.Copy | None]]


@pytest.fixture
def copies(open_store: StoreFactory, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Copies]:
    """Reads every roster entry's copy straight from the database of `store` (the conftest's fixtures)."""
    if request.node.callspec.params["open_store"] == "sqlite":
        return lambda: roster_copies.sqlite_copies(tmp_path / "openrooms.db")
    url = request.getfixturevalue("postgres_url")
    return lambda: roster_copies.postgres_copies(url)


def values(room: Room) -> roster_copies.Copy:
    return room.created_at, room.valid_from, room.valid_until, room.pstn_dial_out_enabled


async def check(store: RoomStore, copies: Callable[[], Copies], rosters: dict[str, set[str]]) -> None:
    """Every entry of `rosters` (room id -> raw ids) is stored, with a copy equal to its room, and no other; each
    participant's query lists their rooms as `get_room` reads them, in the queries' order."""
    found = copies()
    assert set(found) == {(room_id, raw_id) for room_id, raw_ids in rosters.items() for raw_id in raw_ids}
    assert roster_copies.stale(found) == {}
    for (room_id, _), (copy, _) in found.items():
        room = await store.get_room(room_id)
        assert room is not None and values(room) == copy
    for raw_id in {raw_id for raw_ids in rosters.values() for raw_id in raw_ids}:
        rooms = [room for room_id, raw_ids in rosters.items() if raw_id in raw_ids
                 if (room := await store.get_room(room_id)) is not None]
        listed = await store.query_rooms(RoomQuery(T0, participant=raw_id), None, 100)
        assert listed == sorted(rooms, key=lambda r: (r.valid_from, r.id))


async def test_roster_copies_follow_every_write(store: RoomStore, copies: Callable[[], Copies]) -> None:
    a, b, c = (f"{10**16 + n}" for n in range(3))
    alice, bob, carol = user_id("alice"), user_id("bob"), user_id("carol")
    await store.insert_room(Room(a, T0, T0 + 2 * DAY, T0 + 3 * DAY, True),
                            [Participant(alice, Role.PRESENTER), Participant(bob, Role.ATTENDEE)], None)
    made = Room(b, T0 + 1, T0 + DAY, T0 + 4 * DAY, False)
    await store.insert_room(made, [Participant(alice, Role.ATTENDEE)], CreateRecord("req-b", "f", made, T0))
    await store.insert_room(Room(c, T0 + 2, T0, T0 + DAY, False), [], None)
    rosters = {a: {alice, bob}, b: {alice}, c: set()}
    await check(store, copies, rosters)

    # Additions take the room's values as it is now, after its window moved; role changes keep them.
    assert await store.update_room(c, (T0 + 5 * DAY, T0 + 6 * DAY), True) is not None
    assert await store.update_participants(c, {alice: Role.CONSUMER, carol: Role.ATTENDEE}, [])
    assert await store.update_participants(a, {bob: Role.PRESENTER}, [alice])
    rosters = {a: {bob}, b: {alice}, c: {alice, carol}}
    await check(store, copies, rosters)

    # The window moves the room in its participants' order; dial-out alone changes the copies too.
    assert await store.update_room(a, (T0 - DAY, T0 + 7 * DAY), None) is not None
    assert await store.update_room(b, None, True) is not None
    assert await store.update_room(b, None, True) is not None  # changes nothing
    await check(store, copies, rosters)

    # A roster change that is refused leaves no entry, nor a copy of it.
    with pytest.raises(RosterFull):
        await store.update_participants(b, {user_id(n): Role.ATTENDEE for n in range(3)}, [], max_participants=2)
    await check(store, copies, rosters)

    assert await store.delete_room(c)
    await store.insert_user(CommunicationUser(alice, T0))
    assert await store.delete_user(alice)
    await check(store, copies, {a: {bob}, b: set()})


async def test_a_change_of_several_rooms_moves_only_their_copies(store: RoomStore,
                                                                 copies: Callable[[], Copies]) -> None:
    ids = [f"{10**16 + n}" for n in range(4)]
    for n, room_id in enumerate(ids):
        await store.insert_room(Room(room_id, T0, T0 + n * DAY, T0 + 9 * DAY, False),
                                [Participant(user_id(k), Role.ATTENDEE) for k in range(n + 1)], None)
    assert await store.update_room(ids[1], (T0 + 8 * DAY, T0 + 9 * DAY), None) is not None
    found = copies()
    assert roster_copies.stale(found) == {}
    assert {copy[1] for (room_id, _), (copy, _) in found.items() if room_id == ids[1]} == {T0 + 8 * DAY}
    assert {copy[1] for (room_id, _), (copy, _) in found.items() if room_id != ids[1]} == {T0, T0 + 2 * DAY,
                                                                                          T0 + 3 * DAY}
    listed = await store.query_rooms(RoomQuery(T0, participant=user_id(0)), None, 100)
    assert [room.id for room in listed] == [ids[0], ids[2], ids[3], ids[1]]

