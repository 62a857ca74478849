"""Two `openrooms serve` processes on one PostgreSQL database, as behind a load balancer: concurrent writes
through both lose nothing and duplicate nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from azure.communication.rooms import CommunicationUserIdentifier, ParticipantRole, RoomParticipant
from azure.communication.rooms.aio import RoomsClient
from azure.core.credentials import AzureKeyCredential

from tests.store import postgres_schema
from tests.support import Server, running_server, user_id

API = "?api-version=2025-03-13"
ROOMS = 4
INITIAL = 30  # users 0..29 start in every room; 30..59 are added concurrently
USERS = 60


@pytest.fixture(scope="module")
def instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    with postgres_schema.fresh_schema(postgres_schema.base_url()) as url:
        flags = ("--database-url", url, "--pool-size", "4", "--silent")
        with running_server(tmp_path_factory.mktemp("a"), *flags, tls=False) as a, \
                running_server(tmp_path_factory.mktemp("b"), *flags, tls=False) as b:
            yield a, b


def client(server: Server) -> RoomsClient:
    return RoomsClient(server.endpoint, AzureKeyCredential(server.access_key))


def member(n: int, role: ParticipantRole) -> RoomParticipant:
    return RoomParticipant(communication_identifier=CommunicationUserIdentifier(user_id(n)), role=role)


def expected_roster() -> dict[str, str]:
    """What every room holds after the concurrent changes of `change_roster`."""
    roster = {}
    for n in range(USERS):
        if n >= INITIAL:
            roster[user_id(n)] = "Presenter"
        elif n % 3 == 1:
            roster[user_id(n)] = "Consumer"
        elif n % 3 == 2:
            roster[user_id(n)] = "Attendee"
    return roster


async def change_roster(clients: list[RoomsClient], room_id: str, n: int, gate: asyncio.Semaphore) -> None:
    """One request per user, through the instance `n % 2`: add (n >= 30), re-role (n % 3 == 1) or remove."""
    rooms = clients[n % 2]
    async with gate:
        if n >= INITIAL:
            await rooms.add_or_update_participants(room_id=room_id, participants=[member(n, ParticipantRole.PRESENTER)])
        elif n % 3 == 1:
            await rooms.add_or_update_participants(room_id=room_id, participants=[member(n, ParticipantRole.CONSUMER)])
        elif n % 3 == 0:
            await rooms.remove_participants(room_id=room_id, participants=[CommunicationUserIdentifier(user_id(n))])


async def roster_of(rooms: RoomsClient, room_id: str) -> dict[str, str]:
    return {p.communication_identifier.raw_id: str(p.role) async for p in rooms.list_participants(room_id)}


async def test_concurrent_roster_changes_through_two_instances(instances: tuple[Server, Server]) -> None:
    clients = [client(server) for server in instances]
    try:
        initial = [member(n, ParticipantRole.ATTENDEE) for n in range(INITIAL)]
        room_ids = [(await clients[0].create_room(participants=initial)).id for _ in range(ROOMS)]
        gate = asyncio.Semaphore(16)
        await asyncio.gather(
            *(change_roster(clients, room_id, n, gate) for room_id in room_ids for n in range(USERS))
        )
        for room_id in room_ids:
            for rooms in clients:  # both instances read the same, complete roster
                assert await roster_of(rooms, room_id) == expected_roster()
    finally:
        for rooms in clients:
            await rooms.close()


def create_with(server: Server, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    response = server.request("POST", "/rooms" + API, body, headers)
    return response.status_code, response.text


async def test_duplicate_creates_on_two_instances_make_one_room(instances: tuple[Server, Server]) -> None:
    clients = [client(server) for server in instances]
    try:
        before = {room.id async for room in clients[0].list_rooms()}
        request_ids = [str(uuid.uuid4()) for _ in range(5)]
        sends = []
        for request_id in request_ids:
            headers = {"Repeatability-Request-ID": request_id,
                       "Repeatability-First-Sent": format_datetime(datetime.now(UTC), usegmt=True)}
            body = json.dumps({"participants": {user_id(1): {"role": "Presenter"}}}).encode()
            sends += [asyncio.to_thread(create_with, instances[k % 2], body, headers) for k in range(6)]
        answers = await asyncio.gather(*sends)

        created = set()
        for i, request_id in enumerate(request_ids):
            batch = answers[i * 6:(i + 1) * 6]
            assert {status for status, _ in batch} == {201}, (request_id, batch)
            assert len({text for _, text in batch}) == 1  # every repeat got the first answer, byte for byte
            created.add(json.loads(batch[0][1])["id"])
        assert len(created) == len(request_ids)
        for rooms in clients:
            assert {room.id async for room in rooms.list_rooms()} == before | created
    finally:
        for rooms in clients:
            await rooms.close()


def test_a_room_made_on_one_instance_is_served_by_the_other(instances: tuple[Server, Server]) -> None:
    """A room created through one instance is readable, changeable and deletable through the other."""
    a, b = instances
    created = a.request("POST", "/rooms" + API, b"{}")
    assert created.status_code == 201
    room_id = created.json()["id"]
    assert b.request("GET", f"/rooms/{room_id}{API}").json() == created.json()
    assert b.request("DELETE", f"/rooms/{room_id}{API}").status_code == 204
    assert a.request("GET", f"/rooms/{room_id}{API}").status_code == 404
