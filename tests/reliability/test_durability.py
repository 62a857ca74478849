"""Durability: kill -9 under load loses no acknowledged write and half-applies nothing; a full or read-only
disk gives clear 503s, corrupts nothing, and the server recovers when space returns."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Server, free_port, running_server, sign_headers, user_id

V = "api-version=2025-03-13"
CREATE_ROSTER = 5  # participants per created room
PATCH_ROSTER = 3  # participants added per roster update
ACKNOWLEDGED_BEFORE_KILL = 300


def kill_hard(server: Server) -> None:
    """SIGKILL the serve process and its worker processes: nothing gets to clean up."""
    subprocess.run(["pkill", "-KILL", "-P", str(server.process.pid)], check=False)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()


async def signed(client: httpx.AsyncClient, server: Server, method: str, path: str, body: bytes) -> httpx.Response:
    headers = {**sign_headers(method, path, f"127.0.0.1:{server.port}", body), "content-type": "application/json"}
    return await client.request(method, path, content=body, headers=headers)


def all_rooms(server: Server) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    path: str | None = f"/rooms?{V}&maxpagesize=1000"
    while path:
        page = server.request("GET", path).json()
        for room in page["value"]:
            roster = server.request("GET", f"/rooms/{room['id']}/participants?{V}&maxpagesize=1000").json()
            assert "nextLink" not in roster
            rooms[room["id"]] = {p["rawId"] for p in roster["value"]}
        path = page.get("nextLink", "").replace(server.endpoint.rstrip("/"), "") or None
    return rooms


def test_kill_9_under_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    numbers = itertools.count()
    created: dict[str, set[str]] = {}  # acknowledged creates: room id -> roster sent
    added: dict[str, set[str]] = {}  # acknowledged roster updates: room id -> participants added
    batches: list[frozenset[str]] = []  # every batch of participants ever sent, acknowledged or not

    def batch(size: int) -> dict[str, dict[str, str]]:
        people = frozenset(user_id(next(numbers)) for _ in range(size))
        batches.append(people)
        return {raw_id: {"role": "Presenter"} for raw_id in people}

    async def load(server: Server, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=server.endpoint, timeout=10) as client:
            while not stop.is_set():
                participants = batch(CREATE_ROSTER)
                body = json.dumps({"participants": participants}).encode()
                try:
                    response = await signed(client, server, "POST", f"/rooms?{V}", body)
                except httpx.HTTPError:
                    return  # the server is gone
                if response.status_code == 201:
                    room_id = response.json()["id"]
                    created[room_id] = set(participants)
                    if sum(map(len, (created, added))) >= ACKNOWLEDGED_BEFORE_KILL:
                        stop.set()
                    update = batch(PATCH_ROSTER)
                    body = json.dumps({"participants": update}).encode()
                    try:
                        response = await signed(client, server, "PATCH", f"/rooms/{room_id}/participants?{V}", body)
                    except httpx.HTTPError:
                        return
                    if response.status_code == 200:
                        added.setdefault(room_id, set()).update(update)

    async def load_then_kill(server: Server) -> None:
        stop = asyncio.Event()
        workers = [asyncio.create_task(load(server, stop)) for _ in range(16)]
        await stop.wait()
        kill_hard(server)  # while the other clients' requests are in flight
        await asyncio.gather(*workers)

    with running_server(tmp_path, "--workers", "2", tls=False) as server:
        asyncio.run(load_then_kill(server))
    assert len(created) >= ACKNOWLEDGED_BEFORE_KILL // 2

    with running_server(tmp_path, tls=False) as server:
        stored = all_rooms(server)
    for room_id, roster in created.items():  # every acknowledged write is there
        assert room_id in stored, f"acknowledged room {room_id} is lost"
        assert roster | added.get(room_id, set()) <= stored[room_id]
    everyone = set().union(*stored.values())
    for people in batches:  # and every request, acknowledged or not, applied whole or not at all
        assert people <= everyone or not people & everyone, "a request was half-applied"
    for roster in stored.values():
        assert len(roster) in {CREATE_ROSTER, CREATE_ROSTER + PATCH_ROSTER}


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of its own, to fill up or make read-only (needs root, as on CI machines)."""
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def create_room(server: Server, n: int) -> httpx.Response:
    body = json.dumps({"participants": {user_id(n): {"role": "Consumer"}}}).encode()
    return server.request("POST", f"/rooms?{V}", body)


def fill(path: Path) -> Path:
    filler = path / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


def assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "ServiceUnavailable"
    assert response.headers["retry-after"] == "1"


def test_a_full_disk_gives_503_and_the_server_recovers_when_space_returns(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk") as disk, running_server(disk, tls=False) as server:
        before = create_room(server, 1)
        assert before.status_code == 201
        filler = fill(disk)
        failures = [create_room(server, n) for n in range(100, 140)]  # enough to need pages the disk lacks
        full = [r for r in failures if r.status_code != 201]
        assert full, "the disk never filled up"
        for response in full:
            assert_503(response)
        assert server.request("GET", f"/rooms/{before.json()['id']}?{V}").status_code == 200  # reads still work

        filler.unlink()
        after = create_room(server, 2)
        assert after.status_code == 201, after.text
        listed = {room["id"] for room in server.request("GET", f"/rooms?{V}&maxpagesize=1000").json()["value"]}
        acknowledged = {r.json()["id"] for r in [before, after, *failures] if r.status_code == 201}
        assert acknowledged == listed  # every 201 is kept, every 503 created nothing
        server.stop()
        assert sqlite3.connect(disk / "openrooms.db").execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_read_only_location_is_refused_clearly_at_start_and_nothing_is_lost(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk") as disk:
        with running_server(disk, tls=False) as server:
            kept = create_room(server, 1).json()["id"]
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        try:
            refused = subprocess.run([sys.executable, "-m", "openrooms", "serve", "--location", str(disk),
                                      "--port", str(free_port()), "--no-tls"], capture_output=True, text=True,
                                     timeout=30)
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        assert refused.returncode == 2
        assert "cannot open the database" in refused.stderr and "Traceback" not in refused.stderr
        with running_server(disk, tls=False) as server:
            assert server.request("GET", f"/rooms/{kept}?{V}").status_code == 200


def test_a_database_locked_by_another_process_gives_503_then_recovers(tmp_path: Path) -> None:
    with running_server(tmp_path, tls=False) as server:
        assert create_room(server, 1).status_code == 201
        holder = sqlite3.connect(tmp_path / "openrooms.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # holds the write lock past the server's 5 s busy timeout
        try:
            body = json.dumps({"participants": {user_id(2): {}}}).encode()
            path = f"/rooms?{V}"
            headers = {**sign_headers("POST", path, f"127.0.0.1:{server.port}", body),
                       "content-type": "application/json"}
            assert_503(httpx.post(server.endpoint.rstrip("/") + path, content=body, headers=headers, timeout=60))
            assert len(server.request("GET", path).json()["value"]) == 1  # reads still served
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert create_room(server, 3).status_code == 201
        assert len(server.request("GET", f"/rooms?{V}").json()["value"]) == 2
