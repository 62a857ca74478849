"""Every write of one instance is seen by every read of another that read (and so may have kept) the same data.

The SQLite store keeps reads in memory while their room is unchanged (`store/changes.py`), and each of its write
transactions says what it changed; a write that said too little would leave the other workers serving stale
rooms and rosters. So every write method of the store protocol has a case here, run on two stores on one
database (two workers, or two instances), on both stores; a new write method fails the first test until it has
one.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import pytest

from openrooms.calls.model import CallServer
from openrooms.events.subscriptions import EVENT_GRID_SCHEMA, BatchEnd, Delivery, Outcome, Subscription
from openrooms.service.events import room_deleted
from openrooms.service.model import CommunicationUser, CreateRecord, Participant, Role, Room, SigningKey
from openrooms.service.ports import ConsoleSessionRecord
from openrooms.service.window_events import window_events
from openrooms.store.postgres import PostgresStore
from openrooms.store.protocol import RoomQuery, RoomStore
from openrooms.store.sqlite import SqliteStore
from tests.store.conftest import StoreFactory
from tests.support import user_id

DAY = 864_000_000_000  # ticks
T0 = 17_000_000_000_000_000
NOW = T0 + 5
U, V, W, X = (user_id(n) for n in (1, 2, 3, 4))


def room(n: int, created_at: int = T0, valid_until: int = T0 + DAY) -> Room:
    return Room(f"{10**16 + n}", created_at, created_at, valid_until, False)


def record(request_id: str, room_id: str, created_at: int = T0) -> CreateRecord:
    created = Room(room_id, created_at, created_at, created_at + DAY, False)
    return CreateRecord(request_id, "fingerprint", created, created_at)


R1, R2, R3 = room(1), room(2, created_at=T0 + 1, valid_until=T0 + 10), room(3, created_at=T0 + 2)

Write = Callable[[RoomStore], Awaitable[object]]
# Each write method, as a change that a reader of the data set up below can see.
WRITES: dict[str, Write] = {
    "insert_room": lambda s: s.insert_room(R3, [Participant(U, Role.CONSUMER)], record("req-3", R3.id, T0 + 2)),
    "update_room": lambda s: s.update_room(R1.id, (T0, T0 + 2 * DAY), True),
    "delete_room": lambda s: s.delete_room(R1.id),
    "update_participants": lambda s: s.update_participants(R1.id, {U: Role.ATTENDEE, X: Role.PRESENTER}, [V]),
    "purge": lambda s: s.purge(rooms_valid_before=T0 + 20, records_created_before=T0 + 1),
    "delete_user": lambda s: s.delete_user(U),
    "insert_user": lambda s: s.insert_user(CommunicationUser(X, T0)),
    "insert_users": lambda s: s.insert_users([CommunicationUser(U, T0), CommunicationUser(X, T0)]),
    "revoke_tokens": lambda s: s.revoke_tokens(U, T0 + 3),
    "ensure_resource_id": lambda s: s.ensure_resource_id("resource"),
    "adopt_resource_id": lambda s: s.adopt_resource_id("resource"),
    "ensure_signing_key": lambda s: s.ensure_signing_key(SigningKey("kid", "key", "certificate", T0)),
    "set_access_keys": lambda s: s.set_access_keys({"primary": "p2"}, T0 + 1),
    "claim_call_server": lambda s: s.claim_call_server(call_server(R1.id), [room_deleted(R1.id, T0 + 3)]),
    "release_call_server": lambda s: claim_and_release(s),
    "append_events": lambda s: s.append_events([room_deleted(R2.id, T0 + 3)]),
    "purge_events": lambda s: s.purge_events(T0 + 1),
    "claim_window_instants": lambda s: claim_twice(s),
    **{name: (lambda step: lambda s: webhook_step(s, step))(name) for name in (
        "insert_subscription", "update_subscription", "delete_subscription",
        "claim_deliveries", "finish_delivery", "redeliver", "lease_subscription", "finish_batch")},
    **{name: (lambda step: lambda s: console_step(s, step))(name) for name in (
        "insert_console_session", "delete_console_session", "add_sign_in_failure", "sweep_console")},
}
# The resource id is only ever read by ensuring it; the data set up has no events to purge (tests/store/
# test_event_log.py has).
NO_READ_SEES = {"ensure_resource_id", "adopt_resource_id", "purge_events", "insert_subscription",
                "update_subscription", "delete_subscription", "claim_deliveries",
                "finish_delivery", "redeliver", "lease_subscription",
                "finish_batch",  # webhooks: no room, roster or event changes with them
                "insert_console_session", "delete_console_session", "add_sign_in_failure",
                "sweep_console"}  # the console's sessions: neither
READS = {"get_room", "get_create_record", "list_rooms", "query_rooms", "list_participants", "get_participant",
         "get_user", "get_signing_keys", "get_access_keys", "ping", "get_call_server", "list_call_rooms",
         "count_rooms", "list_events", "latest_events",
         "next_window_instant", "get_subscription", "list_subscriptions", "next_due", "queue_holders",
         "delivery_states", "parked_rooms", "list_dead_letters", "get_console_session", "get_sign_in_failures"}
LIFECYCLE = {"close"}
# The store's notifications of changes and of new events (PostgreSQL LISTEN/NOTIFY; SQLite: in-process events only)
STREAMS = {"listen_changes", "listen_events"}


def call_server(room_id: str) -> CallServer:
    return CallServer(room_id, "ws://janus.test/", 7, "secret", "pin", f"call-{room_id}", T0)


async def claim_and_release(store: RoomStore) -> None:
    await store.claim_call_server(call_server(R1.id))
    await store.claim_call_server(call_server(R2.id))
    assert await store.release_call_server(R2.id, f"call-{R2.id}", [room_deleted(R2.id, T0 + 3)])


async def claim_twice(store: RoomStore) -> None:
    await store.claim_window_instants(T0, window_events(T0), 100)  # the first claim sets where they start
    await store.claim_window_instants(NOW + 30 * DAY, window_events(NOW + 30 * DAY), 100)


async def webhook_step(store: RoomStore, step: str) -> None:
    """A subscription made, then the webhook write `step` on it (tests/webhooks has their behaviour)."""
    made = await store.insert_subscription(Subscription(
        "sub-1", "https://hooks.test/", None, None, EVENT_GRID_SCHEMA, "whsec_" + "A" * 32, T0, T0))
    assert made.cursor is not None
    if step == "update_subscription":
        assert await store.update_subscription(made._replace(endpoint="https://other.test/"))
    elif step == "delete_subscription":
        assert await store.delete_subscription(made.id)
    elif step == "claim_deliveries":
        assert await store.claim_deliveries("owner", NOW, NOW + 1, 10) == ([], None)
    elif step == "finish_delivery":
        delivery = Delivery(1, made.id, "", (0, 1), "t", "s", T0, b"{}", 0, T0)
        assert await store.finish_delivery(delivery, "owner", Outcome(True, None), NOW, NOW + 1) is None
    elif step == "redeliver":
        assert await store.redeliver(made.id, None, NOW) == 0
    elif step == "lease_subscription":
        assert await store.lease_subscription(made.id, "owner", NOW, NOW + 1)
    elif step == "finish_batch":
        assert await store.lease_subscription(made.id, "owner", NOW, NOW + 1)
        assert await store.finish_batch(BatchEnd(made.id, "owner", made.cursor, made.cursor, NOW + 2, NOW, True, 0))


async def console_step(store: RoomStore, step: str) -> None:
    """A console session and a failed sign-in stored, then the console write `step` (tests/store/
    test_console_store.py has their behaviour)."""
    session = ConsoleSessionRecord("a" * 64, "access-key", "primary", "fingerprint", 100, 200)
    await store.insert_console_session(session)
    await store.add_sign_in_failure("127.0.0.1", 100, 60)
    if step == "delete_console_session":
        assert await store.delete_console_session(session.token_hash)
    elif step == "add_sign_in_failure":
        await store.add_sign_in_failure("127.0.0.1", 101, 60)
        assert await store.get_sign_in_failures("127.0.0.1") == (2, 100)
    elif step == "sweep_console":
        assert await store.sweep_console(300, 60) == (1, 1)
    else:
        assert await store.get_console_session(session.token_hash) == session


def public_methods(cls: type) -> set[str]:
    return {name for name, member in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


@pytest.mark.parametrize("store_class", [SqliteStore, PostgresStore])
def test_every_store_method_is_a_read_or_a_write_with_a_case(store_class: type) -> None:
    assert not READS & WRITES.keys()
    protocol = public_methods(RoomStore)
    assert protocol == READS | WRITES.keys() | LIFECYCLE | STREAMS, \
        "classify the new store method here, and give a write a case"
    assert public_methods(store_class) == protocol  # no write beside the protocol


async def reads(store: RoomStore) -> tuple[object, ...]:
    """Everything a reader of the data below might keep."""
    return (
        await store.get_room(R1.id), await store.get_room(R2.id), await store.get_room(R3.id),
        await store.get_participant(R1.id, U), await store.get_participant(R1.id, X),
        await store.get_participant(R2.id, U), await store.get_participant(R3.id, U),
        await store.list_participants(R1.id, 0, 2), await store.list_participants(R1.id, 3, 2),
        await store.list_participants(R1.id, 0, 10),
        await store.list_participants(R2.id, 0, 10), await store.list_participants(R3.id, 0, 10),
        await store.list_rooms(NOW, None, 1), await store.list_rooms(NOW, None, 10),
        await store.query_rooms(RoomQuery(NOW), None, 10),
        await store.query_rooms(RoomQuery(NOW, frozenset({"open"}), U), None, 10),
        await store.count_rooms(RoomQuery(NOW, frozenset({"open"})), 10), await store.list_call_rooms(NOW, 10),
        await store.get_create_record("req-1"), await store.get_create_record("req-3"),
        await store.get_user(U), await store.get_user(X),
        await store.get_signing_keys(), await store.get_access_keys(),
        await store.get_call_server(R1.id), await store.get_call_server(R2.id),
        [event[1:] for event in await store.list_events(None, None, None, 10)],  # what, not where
        [event[1:] for event in (await store.latest_events(None, None, 10))[0]],
    )


@pytest.mark.parametrize("write", sorted(WRITES))
async def test_reads_kept_by_one_instance_follow_each_write_of_another(open_store: StoreFactory, write: str) -> None:
    reader, writer = open_store(), open_store()
    await writer.insert_user(CommunicationUser(U, T0))
    await writer.set_access_keys({"primary": "p1"}, T0)
    await writer.insert_room(R1, [Participant(U, Role.PRESENTER), Participant(V, Role.ATTENDEE),
                                  Participant(W, Role.CONSUMER)], record("req-1", R1.id))
    await writer.insert_room(R2, [Participant(U, Role.ATTENDEE)], None)
    before = await reads(reader)
    assert await reads(reader) == before  # read twice: kept, where the store keeps reads

    await WRITES[write](writer)

    truth = await reads(open_store())  # a store that has kept nothing
    assert await reads(reader) == truth
    assert (truth != before) == (write not in NO_READ_SEES)  # the case changes what a reader sees
