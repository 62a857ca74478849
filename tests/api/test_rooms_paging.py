"""Listings across pages: the app with a page size of 7, followed through nextLink by the SDK (sync and async),
on each store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azure.communication.rooms import CommunicationUserIdentifier, ParticipantRole, RoomParticipant

from tests.api.conftest import in_process
from tests.api.inprocess import InProcess
from tests.e2e.rooms_support import Rooms, make_client
from tests.support import user_id

PAGE_SIZE = 7
ROOM_COUNT = 40
PARTICIPANT_COUNT = 30
# The versions whose rooms the SDK can read (see `Rooms`); None is the SDK's default version, which on
# Python 3.11 follows nextLink with `api-version=ApiVersion.V2025_03_13`.
SDK_LISTING_VERSIONS = [None, "2024-04-15", "2025-03-13"]


@pytest.fixture(scope="module")
def paged_server(store_kind: str) -> Iterator[InProcess]:
    with in_process(store_kind, page_size=PAGE_SIZE) as server:
        yield server


@pytest.fixture(scope="module")
def crowded_room(paged_server: InProcess) -> dict[str, Any]:
    """A room with PARTICIPANT_COUNT participants; its `roster` is {raw id: role}."""
    roles = [ParticipantRole.PRESENTER, ParticipantRole.ATTENDEE, ParticipantRole.CONSUMER]
    roster = {user_id(n): roles[n % 3].value for n in range(PARTICIPANT_COUNT)}
    body = {"participants": {raw_id: {"role": role} for raw_id, role in roster.items()}}
    response = paged_server.request("POST", "/rooms?api-version=2025-03-13", json.dumps(body).encode())
    assert response.status_code == 201, response.text
    return {**response.json(), "roster": roster}


@pytest.fixture(scope="module")
def created_rooms(paged_server: InProcess, crowded_room: dict[str, Any]) -> list[dict[str, Any]]:
    """Every room on this server: the crowded room, then ROOM_COUNT - 1 more."""
    rooms = [{k: v for k, v in crowded_room.items() if k != "roster"}]
    for _ in range(ROOM_COUNT - 1):
        response = paged_server.request("POST", "/rooms?api-version=2025-03-13", b"{}")
        assert response.status_code == 201, response.text
        rooms.append(response.json())
    return rooms


@pytest.fixture(
    params=[(f, v) for f in ("sync", "async") for v in SDK_LISTING_VERSIONS],
    ids=lambda kind: f"{kind[0]}-{kind[1] or 'default'}",
)
async def paged_rooms(request: pytest.FixtureRequest, paged_server: InProcess) -> AsyncIterator[Rooms]:
    """A sync or async client of paged_server, at a version whose rooms the SDK can read."""
    flavour, version = request.param
    client = make_client(paged_server, flavour, version)
    try:
        yield Rooms(client, version or "2025-03-13", flavour, paged_server)
    finally:
        if flavour == "async":
            await client.close()
        else:
            client.close()


async def page_sizes(rooms: Rooms, pager: Any) -> list[int]:
    if rooms.flavour == "async":
        return [len([item async for item in page]) async for page in pager.by_page()]
    return [len(list(page)) for page in pager.by_page()]


def expected_page_sizes(count: int) -> list[int]:
    full, rest = divmod(count, PAGE_SIZE)
    return [PAGE_SIZE] * full + ([rest] if rest else [])


def newest_first(rooms: list[dict[str, Any]]) -> list[str]:
    return [room["id"] for room in sorted(rooms, key=lambda r: (r["createdAt"], r["id"]), reverse=True)]


async def test_sdk_lists_each_room_once_newest_first(paged_rooms: Rooms, created_rooms: list[dict[str, Any]]) -> None:
    listed = await paged_rooms.list_rooms()
    ids = [room.id for room in listed]
    assert len(ids) == len(set(ids)) == ROOM_COUNT
    assert ids == newest_first(created_rooms)
    assert {room.id: vars(room) for room in listed} == {
        room["id"]: {
            "id": room["id"],
            "created_at": room["createdAt"],
            "valid_from": room["validFrom"],
            "valid_until": room["validUntil"],
            "pstn_dial_out_enabled": room["pstnDialOutEnabled"],
        }
        for room in created_rooms
    }


async def test_sdk_pages_have_the_server_page_size(paged_rooms: Rooms, created_rooms: list[dict[str, Any]]) -> None:
    assert await page_sizes(paged_rooms, paged_rooms.client.list_rooms()) == expected_page_sizes(ROOM_COUNT)


def test_raw_listing_at_2023_06_14_pages_the_same(paged_server: InProcess, created_rooms: list[dict[str, Any]]) -> None:
    rooms = Rooms(None, "2023-06-14", "sync", paged_server)  # type: ignore[arg-type]  # raw requests only
    listed = rooms.raw_pages("/rooms")
    assert [room["id"] for room in listed] == newest_first(created_rooms)
    assert all("pstnDialOutEnabled" not in room for room in listed)


async def test_sdk_lists_each_participant_once(paged_rooms: Rooms, crowded_room: dict[str, Any]) -> None:
    assert await paged_rooms.roster(crowded_room["id"]) == crowded_room["roster"]
    pager = paged_rooms.client.list_participants(crowded_room["id"])
    assert await page_sizes(paged_rooms, pager) == expected_page_sizes(PARTICIPANT_COUNT)


def test_next_link_with_the_python_3_11_enum_spelling_of_the_version(
    paged_server: InProcess, created_rooms: list[dict[str, Any]]
) -> None:
    first = paged_server.request("GET", "/rooms?api-version=2025-03-13").json()
    next_link = first["nextLink"]
    assert next_link.startswith(paged_server.endpoint + "rooms?")
    quirky = next_link.removeprefix(paged_server.endpoint.rstrip("/")).replace(
        "api-version=2025-03-13", "api-version=ApiVersion.V2025_03_13"
    )
    assert "ApiVersion.V2025_03_13" in quirky
    response = paged_server.request("GET", quirky)
    assert response.status_code == 200, response.text
    second = response.json()["value"]
    assert [room["id"] for room in first["value"] + second] == newest_first(created_rooms)[: 2 * PAGE_SIZE]
    assert all("pstnDialOutEnabled" in room for room in second)


def test_a_newly_created_room_does_not_disturb_a_listing_in_progress(store_kind: str) -> None:
    with in_process(store_kind, page_size=3) as server:
        created = [server.request("POST", "/rooms?api-version=2025-03-13", b"{}").json()["id"] for _ in range(7)]
        with make_client(server, "sync", "2025-03-13") as client:
            pages = client.list_rooms().by_page()
            seen = list(next(pages))
            server.request("POST", "/rooms?api-version=2025-03-13", b"{}")  # newer: belongs before the cursor
            for page in pages:
                seen += list(page)
    assert [room.id for room in seen] == created[::-1]


def test_maxpagesize_overrides_the_page_size_and_travels_in_next_link(
    paged_server: InProcess, created_rooms: list[dict[str, Any]]
) -> None:
    first = paged_server.request("GET", "/rooms?api-version=2025-03-13&maxpagesize=15").json()
    assert len(first["value"]) == 15
    assert "maxpagesize=15" in first["nextLink"]
    second = paged_server.request("GET", first["nextLink"].removeprefix(paged_server.endpoint.rstrip("/"))).json()
    assert [room["id"] for room in first["value"] + second["value"]] == newest_first(created_rooms)[:30]


@pytest.mark.parametrize(
    ("query", "target"),
    [
        ("maxpagesize=0", "maxpagesize"),
        ("maxpagesize=1001", "maxpagesize"),
        ("maxpagesize=seven", "maxpagesize"),
        ("skipToken=not-a-token", "skipToken"),
    ],
)
def test_bad_paging_parameters(paged_server: InProcess, query: str, target: str) -> None:
    response = paged_server.request("GET", f"/rooms?api-version=2025-03-13&{query}")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error.get("target")) == ("BadRequest", target)
    assert response.headers["x-ms-error-code"] == "BadRequest"


def test_the_sdk_lists_a_roster_in_the_order_of_addition_across_pages(store_kind: str) -> None:
    def member(n: int, role: ParticipantRole = ParticipantRole.ATTENDEE) -> RoomParticipant:
        return RoomParticipant(communication_identifier=CommunicationUserIdentifier(user_id(n)), role=role)

    with in_process(store_kind, page_size=3) as server, make_client(server, "sync", "2025-03-13") as client:
        room = client.create_room(participants=[member(9, ParticipantRole.PRESENTER), member(1)])
        client.add_or_update_participants(room_id=room.id, participants=[member(7), member(3), member(5)])
        client.add_or_update_participants(room_id=room.id, participants=[member(9, ParticipantRole.CONSUMER)])
        pages = client.list_participants(room.id).by_page()
        seen = [(p.communication_identifier.raw_id, p.role) for p in next(pages)]
        # Between two pages: the next page's first participant leaves, and someone new joins.
        client.remove_participants(room_id=room.id, participants=[CommunicationUserIdentifier(user_id(3))])
        client.add_or_update_participants(room_id=room.id, participants=[member(2)])
        seen += [(p.communication_identifier.raw_id, p.role) for page in pages for p in page]
    assert seen == [(user_id(9), ParticipantRole.CONSUMER), (user_id(1), ParticipantRole.ATTENDEE),
                    (user_id(7), ParticipantRole.ATTENDEE), (user_id(5), ParticipantRole.ATTENDEE),
                    (user_id(2), ParticipantRole.ATTENDEE)]
