"""The webhook store's rules for delivering from the log, on both stores: one dispatcher at a time leases a
subscription, and a batch's end moves the cursor only for the lease holder and from the cursor it started after;
what failed is queued with its room's later events, and a room with pending deliveries is parked; the backlog is
the pending deliveries and the matching events after the cursor."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from openrooms.events.subscriptions import EVENT_GRID_SCHEMA, BatchEnd, Outcome, Parked, Subscription
from openrooms.service.events import room_deleted
from openrooms.service.ports import RoomStore
from openrooms.store import migrate
from openrooms.store.postgres import PostgresStore
from openrooms.store.sqlite import SqliteStore
from openrooms.store.sqlite_webhooks import PARKED_ROOMS
from tests.store.databases import empty_database

T0 = 17_000_000_000_000_000
NOW = T0 + 1000
LEASE = 100


async def subscribed(store: RoomStore, room_id: str | None = None,
                     types: tuple[str, ...] | None = None) -> Subscription:
    made = await store.insert_subscription(Subscription(
        "sub-1", "https://hooks.test/", types, room_id, EVENT_GRID_SCHEMA, "whsec_" + "A" * 32, T0, T0))
    assert made.cursor is not None
    return made


def batch_end(made: Subscription, owner: str, cursor: tuple[int, int], now: int = NOW, *, succeeded: bool = True,
              failures: int = 0, parked: tuple[Parked, ...] = ()) -> BatchEnd:
    assert made.cursor is not None
    return BatchEnd(made.id, owner, made.cursor, cursor, now + LEASE, now, succeeded, failures, parked)


async def test_one_dispatcher_at_a_time_leases_a_subscription_and_moves_its_cursor(store: RoomStore) -> None:
    made = await subscribed(store)
    await store.append_events([room_deleted("r1", T0), room_deleted("r2", T0)])
    events = await store.list_events(made.cursor, None, None, 10)
    assert len(events) == 2
    assert await store.lease_subscription(made.id, "a", NOW, NOW + LEASE)
    assert not await store.lease_subscription(made.id, "b", NOW + LEASE - 1, NOW + 2 * LEASE)  # a's is live
    assert await store.lease_subscription(made.id, "a", NOW + 1, NOW + LEASE)  # a renews its own
    leased = await store.get_subscription(made.id)
    assert leased is not None and (leased.owner, leased.lease_until) == ("a", NOW + LEASE)
    assert not await store.finish_batch(batch_end(made, "b", events[-1].position))  # b holds no lease
    # Once a's lease has run out, b takes it over; a's batch end then changes nothing.
    assert await store.lease_subscription(made.id, "b", NOW + LEASE, NOW + 2 * LEASE)
    assert not await store.finish_batch(batch_end(made, "a", events[-1].position))
    assert (await store.get_subscription(made.id)).cursor == made.cursor  # type: ignore[union-attr]
    assert (await store.delivery_states())[made.id].backlog == 2
    # b delivers the batch: the cursor moves on from where it was, once.
    assert await store.finish_batch(batch_end(made, "b", events[-1].position, NOW + LEASE))
    assert not await store.finish_batch(batch_end(made, "b", events[-1].position, NOW + LEASE))  # moved already
    after = await store.get_subscription(made.id)
    assert after is not None and after.cursor == events[-1].position and after.lease_until == NOW + 2 * LEASE
    state = (await store.delivery_states())[made.id]
    assert (state.backlog, state.last_success_at, state.consecutive_failures) == (0, NOW + LEASE, 0)
    assert not await store.lease_subscription("no-such", "a", NOW, NOW + LEASE)


async def test_a_live_lease_is_taken_over_only_from_the_holder_named_gone(store: RoomStore) -> None:
    made = await subscribed(store)
    assert await store.lease_subscription(made.id, "a", NOW, NOW + LEASE)
    assert not await store.lease_subscription(made.id, "b", NOW + 1, NOW + LEASE, replacing="c")  # c holds none
    assert await store.lease_subscription(made.id, "b", NOW + 1, NOW + LEASE, replacing="a")
    leased = await store.get_subscription(made.id)
    assert leased is not None and leased.owner == "b"
    assert not await store.lease_subscription(made.id, "c", NOW + 2, NOW + LEASE, replacing="a")  # not a's any more


async def test_a_leased_queue_is_taken_over_only_from_the_holder_named_gone(store: RoomStore) -> None:
    made = await subscribed(store)
    await store.append_events([room_deleted("r1", T0), room_deleted("r2", T0 + 1)])
    r1, r2 = await store.list_events(made.cursor, None, None, 10)
    assert await store.lease_subscription(made.id, "a", NOW, NOW + LEASE)
    parked = (Parked(r1, 1, NOW + 10, "HTTP 500"), Parked(r2, 1, NOW + 20, "HTTP 500"))
    assert await store.finish_batch(batch_end(made, "a", r2.position, succeeded=False, failures=2, parked=parked))
    [r1_head], _ = await store.claim_deliveries("q1", NOW + 10, NOW + 10 + LEASE, 1)
    [r2_head], _ = await store.claim_deliveries("q2", NOW + 20, NOW + 20 + LEASE, 1)
    assert await store.queue_holders(NOW + 21) == {"q1", "q2"}
    # Live leases: taken by nobody, unless their holder is named gone; and only that holder's.
    assert await store.claim_deliveries("b", NOW + 21, NOW + 21 + LEASE, 10) == ([], NOW + 10 + LEASE)
    assert (await store.claim_deliveries("b", NOW + 21, NOW + 21 + LEASE, 10, ["c"])).deliveries == []  # none c's
    [taken], due = await store.claim_deliveries("b", NOW + 21, NOW + 21 + LEASE, 10, ["q2", "c"])
    assert (taken.seq, taken.position, taken.attempts) == (r2_head.seq, r2.position, 1)
    assert due == NOW + 10 + LEASE  # q1's, still
    assert await store.queue_holders(NOW + 22) == {"q1", "b"}
    assert (await store.claim_deliveries("c", NOW + 22, NOW + 22 + LEASE, 10, ["q2"])).deliveries == []  # b's now
    # The holder taken over from holds nothing: its attempt's outcome is recorded, the queue stays b's.
    assert await store.finish_delivery(r2_head, "q2", Outcome(False, NOW + 30, "HTTP 500"), NOW + 23,
                                       NOW + 23 + LEASE) is None
    assert await store.queue_holders(NOW + 23) == {"q1", "b"}
    assert r1_head.position == r1.position


async def test_a_failed_event_parks_its_room_behind_its_queued_deliveries(store: RoomStore) -> None:
    made = await subscribed(store)
    await store.append_events([room_deleted("r1", T0), room_deleted("r1", T0 + 1), room_deleted("r2", T0 + 2),
                               room_deleted("r3", T0 + 3)])
    r1_first, r1_second, r2, r3 = await store.list_events(made.cursor, None, None, 10)
    assert await store.lease_subscription(made.id, "a", NOW, NOW + LEASE)
    assert await store.parked_rooms(made.id) == set()
    # r1's first event failed (retried at NOW + 50), so its second waits behind it; r3's was refused for good.
    parked = (Parked(r1_first, 1, NOW + 50, "HTTP 500"), Parked(r1_second), Parked(r3, 1, None, "HTTP 400"))
    assert await store.finish_batch(batch_end(made, "a", r3.position, succeeded=True, failures=2, parked=parked))
    assert await store.parked_rooms(made.id) == {"r1"}  # a dead letter parks nothing
    state = (await store.delivery_states())[made.id]
    assert (state.backlog, state.dead_lettered, state.consecutive_failures) == (2, 1, 2)
    [dead] = await store.list_dead_letters(made.id, 10)
    assert (dead.position, dead.attempts, dead.last_error) == (r3.position, 1, "HTTP 400")
    assert await store.claim_deliveries("q", NOW + 49, NOW + 49 + LEASE, 10) == ([], NOW + 50)  # not due yet
    [head], due = await store.claim_deliveries("q", NOW + 50, NOW + 50 + LEASE, 10)
    assert due == NOW + 50 + LEASE  # r1's queue, leased: due for another once the lease has run out
    assert (head.position, head.attempts, head.room_key) == (r1_first.position, 1, "r1")
    assert r2.position not in {d.position for d in await store.list_dead_letters(made.id, 10)}

    # A new event of r1 queues behind (parked), its queue still due at its head's retry.
    await store.append_events([room_deleted("r1", T0 + 4)])
    [r1_third] = await store.list_events(r3.position, None, None, 10)
    cursor = (await store.get_subscription(made.id)).cursor  # type: ignore[union-attr]
    assert cursor == r3.position
    moved = made._replace(cursor=cursor)
    assert await store.finish_batch(batch_end(moved, "a", r1_third.position, NOW + 1, succeeded=False, failures=0,
                                              parked=(Parked(r1_third),)))
    assert (await store.delivery_states())[made.id].backlog == 3
    assert (await store.delivery_states())[made.id].consecutive_failures == 2  # no success: kept, plus none
    # The queue's deliveries go in the log's order: the head, then the two behind it.
    following = await store.finish_delivery(head, "q", Outcome(True, None), NOW + 51, NOW + 51 + LEASE)
    assert following is not None and following.position == r1_second.position
    last = await store.finish_delivery(following, "q", Outcome(True, None), NOW + 52, NOW + 52 + LEASE)
    assert last is not None and last.position == r1_third.position
    assert await store.finish_delivery(last, "q", Outcome(True, None), NOW + 53, NOW + 53 + LEASE) is None
    assert await store.parked_rooms(made.id) == set()


async def test_the_backlog_counts_the_events_after_the_cursor_that_match(store: RoomStore) -> None:
    made = await subscribed(store, room_id="r1", types=("OpenRooms.RoomDeleted",))
    await store.append_events([room_deleted("r1", T0), room_deleted("r2", T0)])
    assert (await store.delivery_states())[made.id].backlog == 1  # r2's is not its room


async def test_the_parked_rooms_are_read_from_the_pending_deliveries_alone(store: RoomStore) -> None:
    """However many dead letters a subscription keeps, its parked rooms (read at every batch) are read from the
    index of the pending deliveries, not by passing over the dead ones."""
    made = await subscribed(store)
    await store.append_events([room_deleted(f"r{i}", T0 + i) for i in range(201)])
    *dead, pending = await store.list_events(made.cursor, None, None, 1000)
    assert await store.lease_subscription(made.id, "a", NOW, NOW + LEASE)
    parked = (*(Parked(e, 1, None, "HTTP 400") for e in dead), Parked(pending, 1, NOW + 50, "HTTP 500"))
    assert await store.finish_batch(batch_end(made, "a", pending.position, succeeded=False, failures=201,
                                              parked=parked))
    assert await store.parked_rooms(made.id) == {"r200"}
    statement = PARKED_ROOMS.format(q="?" if isinstance(store, SqliteStore) else "%s")
    if isinstance(store, SqliteStore):
        plan = await store._read(lambda db: db.execute(f"EXPLAIN QUERY PLAN {statement}", (made.id,)).fetchall())
        text = " ".join(str(row[-1]) for row in plan)
    else:
        assert isinstance(store, PostgresStore)
        async with store._connection() as db:
            await db.execute("ANALYZE webhook_deliveries")
            await db.execute("SET enable_seqscan = off")  # a table this small is otherwise read whole
            try:
                rows = await (await db.execute(f"EXPLAIN {statement}", (made.id,))).fetchall()
            finally:
                await db.execute("RESET enable_seqscan")
        text = " ".join(str(row[0]) for row in rows)
    assert "webhook_deliveries_pending" in text, text


async def test_the_batch_properties_are_stored_and_changed(store: RoomStore) -> None:
    plain = await subscribed(store)
    assert (plain.max_events_per_batch, plain.preferred_batch_kilobytes) == (1, 64)  # the defaults
    batched = await store.insert_subscription(Subscription(
        "sub-2", "https://hooks.test/", None, None, EVENT_GRID_SCHEMA, "whsec_" + "A" * 32, T0, T0,
        max_events_per_batch=100, preferred_batch_kilobytes=512))
    got = await store.get_subscription(batched.id)
    assert got is not None and (got.max_events_per_batch, got.preferred_batch_kilobytes) == (100, 512)
    assert await store.update_subscription(got._replace(max_events_per_batch=5000, preferred_batch_kilobytes=1))
    listed = {s.id: s for s in await store.list_subscriptions()}
    assert (listed[batched.id].max_events_per_batch, listed[batched.id].preferred_batch_kilobytes) == (5000, 1)
    assert (listed[plain.id].max_events_per_batch, listed[plain.id].preferred_batch_kilobytes) == (1, 64)
    # The lease columns, read after them, are where they were.
    assert await store.lease_subscription(batched.id, "a", NOW, NOW + LEASE)
    leased = await store.get_subscription(batched.id)
    assert leased is not None and (leased.owner, leased.lease_until) == ("a", NOW + LEASE)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_subscriptions_made_before_batches_get_the_defaults(kind: str, tmp_path: Path) -> None:
    with empty_database(kind, tmp_path) as (engine, _url):
        with engine.begin() as db:
            migrate.upgrade(db, "0016")
            db.execute(text(
                "INSERT INTO webhook_subscriptions (id, endpoint, event_schema, secret, created_at, updated_at, "
                "cursor_tx, cursor_seq) VALUES ('old', 'https://hooks.test/', 'EventGridSchema', 'whsec_x', 1, 1, "
                "0, 0)"))
            migrate.upgrade(db)
            row = db.execute(text("SELECT max_events_per_batch, preferred_batch_kilobytes "
                                  "FROM webhook_subscriptions WHERE id = 'old'")).one()
        assert tuple(row) == (1, 64)
