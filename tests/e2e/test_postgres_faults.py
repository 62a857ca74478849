"""PostgreSQL goes away under load and comes back: acknowledged writes survive, failures are 503 envelopes,
and the same server process answers again by itself.

The server connects as a login role of its own, so the faults touch only its connections: its backends are
terminated again and again, then the role may not log in at all (the database is unreachable for it), then its
tables are locked, and finally everything is restored.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.store import postgres_schema
from tests.support import Server, running_server, sign_headers, user_id

API = "?api-version=2025-03-13"
WORKERS = 4
DEADLINE_SECONDS = 120  # the whole scenario; each phase waits for outcomes, not for time


@dataclass
class Outcomes:
    """What the load saw. Writes are recorded only once acknowledged (2xx)."""

    rooms: set[str] = field(default_factory=set)
    participants: dict[str, set[str]] = field(default_factory=dict)
    ok: int = 0
    unavailable: int = 0
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def faulty_server(tmp_path: Path) -> Iterator[tuple[Server, str, Callable[[], object]]]:
    base = postgres_schema.base_url()
    with postgres_schema.fresh_schema(base) as schema_url:
        role = f"openrooms_fault_{uuid.uuid4().hex[:10]}"
        with postgres_schema.admin(schema_url) as db:
            schema = db.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
            db.execute(f'CREATE ROLE "{role}" LOGIN')
            db.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
            db.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        parts = urlsplit(postgres_schema.with_options(schema_url, "lock_timeout=1000"))
        server_url = urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rsplit('@', 1)[-1]}"))
        try:
            with running_server(tmp_path, "--database-url", server_url, "--pool-size", "4", "--silent",
                                tls=False) as server:
                yield server, role, lambda: postgres_schema.admin(schema_url)
        finally:
            with postgres_schema.admin(base) as db:
                db.execute(f'DROP OWNED BY "{role}"')
                db.execute(f'DROP ROLE "{role}"')


def send(server: Server, client: httpx.Client, method: str, path: str, body: dict[str, object] | None = None,
         content_type: str = "application/json") -> httpx.Response:
    raw = b"" if body is None else json.dumps(body).encode()
    headers = {"content-type": content_type, **sign_headers(method, path, f"127.0.0.1:{server.port}", raw)}
    return client.request(method, server.endpoint.rstrip("/") + path, content=raw, headers=headers)


def classify(outcomes: Outcomes, response: httpx.Response, expected: int) -> bool:
    """Count the answer; True if it acknowledged the write. A failure must be a 503 in the ACS envelope."""
    with outcomes.lock:
        if response.status_code == expected:
            outcomes.ok += 1
            return True
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if (response.status_code == 503 and body.get("error", {}).get("code") == "ServiceUnavailable"
                and response.headers.get("x-ms-error-code") == "ServiceUnavailable"
                and response.headers.get("retry-after")):
            outcomes.unavailable += 1
        else:
            outcomes.unexpected.append(f"{response.status_code} {response.text[:300]}")
        return False


def load(server: Server, worker: int, outcomes: Outcomes, stop: threading.Event) -> None:
    """Create rooms and add people to the ones acknowledged, until stopped."""
    mine: list[str] = []
    with httpx.Client(timeout=30) as client:  # a hang would show up as a timeout: unexpected
        n = 0
        while not stop.is_set():
            n += 1
            person = user_id(worker * 1_000_000 + n)
            try:
                if mine and n % 2 == 0:
                    room_id = mine[n % len(mine)]
                    response = send(server, client, "PATCH", f"/rooms/{room_id}/participants{API}",
                                    {"participants": {person: {"role": "Attendee"}}}, "application/merge-patch+json")
                    if classify(outcomes, response, 200):
                        with outcomes.lock:
                            outcomes.participants.setdefault(room_id, set()).add(person)
                else:
                    response = send(server, client, "POST", f"/rooms{API}", {"participants": {person: {}}})
                    if classify(outcomes, response, 201):
                        room_id = response.json()["id"]
                        mine.append(room_id)
                        with outcomes.lock:
                            outcomes.rooms.add(room_id)
                            outcomes.participants.setdefault(room_id, set()).add(person)
            except httpx.HTTPError as exc:
                with outcomes.lock:
                    outcomes.unexpected.append(f"{type(exc).__name__}: {exc}")


async def until(condition: Callable[[], bool], what: str, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


async def test_acknowledged_writes_survive_database_outages(
    faulty_server: tuple[Server, str, Callable[[], object]],
) -> None:
    server, role, admin = faulty_server
    outcomes, stop = Outcomes(), threading.Event()
    deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
    workers = [asyncio.to_thread(load, server, w, outcomes, stop) for w in range(WORKERS)]
    running = asyncio.gather(*workers)
    terminate = f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
    try:
        with admin() as db:  # type: ignore[attr-defined]
            # 1. Connections killed under load, again and again.
            for round_ in range(1, 11):
                await until(lambda r=round_: outcomes.ok >= 10 * r, f"10 more acknowledged writes (round {round_})",
                            deadline)
                db.execute(terminate)
            # 2. The database refuses the server altogether, until the outage has been noticed.
            db.execute(f'ALTER ROLE "{role}" NOLOGIN')
            db.execute(terminate)
            seen = outcomes.unavailable
            await until(lambda: outcomes.unavailable >= seen + 3, "503 answers during the outage", deadline)
            db.execute(f'ALTER ROLE "{role}" LOGIN')
            # 3. Its tables locked by someone else, longer than its lock_timeout.
            ok = outcomes.ok
            await until(lambda: outcomes.ok > ok, "writes after the outage", deadline)
            with db.transaction():
                db.execute("LOCK TABLE rooms, participants IN ACCESS EXCLUSIVE MODE")
                seen = outcomes.unavailable
                await until(lambda: outcomes.unavailable >= seen + 2, "503 answers behind the lock", deadline)
            ok = outcomes.ok
            await until(lambda: outcomes.ok >= ok + 10, "writes after the lock", deadline)
    finally:
        stop.set()
        await running

    assert outcomes.unexpected == []
    assert server.process.poll() is None  # the same process, never restarted
    # Every acknowledged write is there.
    with httpx.Client(timeout=30) as client:
        for room_id in outcomes.rooms:
            assert send(server, client, "GET", f"/rooms/{room_id}{API}").status_code == 200
            listed = send(server, client, "GET", f"/rooms/{room_id}/participants{API}&maxpagesize=1000").json()
            assert {p["rawId"] for p in listed["value"]} >= outcomes.participants[room_id]
    assert len(outcomes.rooms) > 0 and outcomes.unavailable >= 5
