"""The event log across real processes: `openrooms events tail` follows a server with two workers, and sees a
change made through either of them as soon as it is committed (the long-poll of GET /events)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.cli.conftest import clean_env
from tests.support import Server, running_server

ROOMS = "?api-version=2025-03-13"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("events"), "--workers", "2", "--silent", tls=False) as server:
        yield server


def tail(server: Server, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "openrooms", "events", "tail", "--connection-string", server.connection_string, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(None))


def test_tail_follows_new_events_as_they_commit(server: Server) -> None:
    with tail(server, "--format", "json", "--type", "OpenRooms.RoomDeleted") as follower:
        try:
            ids = []
            for _ in range(4):  # the two workers take turns with connections: both get some of these
                response = server.request("POST", "/rooms" + ROOMS, b"{}")
                assert response.status_code == 201
                ids.append(response.json()["id"])
            assert follower.stdout is not None
            assert server.request("DELETE", f"/rooms/{ids[0]}{ROOMS}").status_code == 204
            seen = [json.loads(follower.stdout.readline())]  # caught up: from here on it waits for new events
            for room_id in ids[1:]:
                assert server.request("DELETE", f"/rooms/{room_id}{ROOMS}").status_code == 204
            seen += [json.loads(follower.stdout.readline()) for _ in ids[1:]]
            assert [event["data"]["roomId"] for event in seen] == ids
            assert {event["eventType"] for event in seen} == {"OpenRooms.RoomDeleted"}
        finally:
            follower.kill()
            follower.wait()


def test_tail_without_follow_prints_one_line_per_event_and_stops(server: Server) -> None:
    room_id = server.request("POST", "/rooms" + ROOMS, b"{}").json()["id"]
    with tail(server, "--no-follow", "--room-id", room_id) as done:
        out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    [line] = out.splitlines()
    assert line.split(" ")[1:3] == ["OpenRooms.RoomCreated", f"rooms/{room_id}"]
