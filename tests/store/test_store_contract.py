"""The store contract (`store/protocol.py`), asserted identically against SqliteStore and PostgresStore."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from openrooms.service.model import CommunicationUser, CreateRecord, Participant, Role, Room, SigningKey
from openrooms.store.protocol import RoomIdTaken, RoomStore, RosterFull, RosterPage, UserIdTaken
from tests.store.conftest import StoreFactory
from tests.support import user_id

DAY = 864_000_000_000  # ticks
T0 = 17_000_000_000_000_000


def room(n: int, created_at: int = T0, valid_until: int = T0 + DAY, pstn: bool = False) -> Room:
    return Room(f"{10**16 + n}", created_at, created_at, valid_until, pstn)


def record(request_id: str, room_id: str, created_at: int = T0) -> CreateRecord:
    created = Room(room_id, created_at, created_at + 1, created_at + DAY, True)
    return CreateRecord(request_id, "fingerprint-" + request_id, created, created_at)


async def roster(store: RoomStore, room_id: str) -> dict[str, Role]:
    """The room's roster, in the order it is listed."""
    return dict(await listed(store, room_id))


async def listed(store: RoomStore, room_id: str, page_size: int = 10_000) -> list[tuple[str, Role]]:
    """The room's whole roster, page after page, in the order it is listed."""
    entries: list[tuple[str, Role]] = []
    start: int | None = 0
    while start is not None:
        page = await store.list_participants(room_id, start, page_size)
        assert page is not None
        assert len(page.participants) == page_size or page.next_start is None
        entries += page.participants
        start = page.next_start
    return entries


async def test_a_room_is_stored_with_its_roster(store: RoomStore) -> None:
    stored = room(1, pstn=True)
    assert await store.insert_room(stored, [Participant(user_id(1), Role.PRESENTER)], None) is None
    assert await store.get_room(stored.id) == stored
    assert await roster(store, stored.id) == {user_id(1): Role.PRESENTER}
    assert await store.get_room(room(2).id) is None
    assert await store.list_participants(room(2).id, 0, 10) is None


async def test_a_room_id_is_never_issued_twice_even_after_deletion(store: RoomStore) -> None:
    await store.insert_room(room(1), [], None)
    with pytest.raises(RoomIdTaken):
        await store.insert_room(room(1, created_at=T0 + 1), [Participant(user_id(2), Role.ATTENDEE)], None)
    assert await store.get_room(room(1).id) == room(1)
    assert await roster(store, room(1).id) == {}
    assert await store.delete_room(room(1).id)
    with pytest.raises(RoomIdTaken):
        await store.insert_room(room(1), [], None)
    assert await store.get_room(room(1).id) is None


async def test_a_repeated_create_returns_the_first_record_and_creates_nothing(store: RoomStore) -> None:
    first = record("req-1", room(1).id)
    assert await store.insert_room(room(1), [], first) is None
    assert await store.get_create_record("req-1") == first
    repeat = record("req-1", room(2).id)
    assert await store.insert_room(room(2), [Participant(user_id(1), Role.ATTENDEE)], repeat) == first
    assert await store.get_room(room(2).id) is None
    # The losing attempt did not claim its id either.
    assert await store.insert_room(room(2), [], None) is None
    assert await store.get_create_record("req-unknown") is None


async def test_a_failed_create_keeps_no_idempotency_record(store: RoomStore) -> None:
    await store.insert_room(room(1), [], None)
    with pytest.raises(RoomIdTaken):
        await store.insert_room(room(1), [], record("req-1", room(1).id))
    assert await store.get_create_record("req-1") is None


async def test_update_room_changes_only_what_is_given(store: RoomStore) -> None:
    await store.insert_room(room(1), [], None)
    updated = await store.update_room(room(1).id, None, True)
    assert updated == Room(room(1).id, T0, T0, T0 + DAY, True)
    updated = await store.update_room(room(1).id, (T0 + 5, T0 + 2 * DAY), None)
    assert updated == Room(room(1).id, T0, T0 + 5, T0 + 2 * DAY, True)
    assert await store.get_room(room(1).id) == updated
    assert await store.update_room(room(2).id, None, False) is None


