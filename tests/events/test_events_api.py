"""`GET /events`, driven in process: every change's event in order, pages that read on, filters, long-polling,
the extension's api-version and access-key auth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from azure.eventgrid import EventGridEvent

from openrooms.config import Settings
from openrooms.http.app import create_app
from openrooms.http.pipeline import Pipeline
from openrooms.store.sqlite import SqliteStore
from tests.support import sign_headers, user_id

HOST = "test"
ROOMS = "api-version=2025-03-13"
EVENTS = "api-version=2026-11-01-openrooms"
IDENTITY = "api-version=2025-06-30"


@pytest.fixture
async def app() -> AsyncIterator[Pipeline]:
    store = SqliteStore.open(None)
    yield create_app(Settings(in_memory=True), store=store)
    await store.close()


async def call(app: Pipeline, method: str, path_and_query: str, body: Any = None) -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    headers = sign_headers(method, path_and_query, HOST, content)
    if content:
        headers["content-type"] = "application/json"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}") as client:
        return await client.request(method, path_and_query, content=content, headers=headers)


async def events(app: Pipeline, query: str = "") -> dict[str, Any]:
    response = await call(app, "GET", f"/events?{EVENTS}{query}")
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def test_every_change_through_the_api_is_logged_in_order(app: Pipeline) -> None:
    created = await call(app, "POST", f"/rooms?{ROOMS}", {"participants": {user_id(1): {"role": "Presenter"}}})
    room_id = created.json()["id"]
    await call(app, "PATCH", f"/rooms/{room_id}?{ROOMS}", {"pstnDialOutEnabled": True})
    await call(app, "PATCH", f"/rooms/{room_id}/participants?{ROOMS}",
               {"participants": {user_id(2): {"role": "Attendee"}, user_id(1): None}})
    user = (await call(app, "POST", f"/identities?{IDENTITY}", {})).json()["identity"]["id"]
    await call(app, "POST", f"/identities/{user}/:revokeAccessTokens?{IDENTITY}")
    await call(app, "DELETE", f"/identities/{user}?{IDENTITY}")
    await call(app, "DELETE", f"/rooms/{room_id}?{ROOMS}")
    await call(app, "DELETE", f"/rooms/{room_id}?{ROOMS}")  # a 404: no event
    page = await events(app)
    assert [e["eventType"] for e in page["value"]] == [
        "OpenRooms.RoomCreated", "OpenRooms.RoomUpdated", "OpenRooms.ParticipantsAdded",
        "OpenRooms.ParticipantsRemoved", "OpenRooms.UserCreated", "OpenRooms.TokensRevoked",
        "OpenRooms.UserDeleted", "OpenRooms.RoomDeleted"]
    first = page["value"][0]
    assert first["subject"] == f"rooms/{room_id}" and first["dataVersion"] == "1.0"
    assert first["data"]["participants"] == [{"rawId": user_id(1), "role": "Presenter"}]
    assert page["value"][1]["data"]["changed"] == ["pstnDialOutEnabled"]
    assert len({e["id"] for e in page["value"]}) == 8


async def test_pages_read_on_through_next_link_and_filters_hold(app: Pipeline) -> None:
    ids = [(await call(app, "POST", f"/rooms?{ROOMS}", {})).json()["id"] for _ in range(3)]
    await call(app, "DELETE", f"/rooms/{ids[1]}?{ROOMS}")
    first = await events(app, "&maxpagesize=2")
    assert [e["data"]["roomId"] for e in first["value"]] == ids[:2]
    link = urlsplit(first["nextLink"])
    assert link.path == "/events"
    second = (await call(app, "GET", f"{link.path}?{link.query}")).json()
    assert [e["eventType"] for e in second["value"]] == ["OpenRooms.RoomCreated", "OpenRooms.RoomDeleted"]
    empty = (await call(app, "GET", f"/events?{urlsplit(second['nextLink']).query}")).json()
    assert empty["value"] == [] and empty["nextLink"] == second["nextLink"]  # the stream goes on from there
    only = await events(app, f"&types=OpenRooms.RoomDeleted,OpenRooms.RoomUpdated&roomId={ids[1]}")
    assert [(e["eventType"], e["data"]["roomId"]) for e in only["value"]] == [("OpenRooms.RoomDeleted", ids[1])]
    assert [e["data"]["roomId"] for e in (await events(app, f"&roomId={ids[2]}"))["value"]] == [ids[2]]


async def test_a_long_poll_answers_with_the_first_new_event(app: Pipeline) -> None:
    start = await events(app)
    waiting = asyncio.create_task(call(app, "GET", urlsplit(start["nextLink"]).path + "?"
                                       + urlsplit(start["nextLink"]).query + "&wait=30"))
    await asyncio.sleep(0)
    assert not waiting.done()
    room_id = (await call(app, "POST", f"/rooms?{ROOMS}", {})).json()["id"]
    answer = (await waiting).json()
    assert [e["data"]["roomId"] for e in answer["value"]] == [room_id]


@pytest.mark.parametrize(("query", "target"), [
    ("&after=nonsense", "after"), ("&types=OpenRooms.Nope", "types"), ("&wait=61", "wait"), ("&wait=x", "wait"),
    ("&maxpagesize=0", "maxpagesize"),
])
async def test_bad_parameters_get_a_400_naming_them(app: Pipeline, query: str, target: str) -> None:
    response = await call(app, "GET", f"/events?{EVENTS}{query}")
    assert response.status_code == 400
    assert response.json()["error"]["target"] == target


async def test_events_need_the_extension_api_version_and_an_access_key(app: Pipeline) -> None:
    assert (await call(app, "GET", f"/events?{ROOMS}")).json()["error"]["code"] == "UnsupportedApiVersion"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}") as client:
        assert (await client.get(f"/events?{EVENTS}")).status_code == 401


async def test_every_event_served_parses_as_an_event_grid_event(app: Pipeline) -> None:
    created = (await call(app, "POST", f"/rooms?{ROOMS}", {"participants": {user_id(1): {}}})).json()
    room_id = created["id"]
    await call(app, "DELETE", f"/rooms/{room_id}?{ROOMS}")
    served = (await events(app))["value"]
    parsed = [EventGridEvent.from_dict(event) for event in served]
    assert [(e.id, e.event_type, e.subject, e.data_version) for e in parsed] == [
        (event["id"], event["eventType"], event["subject"], "1.0") for event in served]
    assert parsed[0].data["participants"] == [{"rawId": user_id(1), "role": "Attendee"}]
    assert parsed[0].event_time is not None
    # Instants are written as the Rooms API writes them: an event's window compares equal to the room's.
    assert (served[0]["data"]["validFrom"], served[0]["data"]["validUntil"]) == (created["validFrom"],
                                                                              created["validUntil"])
