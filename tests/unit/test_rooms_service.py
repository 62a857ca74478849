"""Rooms service rules against a real (in-memory) store and a fixed clock."""

from __future__ import annotations

import pytest

from openrooms.service import errors, paging
from openrooms.service.clock import TICKS_PER_DAY, TICKS_PER_SECOND, FixedClock
from openrooms.service.errors import ServiceError
from openrooms.service.model import CreateRoom, Participant, Repeatability, Role, Room, UpdateRoom
from openrooms.service.rooms import REPEATABILITY_WINDOW, RoomsService, Upsert
from openrooms.store.sqlite import SqliteStore
from tests.support import user_id

NOW = 1_800_000_000 * TICKS_PER_SECOND
BASE_ROLES = (Role.PRESENTER, Role.ATTENDEE, Role.CONSUMER)
ALL_ROLES = (*BASE_ROLES, Role.COLLABORATOR)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def service(store: SqliteStore, clock: FixedClock) -> RoomsService:
    return RoomsService(store, clock, page_size=3, purge_grace_days=7)


async def roster(service: RoomsService, room_id: str) -> dict[str, Role]:
    page = await service.participants_list(room_id, page_size=1000)
    return {p.raw_id: p.role for p in page.items}


async def test_create_applies_defaults(service: RoomsService) -> None:
    created = await service.rooms_create(CreateRoom(participants={user_id(1): None}), ALL_ROLES)
    room = await service.rooms_get(created.room_id)
    assert room.created_at == room.valid_from == NOW
    assert room.valid_until == NOW + 180 * TICKS_PER_DAY
    assert room.pstn_dial_out_enabled is False
    assert await roster(service, room.id) == {user_id(1): Role.ATTENDEE}
    assert created.room == room and not created.replayed


async def test_room_ids_are_17_digit_and_distinct(service: RoomsService) -> None:
    ids = {(await service.rooms_create(CreateRoom(), ALL_ROLES)).room_id for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 17 and i.isdigit() for i in ids)


async def test_roles_are_those_of_the_request_version(service: RoomsService) -> None:
    with pytest.raises(ServiceError) as caught:
        await service.rooms_create(CreateRoom(participants={user_id(1): "Collaborator"}), BASE_ROLES)
    detail = caught.value.details[0]
    assert detail.message == "Invalid participant role. The valid roles are: Presenter, Attendee, Consumer."
    assert detail.target == f"$.participants.{user_id(1)}.role"
    created = await service.rooms_create(CreateRoom(participants={user_id(1): "Collaborator"}), ALL_ROLES)
    assert await roster(service, created.room_id) == {user_id(1): Role.COLLABORATOR}


async def test_malformed_participant_ids(service: RoomsService) -> None:
    for bad in ("wrong_mri", "4:+14255550123"):
        with pytest.raises(ServiceError) as caught:
            await service.rooms_create(CreateRoom(participants={bad: None}), ALL_ROLES)
        assert caught.value.message == "Invalid format for communication identifier."


async def test_roster_merge_upserts_and_removes_in_one_request(service: RoomsService) -> None:
    room_id = (await service.rooms_create(
        CreateRoom(participants={user_id(1): "Presenter", user_id(2): "Attendee"}), ALL_ROLES
    )).room_id
    await service.participants_update(
        room_id,
        {user_id(1): Upsert("Consumer"), user_id(2): None, user_id(3): Upsert(None), user_id(4): None},
        ALL_ROLES,
    )
    assert await roster(service, room_id) == {user_id(1): Role.CONSUMER, user_id(3): Role.ATTENDEE}


async def test_a_bad_entry_rejects_the_whole_roster_change(service: RoomsService) -> None:
    created = await service.rooms_create(CreateRoom(participants={user_id(1): "Presenter"}), ALL_ROLES)
    room_id = created.room_id
    for changes, message in (
        ({user_id(2): Upsert("Presenter"), "wrong_mri": Upsert("Attendee")},
         "Communication identifier wrong_mri is not supported."),
        ({user_id(1): None, "wrong_mri": None}, "Communication identifier wrong_mri is not supported."),
        ({user_id(1): None, user_id(2): Upsert("Kafka")}, errors.MALFORMED_REQUEST),
    ):
        with pytest.raises(ServiceError) as caught:
            await service.participants_update(room_id, changes, ALL_ROLES)
        assert caught.value.message == message
        assert await roster(service, room_id) == {user_id(1): Role.PRESENTER}


@pytest.mark.parametrize(
    ("room_id", "message"),
    [("invalid_id", "Invalid room ID length."), ("123", "Invalid room ID length."),
     ("NotExistingRoomID", "Invalid room ID.")],
)
async def test_room_id_checks_come_before_lookup(service: RoomsService, room_id: str, message: str) -> None:
    for call in (
        service.rooms_get(room_id),
        service.rooms_delete(room_id),
        service.rooms_update(room_id, UpdateRoom()),
        service.participants_list(room_id),
        service.participants_update(room_id, {}, ALL_ROLES),
    ):
        with pytest.raises(ServiceError) as caught:
            await call
        assert (caught.value.status, caught.value.message) == (400, message)


async def test_unknown_room_is_not_found_everywhere(service: RoomsService) -> None:
    missing = "12345678901234567"
    for call in (
        service.rooms_get(missing),
        service.rooms_delete(missing),
        service.rooms_update(missing, UpdateRoom(pstn_dial_out_enabled=True)),
        service.participants_list(missing),
        service.participants_update(missing, {user_id(1): None}, ALL_ROLES),
    ):
        with pytest.raises(ServiceError) as caught:
            await call
        assert (caught.value.status, caught.value.code) == (404, "NotFound")