async def test_delete_room_removes_it_and_its_roster(store: RoomStore) -> None:
    await store.insert_room(room(1), [Participant(user_id(1), Role.ATTENDEE)], None)
    assert await store.delete_room(room(1).id) is True
    assert await store.delete_room(room(1).id) is False
    assert await store.list_participants(room(1).id, 0, 10) is None
    assert await store.update_participants(room(1).id, {user_id(2): Role.ATTENDEE}, []) is False


async def test_list_rooms_is_newest_first_by_keyset_and_skips_ended_rooms(store: RoomStore) -> None:
    rooms = [room(n, created_at=T0 + n // 2) for n in range(10)]  # pairs share a created_at: ids break ties
    ended = room(50, created_at=T0 + 100, valid_until=T0 + 10)
    for r in [*rooms, ended]:
        await store.insert_room(r, [], None)
    expected = sorted(rooms, key=lambda r: (r.created_at, r.id), reverse=True)
    now = T0 + 10
    assert await store.list_rooms(now, None, 100) == expected
    pages, after = [], None
    while True:
        page = await store.list_rooms(now, after, 3)
        if not page:
            break
        pages.append(page)
        after = (page[-1].created_at, page[-1].id)
    assert [r for page in pages for r in page] == expected
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert ended in await store.list_rooms(T0 + 9, None, 100)


async def test_a_roster_is_listed_in_the_order_of_addition_on_every_page(store: RoomStore) -> None:
    # Ids whose byte order is another: "-x" < "A" < "_x" < "a.b" < "ab".
    c, a, b, z, y = (user_id(s) for s in ["ab", "A", "a.b", "_x", "-x"])
    await store.insert_room(room(1), [Participant(c, Role.ATTENDEE), Participant(a, Role.ATTENDEE),
                                      Participant(b, Role.ATTENDEE)], None)
    assert await store.update_participants(room(1).id, {z: Role.CONSUMER, y: Role.ATTENDEE}, [])
    assert await store.update_participants(room(1).id, {a: Role.PRESENTER}, [b])  # a role change keeps its place
    assert await store.update_participants(room(1).id, {b: Role.CONSUMER}, [])  # added again: last
    expected = [(c, Role.ATTENDEE), (a, Role.PRESENTER), (z, Role.CONSUMER), (y, Role.ATTENDEE), (b, Role.CONSUMER)]
    for page_size in (1, 2, 4, 5, 100):
        assert await listed(store, room(1).id, page_size) == expected
    page = await store.list_participants(room(1).id, 0, 2)
    assert page == RosterPage([Participant(c, Role.ATTENDEE), Participant(a, Role.PRESENTER)], page.next_start)
    assert page.next_start is not None
    assert await store.list_participants(room(1).id, 0, 5) == RosterPage(
        [Participant(*entry) for entry in expected], None)


async def test_a_listing_in_progress_sees_each_remaining_participant_once(open_store: StoreFactory) -> None:
    first, second = open_store(), open_store()
    people = [user_id(n) for n in range(6)]
    await first.insert_room(room(1), [Participant(p, Role.ATTENDEE) for p in people], None)
    page = await first.list_participants(room(1).id, 0, 2)
    assert page is not None and [p.raw_id for p in page.participants] == people[:2]
    # Between two pages, from another instance: the next page's first participant leaves, one who was read
    # leaves and comes back, a later one changes role, and someone new joins.
    assert await second.update_participants(room(1).id, {people[3]: Role.PRESENTER}, [people[2], people[0]])
    assert await second.update_participants(room(1).id, {people[0]: Role.ATTENDEE, user_id(9): Role.CONSUMER}, [])
    rest: list[str] = []
    start = page.next_start
    while start is not None:
        page = await first.list_participants(room(1).id, start, 2)
        assert page is not None
        rest += [p.raw_id for p in page.participants]
        start = page.next_start
    assert rest == [people[3], people[4], people[5], people[0], user_id(9)]


async def test_update_participants_upserts_and_removes(store: RoomStore) -> None:
    await store.insert_room(room(1), [Participant(user_id(n), Role.ATTENDEE) for n in (1, 2)], None)
    changed = await store.update_participants(
        room(1).id, {user_id(2): Role.PRESENTER, user_id(3): Role.CONSUMER}, [user_id(1), user_id(9)]
    )
    assert changed is True
    assert await roster(store, room(1).id) == {user_id(2): Role.PRESENTER, user_id(3): Role.CONSUMER}
    assert await store.update_participants(room(2).id, {user_id(1): Role.ATTENDEE}, []) is False


async def test_get_participant_finds_exactly_that_entry(store: RoomStore) -> None:
    near = [user_id(10), user_id(1), user_id(100)]  # ids that share prefixes
    await store.insert_room(room(1), [Participant(raw_id, Role.CONSUMER) for raw_id in near], None)
    await store.update_participants(room(1).id, {user_id(1): Role.PRESENTER}, [])
    assert await store.get_participant(room(1).id, user_id(1)) == Participant(user_id(1), Role.PRESENTER)
    assert await store.get_participant(room(1).id, user_id(10)) == Participant(user_id(10), Role.CONSUMER)
    assert await store.get_participant(room(1).id, user_id(2)) is None
    assert await store.get_participant(room(2).id, user_id(1)) is None


async def test_a_roster_cannot_grow_past_the_limit_but_can_shrink_over_it(store: RoomStore) -> None:
    await store.insert_room(room(1), [Participant(user_id(n), Role.ATTENDEE) for n in range(3)], None)
    with pytest.raises(RosterFull) as full:
        await store.update_participants(room(1).id, {user_id(3): Role.ATTENDEE, user_id(4): Role.ATTENDEE},
                                        [user_id(0)], max_participants=3)
    assert full.value.size == 4
    assert set(await roster(store, room(1).id)) == {user_id(0), user_id(1), user_id(2)}  # nothing changed
    # Over a lowered limit: shrinking and re-roling are still allowed.
    assert await store.update_participants(room(1).id, {user_id(1): Role.PRESENTER}, [user_id(0)], max_participants=1)
    assert await roster(store, room(1).id) == {user_id(1): Role.PRESENTER, user_id(2): Role.ATTENDEE}


async def test_purge_deletes_ended_rooms_and_old_records_only(store: RoomStore) -> None:
    await store.insert_room(room(1, valid_until=T0 + 10), [Participant(user_id(1), Role.ATTENDEE)],
                            record("old", room(1).id, created_at=T0))
    await store.insert_room(room(2, valid_until=T0 + 30), [], record("new", room(2).id, created_at=T0 + 20))
    assert await store.purge(rooms_valid_before=T0 + 20, records_created_before=T0 + 20) == (1, 1)
    assert await store.get_room(room(1).id) is None
    assert await store.get_room(room(2).id) == room(2, valid_until=T0 + 30)
    assert await store.get_create_record("old") is None
    assert await store.get_create_record("new") is not None
    assert await store.purge(rooms_valid_before=T0 + 20, records_created_before=T0 + 20) == (0, 0)
    with pytest.raises(RoomIdTaken):  # a purged room's id stays issued
        await store.insert_room(room(1), [], None)


async def test_identities(store: RoomStore) -> None:
    assert await store.ensure_resource_id("first") == "first"
    assert await store.ensure_resource_id("second") == "first"

    older, newer = SigningKey("AA", "older-key", "older-cert", T0), SigningKey("BB", "newer-key", "newer-cert", T0 + 1)
    assert await store.get_signing_keys() == []
    assert await store.ensure_signing_key(older) == older
    assert await store.ensure_signing_key(newer) == older
    assert await store.get_signing_keys() == [older]

    user = CommunicationUser(user_id(1), T0)
    await store.insert_user(user)
    with pytest.raises(UserIdTaken):
        await store.insert_user(CommunicationUser(user_id(1), T0 + 1))
    assert await store.get_user(user_id(1)) == user
    assert await store.get_user(user_id(2)) is None
    assert await store.revoke_tokens(user_id(1), T0 + 50) is True
    assert await store.revoke_tokens(user_id(1), T0 + 40) is True  # never moves back
    assert await store.get_user(user_id(1)) == CommunicationUser(user_id(1), T0, T0 + 50)
    assert await store.revoke_tokens(user_id(2), T0) is False

    await store.insert_room(room(1), [Participant(user_id(n), Role.ATTENDEE) for n in (1, 3)], None)
    await store.insert_room(room(2), [Participant(user_id(1), Role.PRESENTER)], None)
    assert await store.delete_user(user_id(1)) is True
    assert await store.delete_user(user_id(1)) is False
    assert await store.get_user(user_id(1)) is None
    assert await roster(store, room(1).id) == {user_id(3): Role.ATTENDEE}
    assert await roster(store, room(2).id) == {}


async def test_access_keys(store: RoomStore) -> None:
    assert await store.get_access_keys() == {}
    assert await store.set_access_keys({"primary": "p1", "secondary": "s1"}, T0, replace=False) == {
        "primary": "p1", "secondary": "s1"}
    assert await store.set_access_keys({"primary": "p2"}, T0 + 1, replace=False) == {"primary": "p1", "secondary": "s1"}
    assert await store.set_access_keys({"primary": "p2"}, T0 + 1) == {"primary": "p2", "secondary": "s1"}
    assert await store.get_access_keys() == {"primary": "p2", "secondary": "s1"}
    await store.ping()


async def test_concurrent_roster_changes_from_two_instances_lose_nothing(open_store: StoreFactory) -> None:
    first, second = open_store(), open_store()
    await first.insert_room(room(1), [Participant(user_id(n), Role.ATTENDEE) for n in range(0, 40, 2)], None)

    async def change(n: int) -> None:
        instance = first if n % 2 else second
        upserts = {user_id(n): Role.PRESENTER} if n % 2 else {}
        removals = [] if n % 2 else [user_id(n)]
        assert await instance.update_participants(room(1).id, upserts, removals)

    await asyncio.gather(*(change(n) for n in range(40)))
    assert await roster(first, room(1).id) == {user_id(n): Role.PRESENTER for n in range(1, 40, 2)}


async def test_concurrent_adds_from_several_instances_stop_exactly_at_the_roster_limit(
    open_store: StoreFactory,
) -> None:
    instances = [open_store() for _ in range(6)]  # a connection each, so that the adds really overlap
    await instances[0].insert_room(room(1), [], None)

    async def add(n: int) -> bool:
        try:
            return await instances[n % 6].update_participants(
                room(1).id, {user_id(n): Role.ATTENDEE}, [], max_participants=5
            )
        except RosterFull:
            return False

    for _ in range(3):  # each round from an empty roster: 12 adds of one participant each, at once
        added = await asyncio.gather(*(add(n) for n in range(12)))
        assert added.count(True) == 5
        assert len(await roster(instances[0], room(1).id)) == 5
        assert await instances[0].update_participants(room(1).id, {}, [user_id(n) for n in range(12)])


async def test_an_id_both_upserted_and_removed_in_one_change_ends_removed(store: RoomStore) -> None:
    await store.insert_room(room(1), [Participant(user_id(0), Role.ATTENDEE)], None)
    assert await store.update_participants(
        room(1).id, {user_id(0): Role.PRESENTER, user_id(1): Role.PRESENTER, user_id(2): Role.CONSUMER},
        [user_id(0), user_id(2)], max_participants=1,
    )
    assert await roster(store, room(1).id) == {user_id(1): Role.PRESENTER}


async def test_concurrent_creates_with_one_request_id_make_one_room(open_store: StoreFactory) -> None:
    instances = [open_store(), open_store()]
    attempts = [room(n) for n in range(8)]
    results = await asyncio.gather(
        *(instances[n % 2].insert_room(r, [], record("same-request", r.id)) for n, r in enumerate(attempts))
    )
    winners = [r for r, result in zip(attempts, results, strict=True) if result is None]
    assert len(winners) == 1
    stored = await instances[0].get_create_record("same-request")
    assert stored == record("same-request", winners[0].id)
    assert all(result == stored for result in results if result is not None)
    assert [r for r in attempts if await instances[1].get_room(r.id) is not None] == winners


async def test_every_read_on_one_instance_sees_what_another_instance_changed(open_store: StoreFactory) -> None:
    first, second = open_store(), open_store()
    await first.insert_room(room(1, valid_until=T0 + 10), [Participant(user_id(n), Role.ATTENDEE) for n in range(3)],
                            None)
    await first.insert_room(room(2), [Participant(user_id(1), Role.ATTENDEE)], None)
    assert await first.get_participant(room(2).id, user_id(1)) == Participant(user_id(1), Role.ATTENDEE)

    async def seen_by_first() -> tuple[object, ...]:
        # Read twice: whatever the first read may keep, the second must still be the truth.
        reads = []
        for _ in range(2):
            reads.append((await first.get_room(room(1).id), await first.get_participant(room(1).id, user_id(1)),
                          await first.list_participants(room(1).id, 0, 2),
                          await first.list_participants(room(1).id, 2, 2)))
        assert reads[0] == reads[1]
        return reads[0]

    # Places 1, 2 and 3: the second page starts at the second participant.
    assert await seen_by_first() == (room(1, valid_until=T0 + 10), Participant(user_id(1), Role.ATTENDEE),
                                     RosterPage([Participant(user_id(n), Role.ATTENDEE) for n in (0, 1)], 3),
                                     RosterPage([Participant(user_id(n), Role.ATTENDEE) for n in (1, 2)], None))
    await second.update_room(room(1).id, (T0 + 5, T0 + 15), True)
    await second.update_participants(room(1).id, {user_id(1): Role.PRESENTER}, [user_id(0)])
    assert await seen_by_first() == (Room(room(1).id, T0, T0 + 5, T0 + 15, True),
                                     Participant(user_id(1), Role.PRESENTER),
                                     RosterPage([Participant(user_id(1), Role.PRESENTER),
                                                 Participant(user_id(2), Role.ATTENDEE)], None),
                                     RosterPage([Participant(user_id(1), Role.PRESENTER),
                                                 Participant(user_id(2), Role.ATTENDEE)], None))
    assert await second.purge(rooms_valid_before=T0 + 20, records_created_before=T0) == (1, 0)
    assert await seen_by_first() == (None, None, None, None)
    assert await first.get_room(room(2).id) == room(2)
    # A deleted user leaves every room it was in.
    assert await roster(first, room(2).id) == {user_id(1): Role.ATTENDEE}
    await second.insert_user(CommunicationUser(user_id(1), T0))
    assert await second.delete_user(user_id(1))
    assert await roster(first, room(2).id) == {}
    assert await first.get_participant(room(2).id, user_id(1)) is None
    assert await second.delete_room(room(2).id)
    assert await first.get_room(room(2).id) is None


async def test_a_list_on_one_instance_sees_what_another_instance_changed_and_what_time_ended(
    open_store: StoreFactory,
) -> None:
    first, second = open_store(), open_store()
    await first.insert_room(room(1, created_at=T0, valid_until=T0 + 100), [], None)
    await first.insert_room(room(2, created_at=T0 + 1, valid_until=T0 + 50), [], None)

    async def listed(now: int) -> list[str]:
        pages = [[r.id for r in await first.list_rooms(now, None, 10)] for _ in range(2)]
        assert pages[0] == pages[1]
        return pages[0]

    assert await listed(T0 + 10) == [room(2).id, room(1).id]
    assert await listed(T0 + 50) == [room(1).id]  # room 2 ended: no write, and still gone from the list
    assert await listed(T0 + 10) == [room(2).id, room(1).id]
    await second.insert_room(room(3, created_at=T0 + 2, valid_until=T0 + 100), [], None)
    assert await listed(T0 + 10) == [room(3).id, room(2).id, room(1).id]
    await second.update_room(room(3).id, (T0 + 2, T0 + 20), None)
    assert await listed(T0 + 30) == [room(2).id, room(1).id]
    await second.delete_room(room(1).id)
    assert await listed(T0 + 10) == [room(3).id, room(2).id]
    await second.purge(rooms_valid_before=T0 + 60, records_created_before=T0)
    assert await listed(T0 + 10) == []


async def test_a_user_deleted_while_being_added_to_rooms_stays_only_where_an_addition_came_after(
    open_store: StoreFactory,
) -> None:
    adder, deleter = open_store(), open_store()
    user = user_id(1)
    await adder.insert_user(CommunicationUser(user, T0))
    for n in range(16):  # the user is in the first eight, as an attendee
        await adder.insert_room(room(n), [Participant(user, Role.ATTENDEE)] if n < 8 else [], None)

    def add(n: int) -> Awaitable[bool]:
        return adder.update_participants(room(n).id, {user: Role.PRESENTER, user_id(100 + n): Role.ATTENDEE}, [])

    results = await asyncio.gather(*(add(n) for n in range(0, 16, 2)), deleter.delete_user(user),
                                   *(add(n) for n in range(1, 16, 2)))
    assert all(results)  # no deadlock, no conflict
    assert await deleter.get_user(user) is None
    for n in range(16):
        entries = await roster(deleter, room(n).id)
        assert entries.pop(user_id(100 + n)) == Role.ATTENDEE
        # Where the user is still listed, an addition came after the deletion: never the entry it took.
        assert entries in ({}, {user: Role.PRESENTER})
