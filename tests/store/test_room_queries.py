"""The room queries (`RoomStore.query_rooms`), asserted identically against SqliteStore and PostgresStore: rooms by
the start of their window then id, by state relative to an instant, by participant, by id prefix, paged by keyset."""

from __future__ import annotations

import pytest

from openrooms.service.model import Participant, Role, Room
from openrooms.service.ports import ROOM_STATES, RoomQuery
from openrooms.store.protocol import RoomStore
from tests.support import user_id

DAY = 864_000_000_000  # ticks
NOW = 17_000_000_000_000_000
# name: (valid_from, valid_until), as days from NOW; the ids follow the names' order.
WINDOWS = {
    "ended_long_ago": (-3, -2), "ended_just_now": (-2, 0), "open_early": (-1, 1), "open_early_too": (-1, 2),
    "open_just_now": (0, 3), "upcoming": (1, 2), "upcoming_later": (2, 3),
}
IDS = {name: f"{10**16 + n}" for n, name in enumerate(WINDOWS)}
STATE = {name: name.split("_")[0] for name in WINDOWS}
ORDER = list(WINDOWS)  # by valid_from, then id
ROSTERS = {user_id(1): ["ended_long_ago", "open_early_too", "upcoming"], user_id(2): ["open_just_now"]}


@pytest.fixture
async def rooms(store: RoomStore) -> RoomStore:
    for name, (start, end) in reversed(WINDOWS.items()):  # stored in another order than listed
        members = [Participant(raw_id, Role.ATTENDEE) for raw_id, names in ROSTERS.items() if name in names]
        await store.insert_room(Room(IDS[name], NOW - 5 * DAY, NOW + start * DAY, NOW + end * DAY, False),
                                members, None)
    return store


async def names(store: RoomStore, query: RoomQuery, limit: int = 100) -> list[str]:
    by_id = {room_id: name for name, room_id in IDS.items()}
    return [by_id[room.id] for room in await store.query_rooms(query, None, limit)]


async def test_every_room_is_listed_by_the_start_of_its_window_then_id(rooms: RoomStore) -> None:
    assert await names(rooms, RoomQuery(NOW)) == ORDER
    assert await names(rooms, RoomQuery(NOW, frozenset(ROOM_STATES))) == ORDER
    assert await names(rooms, RoomQuery(NOW), limit=3) == ORDER[:3]


async def test_rooms_by_state_at_an_instant(rooms: RoomStore) -> None:
    # A window holds its start and not its end: it is open from validFrom on and ended from validUntil on.
    for states in ({"upcoming"}, {"open"}, {"ended"}, {"upcoming", "open"}, {"open", "ended"}, {"upcoming", "ended"}):
        assert await names(rooms, RoomQuery(NOW, frozenset(states))) == [n for n in ORDER if STATE[n] in states]


async def test_the_state_is_taken_at_the_instant_given(rooms: RoomStore) -> None:
    assert await names(rooms, RoomQuery(NOW + 2 * DAY, frozenset({"open"}))) == ["open_just_now", "upcoming_later"]
    assert await names(rooms, RoomQuery(NOW - 10 * DAY, frozenset({"upcoming"}))) == ORDER


async def test_rooms_by_participant_alone_and_with_a_state(rooms: RoomStore) -> None:
    assert await names(rooms, RoomQuery(NOW, participant=user_id(1))) == ROSTERS[user_id(1)]
    assert await names(rooms, RoomQuery(NOW, frozenset({"open", "upcoming"}), user_id(1))) == ["open_early_too",
                                                                                              "upcoming"]
    assert await names(rooms, RoomQuery(NOW, frozenset({"ended"}), user_id(2))) == []
    assert await names(rooms, RoomQuery(NOW, participant=user_id(3))) == []


async def test_a_participant_query_follows_roster_changes_and_deletions(rooms: RoomStore) -> None:
    await rooms.update_participants(IDS["open_just_now"], {user_id(1): Role.PRESENTER}, [])
    await rooms.update_participants(IDS["upcoming"], {}, [user_id(1)])
    await rooms.delete_room(IDS["ended_long_ago"])
    assert await names(rooms, RoomQuery(NOW, participant=user_id(1))) == ["open_early_too", "open_just_now"]


async def test_rooms_by_id_prefix(rooms: RoomStore) -> None:
    assert await names(rooms, RoomQuery(NOW, id_prefix=IDS["open_early"])) == ["open_early"]
    assert await names(rooms, RoomQuery(NOW, id_prefix=IDS["open_early"][:-1])) == ORDER
    assert await names(rooms, RoomQuery(NOW, frozenset({"open"}), id_prefix="1")) == ["open_early", "open_early_too",
                                                                                     "open_just_now"]
    assert await names(rooms, RoomQuery(NOW, id_prefix="2")) == []


async def test_pages_follow_one_another_by_keyset(rooms: RoomStore) -> None:
    for query in (RoomQuery(NOW), RoomQuery(NOW, frozenset({"open", "ended"})), RoomQuery(NOW, participant=user_id(1))):
        whole = await rooms.query_rooms(query, None, 100)
        paged: list[Room] = []
        after = None
        while True:
            page = await rooms.query_rooms(query, after, 2)
            paged += page
            if len(page) < 2:
                break
            after = (page[-1].valid_from, page[-1].id)
        assert paged == whole
        assert len(whole) > 2


async def test_rooms_are_counted_by_state_up_to_a_bound(rooms: RoomStore) -> None:
    for states in ({"upcoming"}, {"open"}, {"ended"}, {"open", "ended"}):
        expected = len([n for n in ORDER if STATE[n] in states])
        assert await rooms.count_rooms(RoomQuery(NOW, frozenset(states)), 100) == expected
    assert await rooms.count_rooms(RoomQuery(NOW, frozenset({"open"})), 2) == 2  # three open: counted up to two
    assert await rooms.count_rooms(RoomQuery(NOW), 100) == len(ORDER)
    assert await rooms.count_rooms(RoomQuery(NOW, frozenset({"open"}), user_id(1)), 100) == 1
    assert await rooms.count_rooms(RoomQuery(NOW + 10 * DAY, frozenset({"open"})), 100) == 0
