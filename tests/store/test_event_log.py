"""The event log's contract, on both stores: each write appends exactly the events it is given, in its own
transaction (a write that changes nothing, or fails, appends none), and the log reads in one growing order."""

from __future__ import annotations

import msgspec
import psycopg
import pytest

from openrooms.events import types as t
from openrooms.service import events as build
from openrooms.service.model import CommunicationUser, CreateRecord, Participant, Role, Room
from openrooms.store import postgres
from openrooms.store.postgres import PostgresStore, libpq_url
from openrooms.store.protocol import RoomIdTaken, RoomStore, RosterFull, UserIdTaken
from tests.store.conftest import StoreFactory
from tests.support import user_id

DAY = 864_000_000_000  # ticks
T0 = 17_000_000_000_000_000
U, V, W = (user_id(n) for n in (1, 2, 3))


def room(n: int) -> Room:
    return Room(f"{10**16 + n}", T0, T0, T0 + DAY, False)


async def logged(store: RoomStore, **filters: object) -> list[tuple[str, dict[str, object]]]:
    events = await store.list_events(None, filters.get("types"), filters.get("room_id"), 1000)  # type: ignore[arg-type]
    return [(e.type, msgspec.json.decode(e.data)) for e in events]


async def test_a_created_room_and_its_event_commit_together_and_a_repeat_or_a_taken_id_logs_nothing(
    store: RoomStore,
) -> None:
    r = room(1)
    roster = [Participant(U, Role.PRESENTER)]
    record = CreateRecord("req", "fp", r, T0)
    assert await store.insert_room(r, roster, record, [build.room_created(r, roster)]) is None
    again = room(2)
    assert await store.insert_room(again, [], record, [build.room_created(again, [])]) is not None  # a repeat
    with pytest.raises(RoomIdTaken):
        await store.insert_room(r, [], None, [build.room_created(r, [])])
    assert await logged(store) == [(t.ROOM_CREATED, {
        "roomId": r.id, "createdDateTime": "2023-11-14T22:13:20+00:00", "validFrom": "2023-11-14T22:13:20+00:00",
        "validUntil": "2023-11-15T22:13:20+00:00", "pstnDialOutEnabled": False,
        "participants": [{"rawId": U, "role": "Presenter"}]})]


async def test_an_update_logs_the_fields_it_changed_before_and_after(store: RoomStore) -> None:
    r = room(1)
    await store.insert_room(r, [], None)
    updated = await store.update_room(r.id, None, True, build.RoomUpdate(T0 + 1))
    assert updated is not None and updated.pstn_dial_out_enabled
    await store.update_room(r.id, None, True, build.RoomUpdate(T0 + 2))  # no value changes: no event
    assert await store.update_room(room(9).id, None, True, build.RoomUpdate(T0 + 3)) is None
    [(kind, data)] = await logged(store)
    assert kind == t.ROOM_UPDATED
    assert data["changed"] == ["pstnDialOutEnabled"]
    assert data["before"]["pstnDialOutEnabled"] is False and data["after"]["pstnDialOutEnabled"] is True  # type: ignore[index]


async def test_a_roster_change_logs_who_came_who_changed_role_and_who_left(store: RoomStore) -> None:
    r = room(1)
    await store.insert_room(r, [Participant(U, Role.ATTENDEE), Participant(V, Role.ATTENDEE)], None)
    changes = build.RosterUpdate(r.id, T0 + 1)
    assert await store.update_participants(r.id, {U: Role.PRESENTER, V: Role.ATTENDEE, W: Role.CONSUMER}, [],
                                           events=changes)
    assert await store.update_participants(r.id, {}, [U, user_id(99)], events=changes)
    assert await logged(store, room_id=r.id) == [
        (t.PARTICIPANTS_ADDED, {"roomId": r.id, "participants": [{"rawId": W, "role": "Consumer"}]}),
        (t.PARTICIPANTS_ROLE_CHANGED, {"roomId": r.id, "participants": [
            {"rawId": U, "before": "Attendee", "after": "Presenter"}]}),
        (t.PARTICIPANTS_REMOVED, {"roomId": r.id, "participants": [{"rawId": U, "role": "Presenter"}],
                                  "reason": "Removed"}),
    ]


async def test_a_roster_change_that_fails_logs_nothing(store: RoomStore) -> None:
    r = room(1)
    await store.insert_room(r, [Participant(U, Role.ATTENDEE)], None)
    changes = build.RosterUpdate(r.id, T0 + 1)
    with pytest.raises(RosterFull):
        await store.update_participants(r.id, {V: Role.ATTENDEE}, [], max_participants=1, events=changes)
    assert not await store.update_participants(room(9).id, {V: Role.ATTENDEE}, [], events=changes)
    assert await logged(store) == []


