"""Read-your-writes through a real server with two workers: whichever worker answers, a read shows every write
that was acknowledged before it was sent, while other clients write at the same time. Each worker keeps what it
reads and what it writes (the SQLite store's kept reads), and this is what must never show a stale room."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.reliability.test_durability import V, signed
from tests.support import Server, running_server

CLIENTS = 8
ROUNDS = 40


def _order(room: dict[str, Any]) -> tuple[str, str]:
    # createdAt has a fixed width (7 fractional digits), so it sorts as text; the list is newest first, by id next
    return room["createdAt"], room["id"]


def _rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _client(server: Server, seed: int) -> int:
    """One client's rounds of create, read, update, read, list (and now and then delete); the list checks made."""
    rng = random.Random(seed)
    mine: dict[str, dict[str, Any]] = {}  # my rooms as last acknowledged
    deleted: set[str] = set()
    checked = 0
    async with httpx.AsyncClient(base_url=server.endpoint, timeout=30) as client:

        async def call(method: str, path: str, body: object = None, expect: int = 200) -> Any:
            content = b"" if body is None else json.dumps(body).encode()
            response = await signed(client, server, method, path, content)
            assert response.status_code == expect, (method, path, response.text)
            return response.json() if response.content else None

        async def check_first_page() -> int:
            """The first page of the list: newest first, each room once, my rooms on it as last acknowledged,
            none of my deleted ones, and every one of mine that ranks within the page on it."""
            page = await call("GET", f"/rooms?{V}&maxpagesize={rng.choice([10, 50, 100])}")
            listed = {item["id"]: item for item in page["value"]}
            orders = [_order(item) for item in page["value"]]
            assert orders == sorted(orders, reverse=True)
            assert len(listed) == len(orders)
            assert not deleted & listed.keys()
            full = "nextLink" in page
            for room_id, latest in mine.items():
                if room_id in listed:
                    assert listed[room_id] == latest
                elif not full or _order(latest) > orders[-1]:
                    raise AssertionError(f"room {room_id} ranks within the first page but is not on it")
            return len(mine)

        for n in range(ROUNDS):
            room = await call("POST", f"/rooms?{V}", {}, expect=201)
            mine[room["id"]] = room
            assert await call("GET", f"/rooms/{room['id']}?{V}") == room

            start = datetime.now(UTC) + timedelta(hours=1)
            until = start + timedelta(days=rng.randrange(1, 90))
            change = {"validFrom": _rfc3339(start), "validUntil": _rfc3339(until),
                      "pstnDialOutEnabled": rng.random() < 0.5}
            target = rng.choice(list(mine))
            updated = await call("PATCH", f"/rooms/{target}?{V}", change)
            mine[target] = updated
            assert await call("GET", f"/rooms/{target}?{V}") == updated
            checked += await check_first_page()

            if n % 3 == 2:
                gone = rng.choice(list(mine))
                await call("DELETE", f"/rooms/{gone}?{V}", expect=204)
                del mine[gone]
                deleted.add(gone)
                await call("GET", f"/rooms/{gone}?{V}", expect=404)

            checked += await check_first_page()
    return checked


def test_every_worker_shows_every_acknowledged_write(tmp_path: Path) -> None:
    async def clients(server: Server) -> list[int]:
        return await asyncio.gather(*(_client(server, seed) for seed in range(CLIENTS)))

    with running_server(tmp_path, "--workers", "2", tls=False) as server:
        checked = asyncio.run(clients(server))
    assert sum(checked) > CLIENTS * ROUNDS  # the lists were checked against many rooms, not none
