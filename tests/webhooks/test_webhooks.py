"""Webhook subscriptions and their delivery, in process on both stores, to real receivers on loopback: the API's
rules, both handshakes, signatures (standardwebhooks), the Event Grid and CloudEvents SDKs reading what is
delivered, order per room while retrying, dead letters and redelivery, two dispatchers sharing one database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from azure.eventgrid import EventGridEvent, SystemEventNames
from cloudevents.v1.http import from_http

from openrooms.config import Settings
from openrooms.http.app import create_app
from openrooms.http.pipeline import Pipeline
from openrooms.service.ports import RoomStore
from tests.events.test_events_api import call
from tests.store.conftest import StoreFactory
from tests.webhooks.receiver import Receiver, receiving

ROOMS = "api-version=2025-03-13"
EVENTS = "api-version=2026-11-01-openrooms"
SUBSCRIPTIONS = f"/events/subscriptions?{EVENTS}"
# Retries within milliseconds: Event Grid's schedule times 1/10000 (10 s -> 1 ms, the 24 h -> 8.6 s).
FAST = {"webhook_retry_scale": 0.0001, "webhook_timeout": 2.0, "webhook_lease_seconds": 3.0}


@contextlib.asynccontextmanager
async def serving(store: RoomStore, **settings: Any) -> AsyncIterator[Pipeline]:
    """The app on `store` with its lifespan running (so its dispatcher delivers)."""
    app = create_app(Settings(in_memory=True, **{**FAST, **settings}), store=store)
    async with app._lifespan_context(app):
        yield app


async def subscribe(app: Pipeline, receiver: Receiver, **fields: Any) -> dict[str, Any]:
    created = await call(app, "POST", SUBSCRIPTIONS, {"endpoint": receiver.url, **fields})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    receiver.secret = body["secret"]
    return body


async def create_room(app: Pipeline) -> str:
    response = await call(app, "POST", f"/rooms?{ROOMS}", {})
    assert response.status_code == 201, response.text
    room_id: str = response.json()["id"]
    return room_id


async def subscription(app: Pipeline, subscription_id: str) -> dict[str, Any]:
    response = await call(app, "GET", f"/events/subscriptions/{subscription_id}?{EVENTS}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def settled(app: Pipeline, subscription_id: str) -> dict[str, Any]:
    """The subscription's delivery state once nothing is waiting (a receiver sees a delivery just before the
    dispatcher records it)."""
    for _ in range(400):
        state: dict[str, Any] = (await subscription(app, subscription_id))["delivery"]
        if state["backlog"] == 0:
            return state
        await receiver_pause()
    raise AssertionError(f"deliveries still waiting: {state}")


def error_of(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


async def test_subscriptions_are_made_listed_changed_and_deleted_with_clear_errors(store: RoomStore) -> None:
    async with serving(store) as app, receiving() as receiver:
        for body, target in [({"endpoint": "http://example.com/hook"}, "endpoint"),
                             ({"endpoint": "ftp://127.0.0.1/hook"}, "endpoint"),
                             ({"endpoint": receiver.url, "types": ["OpenRooms.Nope"]}, "types"),
                             ({"endpoint": receiver.url, "schema": "Custom"}, "schema"),
                             ({"endpoint": receiver.url, "secret": "not-a-secret"}, "secret")]:
            error = error_of(await call(app, "POST", SUBSCRIPTIONS, body))
            assert error["target"] == target, error
        assert error_of(await call(app, "POST", SUBSCRIPTIONS, {"types": []}))["code"] == "BadRequest"
        receiver.wrong_handshake = True
        for schema in ("EventGridSchema", "CloudEventSchemaV1_0"):
            error = error_of(await call(app, "POST", SUBSCRIPTIONS, {"endpoint": receiver.url, "schema": schema}))
            assert "handshake failed" in error["message"] and error["target"] == "endpoint"
        assert receiver.handshakes == 2
        assert (await call(app, "GET", SUBSCRIPTIONS)).json() == {"value": []}  # nothing half-made
        receiver.wrong_handshake = False

        made = await subscribe(app, receiver, types=["OpenRooms.RoomCreated"])
        assert made["secret"].startswith("whsec_") and made["schema"] == "EventGridSchema"
        assert made["delivery"] == {"lastSuccessDateTime": None, "consecutiveFailures": 0, "backlog": 0,
                                    "deadLettered": 0}
        listed = (await call(app, "GET", SUBSCRIPTIONS)).json()["value"]
        assert [s["id"] for s in listed] == [made["id"]] and "secret" not in listed[0]
        one = f"/events/subscriptions/{made['id']}?{EVENTS}"
        changed = await call(app, "PATCH", one, {"types": None, "roomId": "123"})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["types"], changed.json()["roomId"]) == (None, "123")
        assert error_of(await call(app, "PATCH", one, {"endpoint": "http://10.0.0.1/"}))["target"] == "endpoint"
        assert (await call(app, "DELETE", one)).status_code == 204
        assert error_of(await call(app, "GET", one), 404)["code"] == "NotFound"
        assert error_of(await call(app, "DELETE", one), 404)["code"] == "NotFound"


async def test_event_grid_deliveries_are_signed_parse_and_match_the_log(store: RoomStore) -> None:
    async with serving(store) as app, receiving() as receiver:
        await create_room(app)  # before the subscription: not delivered
        made = await subscribe(app, receiver)
        rooms = [await create_room(app) for _ in range(3)]
        await call(app, "DELETE", f"/rooms/{rooms[0]}?{ROOMS}")
        delivered = await receiver.wait_for(4)
        parsed = [EventGridEvent.from_dict(event) for event in delivered]
        # In order within a room; rooms go side by side.
        assert [e.event_type for e in parsed if e.data["roomId"] == rooms[0]] == [
            "OpenRooms.RoomCreated", "OpenRooms.RoomDeleted"]
        assert sorted(e.data["roomId"] for e in parsed) == sorted([*rooms, rooms[0]])
        headers = receiver.deliveries[0][0]
        assert headers["content-type"].startswith("application/json") and headers["webhook-id"] == delivered[0]["id"]
        # Replay: the log after the subscription's start holds the same events, with the same ids and data.
        log = (await call(app, "GET", f"/events?{EVENTS}")).json()["value"][1:]
        assert {e["id"]: e["data"] for e in log} == {e["id"]: e["data"] for e in delivered}
        state = await settled(app, made["id"])
        assert state["consecutiveFailures"] == 0 and state["lastSuccessDateTime"] is not None


async def test_call_events_fit_the_event_grid_system_event_models(store: RoomStore) -> None:
    from openrooms.events import types as t
    from openrooms.service import events

    async with serving(store) as app, receiving() as receiver:
        await subscribe(app, receiver, types=[t.CALL_STARTED])
        user = t.AcsCallParticipant(t.CommunicationIdentifierModel("8:acs:x_y", "communicationUser",
                                                                   t.CommunicationUserIdentifierModel("8:acs:x_y")),
                                    "Presenter")
        data = t.AcsCallStartedEventData(user, "server-call", "correlation", room=t.AcsCallRoom("123"),
                                         isRoomsCall=True)
        await store.append_events([events._event(t.CALL_STARTED, "rooms/123", "123", 1, data)])
        [event] = await receiver.wait_for(1)
        parsed = EventGridEvent.from_dict(event)
        assert parsed.event_type == SystemEventNames.AcsCallStartedEventName  # the SDK's system event name
        assert parsed.data["serverCallId"] == "server-call" and parsed.data["room"] == {"id": "123"}


async def test_cloud_events_are_structured_signed_and_parse(store: RoomStore) -> None:
    async with serving(store) as app, receiving() as receiver:
        await subscribe(app, receiver, schema="CloudEventSchemaV1_0")
        assert receiver.handshakes == 1  # the OPTIONS of the abuse protection
        room_id = await create_room(app)
        await receiver.wait_for(1)
        headers, raw = receiver.deliveries[0]
        assert headers["content-type"].startswith("application/cloudevents+json")
        parsed = from_http(headers, raw)
        assert parsed["type"] == "OpenRooms.RoomCreated" and parsed["subject"] == f"rooms/{room_id}"
        assert parsed["specversion"] == "1.0" and parsed.data["roomId"] == room_id
        assert headers["webhook-id"] == parsed["id"]


async def test_a_room_waits_while_its_earlier_event_is_retried(store: RoomStore) -> None:
    async with serving(store) as app, receiving() as receiver:
        await subscribe(app, receiver)
        failures = {"left": 3}

        def flaky(body: Any) -> int:  # the first event fails three times, the rest goes through
            if body[0]["eventType"] == "OpenRooms.RoomCreated" and failures["left"]:
                failures["left"] -= 1
                return 500
            return 200

        receiver.answer = flaky
        room_id = await create_room(app)
        await call(app, "PATCH", f"/rooms/{room_id}?{ROOMS}", {"pstnDialOutEnabled": True})
        await call(app, "DELETE", f"/rooms/{room_id}?{ROOMS}")
        delivered = await receiver.wait_for(3)
        assert [e["eventType"] for e in delivered] == [
            "OpenRooms.RoomCreated", "OpenRooms.RoomUpdated", "OpenRooms.RoomDeleted"]
        assert receiver.attempts == 6


async def test_failures_dead_letter_and_redelivery_delivers_them(store: RoomStore) -> None:
    async with serving(store, webhook_max_attempts=2) as app, receiving() as receiver:
        made = await subscribe(app, receiver)
        receiver.answer = lambda body: 500
        first, second = await create_room(app), await create_room(app)
        one = f"/events/subscriptions/{made['id']}"

        async def dead_letters() -> list[Any]:
            page = await call(app, "GET", f"{one}/deadLetters?{EVENTS}")
            assert page.status_code == 200, page.text
            value: list[Any] = page.json()["value"]
            return value

        for _ in range(200):
            if len(await dead_letters()) == 2:
                break
            await receiver_pause()
        letters = await dead_letters()
        assert [d["data"]["roomId"] for d in letters] == [first, second]
        assert letters[0]["attempts"] == 2 and letters[0]["lastError"] == "HTTP 500"
        state = (await subscription(app, made["id"]))["delivery"]
        assert state["deadLettered"] == 2 and state["consecutiveFailures"] == 4 and state["backlog"] == 0
        metrics = (await call(app, "GET", "/metrics")).text
        assert f'openrooms_webhook_dead_letters{{subscription="{made["id"]}"}} 2.0' in metrics

        receiver.answer = lambda body: 200
        unknown = await call(app, "POST", f"{one}:redeliver?{EVENTS}", {"eventIds": ["nope"]})
        assert error_of(unknown, 404)["target"] == "eventIds"
        again = await call(app, "POST", f"{one}:redeliver?{EVENTS}", {"eventIds": [letters[1]["id"]]})
        assert again.json() == {"redelivered": 1}
        assert [e["id"] for e in await receiver.wait_for(1)] == [letters[1]["id"]]
        assert (await call(app, "POST", f"{one}:redeliver?{EVENTS}", {})).json() == {"redelivered": 1}
        assert [e["id"] for e in await receiver.wait_for(2)] == [letters[1]["id"], letters[0]["id"]]
        assert await dead_letters() == []
        state = await settled(app, made["id"])
        assert (state["deadLettered"], state["consecutiveFailures"]) == (0, 0)


async def receiver_pause() -> None:
    await asyncio.sleep(0.05)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for `condition`, looking every 50 ms, for 20 s at most."""
    for _ in range(400):
        if condition():
            return
        await receiver_pause()
    raise AssertionError(f"still waiting for {what}")


