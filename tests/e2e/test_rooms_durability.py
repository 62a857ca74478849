"""Rooms outlive the server process, and concurrent roster changes on one room all land."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
from azure.communication.rooms import ParticipantRole

from tests.e2e.rooms_support import Rooms, identifier, make_client, participant, room_count, utc_now
from tests.support import Server, running_server, sign_headers, user_id

ROLES = [ParticipantRole.PRESENTER, ParticipantRole.ATTENDEE, ParticipantRole.CONSUMER, ParticipantRole.COLLABORATOR]


def test_rooms_and_rosters_survive_a_restart(tmp_path: Path) -> None:
    valid_from = (utc_now() + timedelta(hours=1)).replace(microsecond=250)
    with running_server(tmp_path) as server, make_client(server, "sync", None) as client:
        kept = client.create_room(
            valid_from=valid_from,
            valid_until=valid_from + timedelta(days=3),
            pstn_dial_out_enabled=True,
            participants=[participant(n, ROLES[n % 4]) for n in range(5)],
        )
        client.remove_participants(room_id=kept.id, participants=[identifier(0)])
        deleted = client.create_room()
        client.delete_room(deleted.id)
        assert server.stop() == 0  # SIGTERM: a clean shutdown

    with running_server(tmp_path) as server, make_client(server, "sync", None) as client:
        assert vars(client.get_room(kept.id)) == vars(kept)
        roster = {p.communication_identifier.raw_id: p.role for p in client.list_participants(kept.id)}
        assert roster == {user_id(n): ROLES[n % 4].value for n in range(1, 5)}
        assert [room.id for room in client.list_rooms()] == [kept.id]


async def test_concurrent_roster_changes_on_one_room(https_server: Server) -> None:
    async with make_client(https_server, "async", None) as client:  # type: ignore[union-attr]
        rooms = Rooms(client, "2025-03-13", "async", https_server)
        # 0..39 start in the room: 0..19 get removed, 20..39 re-roled; 100..159 get added.
        room = await rooms.create_room(participants=[participant(n) for n in range(40)])
        removals = [rooms.call("remove_participants", room_id=room.id, participants=[identifier(n)]) for n in range(20)]
        rerolls = [
            rooms.call("add_or_update_participants", room_id=room.id, participants=[participant(n, ROLES[n % 4])])
            for n in range(20, 40)
        ]
        additions = [
            rooms.call("add_or_update_participants", room_id=room.id, participants=[participant(n, ROLES[n % 4])])
            for n in range(100, 160)
        ]
        results = await asyncio.gather(*removals, *rerolls, *additions)

        assert results == [None] * 100
        assert await rooms.roster(room.id) == {
            user_id(n): ROLES[n % 4].value for n in [*range(20, 40), *range(100, 160)]
        }


async def test_concurrent_repeats_of_one_create_make_one_room(https_server: Server) -> None:
    headers = {
        "Repeatability-Request-ID": str(uuid.uuid4()),
        "Repeatability-First-Sent": format_datetime(datetime.now(UTC), usegmt=True),
    }
    body = json.dumps({"participants": {user_id(1): {"role": "Consumer"}}}).encode()
    path = "/rooms?api-version=2025-03-13"
    host = f"127.0.0.1:{https_server.port}"
    before = room_count(https_server)
    async with httpx.AsyncClient(verify=https_server.verify, base_url=https_server.endpoint) as client:
        responses = await asyncio.gather(
            *[
                client.post(
                    path,
                    content=body,
                    headers={**headers, **sign_headers("POST", path, host, body), "content-type": "application/json"},
                )
                for _ in range(20)
            ]
        )
    assert [r.status_code for r in responses] == [201] * 20
    assert {r.content for r in responses} == {responses[0].content}
    assert {r.headers["repeatability-result"] for r in responses} == {"accepted"}
    assert room_count(https_server) == before + 1