async def test_update_changes_only_what_is_given(service: RoomsService) -> None:
    room_id = (await service.rooms_create(CreateRoom(pstn_dial_out_enabled=True), ALL_ROLES)).room_id
    before = await service.rooms_get(room_id)
    assert await service.rooms_update(room_id, UpdateRoom()) == before
    after = await service.rooms_update(room_id, UpdateRoom(NOW + 1, NOW + TICKS_PER_DAY))
    assert (after.valid_from, after.valid_until, after.pstn_dial_out_enabled) == (NOW + 1, NOW + TICKS_PER_DAY, True)
    after = await service.rooms_update(room_id, UpdateRoom(pstn_dial_out_enabled=False))
    assert (after.valid_from, after.pstn_dial_out_enabled) == (NOW + 1, False)


async def test_listing_pages_newest_first_and_skips_ended_rooms(service: RoomsService, clock: FixedClock) -> None:
    created = []
    for i in range(8):
        clock.advance(TICKS_PER_SECOND)
        until = clock.now() + (2 * TICKS_PER_SECOND if i == 4 else TICKS_PER_DAY)
        created.append((await service.rooms_create(CreateRoom(valid_until=until), ALL_ROLES)).room_id)
    clock.advance(10 * TICKS_PER_SECOND)  # room 4 has ended
    seen, cursor = [], None
    while True:
        page = await service.rooms_list(cursor)
        assert len(page.items) <= 3
        seen += [r.id for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [room_id for i, room_id in reversed(list(enumerate(created))) if i != 4]


async def test_bad_cursors_and_page_sizes(service: RoomsService) -> None:
    for cursor in ("%%%", "bm90LWEtY3Vyc29y", paging.encode_cursor("\u00b2", "1"), paging.encode_cursor(10**30, "1")):
        with pytest.raises(ServiceError) as caught:
            await service.rooms_list(cursor)
        assert caught.value.target == "skipToken"
    with pytest.raises(ServiceError):
        await service.rooms_list(page_size=0)


async def test_participants_page_in_the_order_they_were_added(service: RoomsService) -> None:
    users = {user_id(n): None for n in (7, 3, 9, 0, 5, 1, 8, 2, 6, 4)}  # not in raw id order
    room_id = (await service.rooms_create(CreateRoom(participants=users), ALL_ROLES)).room_id
    await service.participants_update(room_id, {user_id(12): Upsert("Presenter"), user_id(10): Upsert(None),
                                                user_id(3): Upsert("Consumer")}, ALL_ROLES)
    seen: list[Participant] = []
    cursor = None
    while True:
        page = await service.participants_list(room_id, cursor, page_size=3)
        seen += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [p.raw_id for p in seen] == [*users, user_id(12), user_id(10)]  # a role change keeps its place
    assert seen[1] == Participant(user_id(3), Role.CONSUMER)
    for bad in ("%%%", paging.encode_cursor(user_id(1)), paging.encode_cursor("\u00b2"), paging.encode_cursor(10**30)):
        with pytest.raises(ServiceError) as caught:
            await service.participants_list(room_id, bad)
        assert caught.value.target == "skipToken"


async def test_repeated_create_returns_the_first_response(service: RoomsService, store: SqliteStore) -> None:
    repeat = Repeatability("req-1", NOW, "fingerprint-a")
    first = await service.rooms_create(CreateRoom(), ALL_ROLES, repeat)
    await service.rooms_update(first.room_id, UpdateRoom(pstn_dial_out_enabled=True))
    again = await service.rooms_create(CreateRoom(), ALL_ROLES, repeat)
    # The room as the first create made it, not as it is now: the repeat gets the first answer.
    assert (again.room, again.replayed) == (first.room, True)
    assert (await service.rooms_get(first.room_id)).pstn_dial_out_enabled is True
    assert len((await service.rooms_list()).items) == 1
    with pytest.raises(ServiceError) as caught:
        await service.rooms_create(CreateRoom(), ALL_ROLES, Repeatability("req-1", NOW, "fingerprint-b"))
    assert caught.value.status == 409
    assert caught.value.headers == {"Repeatability-Result": "rejected"}


async def test_repeatability_first_sent_outside_the_window(service: RoomsService) -> None:
    with pytest.raises(ServiceError) as caught:
        await service.rooms_create(
            CreateRoom(), ALL_ROLES, Repeatability("old", NOW - REPEATABILITY_WINDOW - 1, "f")
        )
    assert caught.value.target == "Repeatability-First-Sent"


async def test_deleted_room_ids_are_never_issued_again(store: SqliteStore) -> None:
    from openrooms.store.protocol import RoomIdTaken

    room = Room("12345678901234567", NOW, NOW, NOW + 1, False)
    await store.insert_room(room, [], None)
    assert await store.delete_room(room.id)
    with pytest.raises(RoomIdTaken):
        await store.insert_room(room, [], None)


async def test_purge_removes_rooms_past_the_grace_period(service: RoomsService, clock: FixedClock) -> None:
    room_id = (await service.rooms_create(CreateRoom(valid_until=NOW + TICKS_PER_DAY), ALL_ROLES)).room_id
    clock.advance(5 * TICKS_PER_DAY)
    assert (await service.purge_expired())[0] == 0
    assert (await service.rooms_get(room_id)).id == room_id  # ended, still readable by id
    clock.advance(5 * TICKS_PER_DAY)
    assert (await service.purge_expired())[0] == 1
    with pytest.raises(ServiceError):
        await service.rooms_get(room_id)
