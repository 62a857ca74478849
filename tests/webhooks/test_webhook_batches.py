"""Batched delivery (`maxEventsPerBatch`, `preferredBatchSizeInKilobytes`), in process on both stores, to real
receivers on loopback: the API's rules for the two properties; a request carries up to N events in the log's
order per room, within the preferred size unless one event alone is larger, read by the Event Grid SDK (each
element) and the CloudEvents SDK (each structured event of a batch, which it has no reader for as a whole); a failed
request parks every room it carried, and the retries deliver them, in order."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from typing import Any

import pytest
from azure.eventgrid import EventGridEvent
from cloudevents.v1.http import from_dict, from_http

from openrooms.events import types as t
from openrooms.service import events
from openrooms.service.ports import RoomStore
from tests.events.test_events_api import call
from tests.webhooks.receiver import Receiver, receiving
from tests.webhooks.test_webhooks import EVENTS, SUBSCRIPTIONS, error_of, serving, settled, subscribe

ROOMS = [f"room{i}" for i in range(5)]


def requests(receiver: Receiver) -> list[tuple[dict[str, str], list[Any]]]:
    """Each accepted request: its headers and its events."""
    out = []
    for headers, raw in receiver.deliveries:
        body = json.loads(raw)
        out.append((headers, body if isinstance(body, list) else [body]))
    return out


async def append_round_robin(store: RoomStore, count: int, rooms: list[str] = ROOMS) -> None:
    """`count` events over `rooms` in turn, committed together (so that one read of the log finds them all)."""
    now = 17_000_000_000_000_000
    await store.append_events([events.room_deleted(rooms[i % len(rooms)], now + i) for i in range(count)])


async def log_order(app: Any) -> dict[str, list[str]]:
    """The ids of each room's events, in the log's order."""
    page = (await call(app, "GET", f"/events?{EVENTS}&maxpagesize=1000")).json()["value"]
    order: dict[str, list[str]] = defaultdict(list)
    for event in page:
        order[event["subject"]].append(event["id"])
    return order


def arrival_order(delivered: list[Any], key: str = "subject") -> dict[str, list[str]]:
    order: dict[str, list[str]] = defaultdict(list)
    for event in delivered:
        order[event[key]].append(event["id"])
    return order


async def test_the_batch_properties_are_checked_stored_and_returned(store: RoomStore) -> None:
    async with serving(store) as app, receiving() as receiver:
        for fields, target in [({"maxEventsPerBatch": 0}, "maxEventsPerBatch"),
                               ({"maxEventsPerBatch": 5001}, "maxEventsPerBatch"),
                               ({"preferredBatchSizeInKilobytes": 0}, "preferredBatchSizeInKilobytes"),
                               ({"preferredBatchSizeInKilobytes": 1025}, "preferredBatchSizeInKilobytes")]:
            error = error_of(await call(app, "POST", SUBSCRIPTIONS, {"endpoint": receiver.url, **fields}))
            assert error["code"] == "BadRequest" and error["target"] == target, error
        wrong: list[tuple[str, object]] = [("maxEventsPerBatch", "10"), ("maxEventsPerBatch", True),
                                           ("maxEventsPerBatch", 1.5), ("preferredBatchSizeInKilobytes", "64")]
        for name, value in wrong:
            error = error_of(await call(app, "POST", SUBSCRIPTIONS, {"endpoint": receiver.url, name: value}))
            assert error["code"] == "BadRequest", error  # the body's shape: the JSON path at fault in details
            assert name in json.dumps(error)
        assert (await call(app, "GET", SUBSCRIPTIONS)).json() == {"value": []}

        plain = await subscribe(app, receiver)
        assert (plain["maxEventsPerBatch"], plain["preferredBatchSizeInKilobytes"]) == (1, 64)  # Event Grid's
        made = await subscribe(app, receiver, maxEventsPerBatch=5000, preferredBatchSizeInKilobytes=1024)
        assert (made["maxEventsPerBatch"], made["preferredBatchSizeInKilobytes"]) == (5000, 1024)
        one = f"/events/subscriptions/{made['id']}?{EVENTS}"
        shown = (await call(app, "GET", one)).json()
        assert (shown["maxEventsPerBatch"], shown["preferredBatchSizeInKilobytes"]) == (5000, 1024)
        listed = {s["id"]: s for s in (await call(app, "GET", SUBSCRIPTIONS)).json()["value"]}
        assert listed[made["id"]]["maxEventsPerBatch"] == 5000 and listed[plain["id"]]["maxEventsPerBatch"] == 1

        changed = await call(app, "PATCH", one, {"maxEventsPerBatch": 10})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["maxEventsPerBatch"], changed.json()["preferredBatchSizeInKilobytes"]) == (10, 1024)
        changed = await call(app, "PATCH", one, {"preferredBatchSizeInKilobytes": 1})
        assert (changed.json()["maxEventsPerBatch"], changed.json()["preferredBatchSizeInKilobytes"]) == (10, 1)
        for fields, target in [({"maxEventsPerBatch": 5001}, "maxEventsPerBatch"),
                               ({"preferredBatchSizeInKilobytes": -1}, "preferredBatchSizeInKilobytes")]:
            assert error_of(await call(app, "PATCH", one, fields))["target"] == target
        assert error_of(await call(app, "PATCH", one, {"maxEventsPerBatch": "x"}))["code"] == "BadRequest"
        shown = (await call(app, "GET", one)).json()
        assert (shown["maxEventsPerBatch"], shown["preferredBatchSizeInKilobytes"]) == (10, 1)  # unchanged


async def test_event_grid_batches_carry_up_to_n_events_in_each_rooms_order(store: RoomStore) -> None:
    async with serving(store) as app, receiving() as receiver:
        made = await subscribe(app, receiver, maxEventsPerBatch=10)
        await append_round_robin(store, 25)
        delivered = await receiver.wait_for(25)
        sent = requests(receiver)
        assert len(sent) <= 4 and all(len(body) <= 10 for _, body in sent), [len(b) for _, b in sent]
        assert max(len(body) for _, body in sent) > 1
        parsed = [EventGridEvent.from_dict(event) for event in delivered]
        assert {e.event_type for e in parsed} == {"OpenRooms.RoomDeleted"}
        assert sorted(e.data["roomId"] for e in parsed) == sorted(ROOMS * 5)
        assert arrival_order(delivered) == await log_order(app)  # each room's in the log's order, each once
        for headers, body in sent:
            assert headers["content-type"].startswith("application/json")
            if len(body) == 1:
                assert headers["webhook-id"] == body[0]["id"]
            else:  # one id for the request, derived from its events' ids
                ids = ",".join(e["id"] for e in body)
                namespace = uuid.UUID(body[0]["topic"].rsplit("/", 1)[1])
                assert headers["webhook-id"] == str(uuid.uuid5(namespace, "batch:" + ids))
        state = await settled(app, made["id"])
        assert state["consecutiveFailures"] == 0 and state["lastSuccessDateTime"] is not None


async def test_cloud_events_batches_are_in_batched_mode_and_one_event_in_structured_mode(store: RoomStore) -> None:
    async with serving(store) as app, receiving() as receiver:
        await subscribe(app, receiver, schema="CloudEventSchemaV1_0", maxEventsPerBatch=10)
        await append_round_robin(store, 25)
        delivered = await receiver.wait_for(25)
        sent = requests(receiver)
        assert len(sent) <= 4 and all(len(body) <= 10 for _, body in sent)
        for headers, body in sent:
            if len(body) > 1:
                assert headers["content-type"] == "application/cloudevents-batch+json"
                assert isinstance(json.loads(receiver.deliveries[sent.index((headers, body))][1]), list)
        parsed = [from_dict(event) for event in delivered]  # each structured event of the batches
        assert all(p["specversion"] == "1.0" and p["type"] == "OpenRooms.RoomDeleted" for p in parsed)
        assert sorted(p.data["roomId"] for p in parsed) == sorted(ROOMS * 5)
        assert arrival_order(delivered) == await log_order(app)

        await append_round_robin(store, 1)  # alone: structured mode, as without batches
        await receiver.wait_for(26)
        headers, raw = receiver.deliveries[-1]
        assert headers["content-type"] == "application/cloudevents+json"
        single = from_http(headers, raw)
        assert single["id"] == headers["webhook-id"] and single.data["roomId"] == ROOMS[0]


async def test_a_failed_batch_parks_the_rooms_it_carried_and_the_retries_deliver_them(store: RoomStore) -> None:
    async with serving(store) as app, receiving() as receiver:
        made = await subscribe(app, receiver, maxEventsPerBatch=10)
        first = ["room0", "room1"]  # the first request of the read carries only these: it fails

        def refuse_room0_batches(body: Any) -> int:
            several = isinstance(body, list) and len(body) > 1
            return 500 if several and any(e["data"]["roomId"] == "room0" for e in body) else 200

        receiver.answer = refuse_room0_batches
        now = 17_000_000_000_000_000
        # room0 has more events in the same read, after the failed request: they queue behind its retries.
        await store.append_events(
            [events.room_deleted(first[i % 2], now + i) for i in range(10)]
            + [events.room_deleted(ROOMS[2 + i % 3], now + 10 + i) for i in range(15)]
            + [events.room_deleted("room0", now + 30 + i) for i in range(2)])
        delivered = await receiver.wait_for(27)
        state = await settled(app, made["id"])
        assert state["deadLettered"] == 0 and state["backlog"] == 0
        assert receiver.attempts == len(receiver.deliveries) + 1  # the one failed request
        assert arrival_order(delivered) == await log_order(app)  # each room in order, each event once
        by_room: dict[str, list[int]] = defaultdict(list)
        for _, body in requests(receiver):
            for event in body:
                by_room[event["data"]["roomId"]].append(len(body))
        assert all(size == 1 for room in first for size in by_room[room])  # retried one per request
        assert all(size > 1 for room in ROOMS[2:] for size in by_room[room])  # the others went on in batches


async def test_the_preferred_size_splits_requests_and_a_larger_event_goes_alone(store: RoomStore) -> None:
    async with serving(store) as app, receiving() as receiver:
        await subscribe(app, receiver, maxEventsPerBatch=100, preferredBatchSizeInKilobytes=1)
        now = 17_000_000_000_000_000
        big = events._event(t.ROOM_DELETED, "rooms/big", "big", now, t.RoomDeletedData("x" * 2000))
        await store.append_events([*(events.room_deleted(ROOMS[i % 5], now + i) for i in range(10)), big,
                                   *(events.room_deleted(ROOMS[i % 5], now + 20 + i) for i in range(10))])
        delivered = await receiver.wait_for(21)
        sizes = [(len(raw), len(json.loads(raw))) for _, raw in receiver.deliveries]
        assert 2 < len(sizes) < 21, sizes
        assert all(length <= 1024 for length, count in sizes if count > 1), sizes
        assert [count for length, count in sizes if length > 1024] == [1]  # the large one, alone
        assert arrival_order(delivered) == await log_order(app)


@pytest.mark.parametrize("refusal", [400, 413])
async def test_a_batch_refused_as_it_is_is_retried_one_event_at_a_time(store: RoomStore, refusal: int) -> None:
    async with serving(store) as app, receiving() as receiver:
        made = await subscribe(app, receiver, maxEventsPerBatch=10)
        refused_alone: list[Any] = []

        def refuse(body: Any) -> int:
            # Any request of several events; and, alone, the first event of room1 (its first try alone).
            if len(body) > 1:
                return refusal
            if body[0]["data"]["roomId"] == ROOMS[1] and not refused_alone:
                refused_alone.append(body[0])
                return refusal
            return 200

        receiver.answer = refuse
        await append_round_robin(store, 6, ROOMS[:3])  # six events, three rooms
        delivered = await receiver.wait_for(5)
        state = await settled(app, made["id"])
        assert state["deadLettered"] == 1 and state["backlog"] == 0  # only the event refused alone
        assert [e["id"] for e in delivered].count(refused_alone[0]["id"]) == 0
        assert sorted(e["data"]["roomId"] for e in delivered) == sorted([*ROOMS[:3], ROOMS[0], ROOMS[2]])
        assert all(len(body) == 1 for _, body in requests(receiver))
