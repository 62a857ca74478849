"""The dispatcher's batch from the log, in process on both stores, with a sender that answers every request: a
parked room's new events are queued behind its pending deliveries, not sent; the other rooms' are sent, and the
cursor moves past the batch. A lease (of a subscription, or of a parked room's retry queue) whose holder is gone is
taken over at once, one whose holder lives is waited out."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping

import msgspec

from openrooms.events.subscriptions import EVENT_GRID_SCHEMA, BatchEnd, Parked, Subscription
from openrooms.service.clock import SystemClock
from openrooms.service.events import room_deleted
from openrooms.service.webhooks import Answer, Dispatcher, WebhooksService
from openrooms.store.protocol import RoomStore

RESOURCE = str(uuid.uuid4())


class Answering:
    def __init__(self) -> None:
        self.sent: list[str] = []  # the room of each event sent
        self.arrived = asyncio.Event()  # set once one has been

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> Answer:
        self.sent += [event["data"]["roomId"] for event in msgspec.json.decode(body)]
        self.arrived.set()
        return Answer(200, {}, b"")


async def resource_id() -> str:
    return RESOURCE


async def test_a_parked_rooms_new_events_queue_behind_and_the_others_go(store: RoomStore) -> None:
    clock = SystemClock()
    sender = Answering()
    dispatcher = Dispatcher(store, WebhooksService(store, clock, resource_id, sender), clock)
    made = await store.insert_subscription(Subscription(
        "sub-1", "https://hooks.test/", None, None, EVENT_GRID_SCHEMA, "whsec_" + "A" * 32, clock.now(), clock.now()))
    assert made.cursor is not None
    await store.append_events([room_deleted("r1", clock.now())])
    [first] = await store.list_events(made.cursor, None, None, 10)
    # r1's first event failed, and is retried in an hour: r1 is parked.
    assert await store.lease_subscription(made.id, "earlier", clock.now(), clock.now() + 1)
    hour = 3600 * 10_000_000
    failed = Parked(first, 1, clock.now() + hour, "HTTP 500")
    assert await store.finish_batch(BatchEnd(made.id, "earlier", made.cursor, first.position, clock.now() + 1,
                                             clock.now(), False, 1, (failed,)))
    await store.lease_subscription(made.id, "earlier", clock.now() + 2, 0)  # let go
    await store.append_events([room_deleted("r1", clock.now()), room_deleted("r2", clock.now())])

    subscription = await store.get_subscription(made.id)
    assert subscription is not None
    events = await store.list_events(subscription.cursor, None, None, 10)
    await dispatcher._feed(subscription, events)

    assert sender.sent == ["r2"]  # r1's second event waits behind its first
    after = await store.get_subscription(made.id)
    assert after is not None and after.cursor == events[-1].position
    state = (await store.delivery_states())[made.id]
    assert state.backlog == 2 and state.consecutive_failures == 0  # r1's two; r2's delivered
    assert await store.parked_rooms(made.id) == {"r1"}


async def test_a_live_lease_of_a_holder_gone_is_taken_over_at_once_and_of_one_alive_waited_out(
    store: RoomStore,
) -> None:
    clock = SystemClock()
    hour = 3600 * 10_000_000
    cases: list[tuple[str, set[str | None], list[str]]] = [("alive", set(), []), ("crashed", {"crashed"}, ["r1"])]
    for holder, dead, delivered in cases:
        sender = Answering()
        dispatcher = Dispatcher(store, WebhooksService(store, clock, resource_id, sender), clock,
                                gone=dead.__contains__)
        made = await store.insert_subscription(Subscription(
            f"sub-{holder}", "https://hooks.test/", None, None, EVENT_GRID_SCHEMA, "whsec_" + "A" * 32, clock.now(),
            clock.now()))
        assert await store.lease_subscription(made.id, holder, clock.now(), clock.now() + hour)
        await store.append_events([room_deleted("r1", clock.now())])
        await dispatcher._feed_all()
        await asyncio.gather(*dispatcher._feeding.values())
        assert sender.sent == delivered
        after = await store.get_subscription(made.id)
        assert after is not None and after.owner == (holder if not dead else dispatcher._owner)
        await store.delete_subscription(made.id)


async def test_a_retry_queue_leased_by_a_holder_gone_is_retried_at_once_and_by_one_alive_waited_out(
    store: RoomStore,
) -> None:
    clock = SystemClock()
    hour = 3600 * 10_000_000
    made = await store.insert_subscription(Subscription(
        "sub-1", "https://hooks.test/", None, None, EVENT_GRID_SCHEMA, "whsec_" + "A" * 32, clock.now(), clock.now()))
    assert made.cursor is not None
    await store.append_events([room_deleted("alive", clock.now()), room_deleted("crashed", clock.now())])
    alive, crashed = await store.list_events(made.cursor, None, None, 10)
    # Both rooms failed and are due for a retry; each queue is leased for an hour by a holder named after its room,
    # the live holder's due first (a dispatcher that took over every lease would retry it first).
    assert await store.lease_subscription(made.id, "earlier", clock.now(), clock.now() + hour)
    due = clock.now()
    assert await store.finish_batch(BatchEnd(
        made.id, "earlier", made.cursor, crashed.position, clock.now() + hour, clock.now(), False, 2,
        (Parked(alive, 1, due, "HTTP 500"), Parked(crashed, 1, due + 1, "HTTP 500"))))
    for holder in ("alive", "crashed"):
        [head], _ = await store.claim_deliveries(holder, due + 1, clock.now() + hour, 1)
        assert head.room_key == holder

    sender = Answering()
    dispatcher = Dispatcher(store, WebhooksService(store, clock, resource_id, sender), clock,
                            gone={"crashed"}.__contains__)
    running = asyncio.create_task(dispatcher.run())
    try:
        await asyncio.wait_for(sender.arrived.wait(), 30)  # the first round takes the crashed holder's queue over
        await asyncio.gather(*dispatcher._running)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert sender.sent == ["crashed"]  # the live holder's queue is left to it until its lease runs out
    assert await store.queue_holders(clock.now()) == {"alive"}
    assert (await store.delivery_states())[made.id].backlog == 1


async def test_a_holder_is_judged_once_a_round_however_many_leases_name_it(store: RoomStore) -> None:
    clock = SystemClock()
    hour = 3600 * 10_000_000
    judged: list[str | None] = []

    def gone(holder: str | None) -> bool:  # holders.gone reads /proc: once per holder and round
        judged.append(holder)
        return False

    dispatcher = Dispatcher(store, WebhooksService(store, clock, resource_id, Answering()), clock, gone=gone)
    for i in range(3):
        made = await store.insert_subscription(Subscription(
            f"sub-{i}", "https://hooks.test/", None, None, EVENT_GRID_SCHEMA, "whsec_" + "A" * 32, clock.now(),
            clock.now()))
        assert await store.lease_subscription(made.id, "other", clock.now(), clock.now() + hour)
    await store.append_events([room_deleted("r1", clock.now())])
    await dispatcher._feed_all()
    assert judged == ["other"] and not dispatcher._feeding