async def test_users_keys_and_deletions_log_their_events_only_when_they_happen(store: RoomStore) -> None:
    r = room(1)
    await store.insert_room(r, [Participant(U, Role.CONSUMER)], None)
    await store.insert_user(CommunicationUser(U, T0), [build.user_created(U, T0)])
    with pytest.raises(UserIdTaken):
        await store.insert_user(CommunicationUser(U, T0), [build.user_created(U, T0)])
    assert await store.revoke_tokens(U, T0 + 1, [build.tokens_revoked(U, T0 + 1)])
    assert not await store.revoke_tokens(V, T0 + 1, [build.tokens_revoked(V, T0 + 1)])
    assert await store.delete_user(U, build.UserDeletion(U, T0 + 2))
    assert not await store.delete_user(U, build.UserDeletion(U, T0 + 2))
    await store.set_access_keys({"primary": "k"}, T0, events=[build.keys_rotated(["primary"], T0)])
    assert await store.delete_room(r.id, [build.room_deleted(r.id, T0 + 3)])
    assert not await store.delete_room(r.id, [build.room_deleted(r.id, T0 + 3)])
    assert [kind for kind, _ in await logged(store)] == [
        t.USER_CREATED, t.TOKENS_REVOKED, t.USER_DELETED, t.PARTICIPANTS_REMOVED, t.KEYS_ROTATED, t.ROOM_DELETED]
    assert (await logged(store, types=[t.USER_DELETED]))[0][1] == {"rawId": U, "rooms": [r.id]}
    assert (await logged(store, types=[t.PARTICIPANTS_REMOVED]))[0][1] == {
        "roomId": r.id, "participants": [{"rawId": U, "role": "Consumer"}], "reason": "UserDeleted"}
    assert (await logged(store, types=[t.KEYS_ROTATED]))[0][1] == {"names": ["primary"]}


async def test_the_log_reads_on_from_a_position_filtered_and_purged_by_age(store: RoomStore) -> None:
    for n in range(5):
        await store.append_events([build.room_deleted(room(n).id, T0 + n)])
    first = await store.list_events(None, None, None, 2)
    rest = await store.list_events(first[-1].position, None, None, 10)
    assert [e.room_id for e in first + rest] == [room(n).id for n in range(5)]
    positions = [e.position for e in first + rest]
    assert positions == sorted(positions) and len(set(positions)) == 5
    assert [e.room_id for e in await store.list_events(None, [t.ROOM_DELETED], room(3).id, 10)] == [room(3).id]
    assert await store.list_events(None, [t.ROOM_CREATED], None, 10) == []
    assert await store.purge_events(T0 + 2) == 2
    assert [e.room_id for e in await store.list_events(None, None, None, 10)] == [room(n).id for n in (2, 3, 4)]


async def test_the_latest_events_read_from_the_end_and_the_log_reads_on_from_where_they_end(
    store: RoomStore,
) -> None:
    assert await store.latest_events(None, None, 10) == ([], (0, 0))
    for n in range(6):
        await store.append_events([build.room_deleted(room(n % 2).id, T0 + n)])
    latest, end = await store.latest_events(None, None, 2)
    everything = await store.list_events(None, None, None, 10)
    assert latest == everything[-2:] and end == everything[-1].position  # the last two, oldest first
    mine, end_of_mine = await store.latest_events([t.ROOM_DELETED], room(0).id, 2)
    assert [e.position for e in mine] == [everything[2].position, everything[4].position]
    assert end_of_mine == end  # the end of the log, not of what matched: the events after the match are no match
    assert await store.latest_events([t.ROOM_CREATED], None, 10) == ([], end)
    await store.append_events([build.room_deleted(room(0).id, T0 + 9)])
    assert [e.time for e in await store.list_events(end, [t.ROOM_DELETED], room(0).id, 10)] == [T0 + 9]


async def test_call_events_append_through_the_same_method(store: RoomStore) -> None:
    caller = t.AcsCallParticipant(t.CommunicationIdentifierModel(
        U, "communicationUser", t.CommunicationUserIdentifierModel(U.removeprefix("8:acs:"))), "Presenter")
    data = t.AcsCallStartedEventData(caller, "server-call", "correlation", room=t.AcsCallRoom(room(1).id),
                                     isRoomsCall=True)
    await store.append_events([t.NewEvent(t.CALL_STARTED, "call/server-call", room(1).id, T0, data)])
    [(kind, stored)] = await logged(store, types=[t.CALL_STARTED])
    assert kind == t.CALL_STARTED and stored["room"] == {"id": room(1).id} and stored["isRoomsCall"] is True


async def test_postgres_reads_are_held_back_by_a_transaction_of_another_schema_no_longer(
    open_store: StoreFactory, request: pytest.FixtureRequest
) -> None:
    store = open_store()
    if not isinstance(store, PostgresStore):
        pytest.skip("PostgreSQL only")
    url = request.getfixturevalue("postgres_url")
    async with await psycopg.AsyncConnection.connect(libpq_url(url)) as elsewhere:
        await elsewhere.execute("CREATE TEMPORARY TABLE busy (n int)")
        await elsewhere.execute("INSERT INTO busy VALUES (1)")  # a transaction with an id, open, logging nothing
        await store.append_events([build.room_deleted(room(1).id, T0)])
        assert len(await store.list_events(None, None, None, 10)) == 1
        await elsewhere.rollback()


async def test_postgres_reads_no_event_past_one_whose_transaction_is_still_open(
    open_store: StoreFactory, request: pytest.FixtureRequest
) -> None:
    store = open_store()
    if not isinstance(store, PostgresStore):
        pytest.skip("SQLite writers take turns: commit order is sequence order")
    url = request.getfixturevalue("postgres_url")
    async with await psycopg.AsyncConnection.connect(libpq_url(url)) as open_tx:
        await open_tx.execute(f"SELECT {postgres._LOCK_EVENTS}")  # what every transaction that logs does first
        await open_tx.execute("INSERT INTO events (type, subject, room_id, time, data) "
                              "VALUES ('OpenRooms.RoomDeleted', 'early', NULL, 1, '{}')")
        # Committed after the open transaction took its sequence number: it must wait for it.
        await store.append_events([build.room_deleted(room(1).id, T0)])
        assert await store.list_events(None, None, None, 10) == []
        await open_tx.commit()
    assert [e.type for e in await store.list_events(None, None, None, 10)] == [t.ROOM_DELETED] * 2
    assert (await store.list_events(None, None, None, 10))[0].subject == "early"  # its transaction began first