async def test_a_receiver_down_then_up_gets_everything(store: RoomStore) -> None:
    async with serving(store) as app, receiving() as receiver:
        await subscribe(app, receiver)
        receiver.answer = lambda body: 503
        rooms = [await create_room(app) for _ in range(3)]
        await until(lambda: receiver.attempts >= 6, "six failed attempts")
        receiver.answer = lambda body: 200
        delivered = await receiver.wait_for(3)
        assert sorted(e["data"]["roomId"] for e in delivered) == sorted(rooms)


async def test_a_receiver_slower_than_the_timeout_gets_the_event_again(store: RoomStore) -> None:
    async with serving(store, webhook_timeout=0.2, webhook_lease_seconds=1.0) as app, receiving() as receiver:
        made = await subscribe(app, receiver)
        receiver.delay = 0.4  # answers after the dispatcher gave up on it
        await create_room(app)
        await until(lambda: receiver.attempts >= 1, "the first attempt")
        receiver.delay = 0
        state = await settled(app, made["id"])
        assert receiver.attempts >= 2 and state["lastSuccessDateTime"] is not None
        assert len({e["id"] for e in receiver.events()}) == 1  # the same event each time: at least once


async def test_two_dispatchers_on_one_database_deliver_each_event_once(open_store: StoreFactory) -> None:
    first_store, second_store = open_store(), open_store()
    async with serving(first_store) as first, serving(second_store) as second, receiving() as receiver:
        receiver.delay = 0.01
        await subscribe(first, receiver)
        rooms = [await create_room(app) for app in (first, second) * 10]
        delivered = await receiver.wait_for(20)
        ids = [e["id"] for e in delivered]
        assert sorted(e["data"]["roomId"] for e in delivered) == sorted(rooms)
        assert len(set(ids)) == len(ids) == 20  # no lease expired: each delivered once

