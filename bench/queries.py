"""The room queries at size (docs/rooms.md, "Extensions: room queries"): the first page of each query shape against
the first page of the whole list in the same order, on one database preloaded with mixed windows
(`preload.mixed_window`), in SQLite and copied into PostgreSQL. Timed through the stores themselves, so that the
ratio is the queries' own, with no HTTP in front to dilute it; with each store's query plans (EXPLAIN).

    python -m bench.queries --rooms 100000 --participants 1000000 [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import preload
from bench.wire import user_id
from openrooms.service.paging import DEFAULT_PAGE_SIZE
from openrooms.service.ports import RoomQuery, RoomStore
from openrooms.store.postgres import PostgresStore
from openrooms.store.room_queries import room_query
from openrooms.store.sqlite import SqliteStore

TARGET_RATIO = 1.3
BASELINE = "unfiltered"
_COLUMNS = "id, created_at, valid_from, valid_until, pstn_dial_out_enabled"


def _states(*states: str) -> Callable[[int, str], RoomQuery]:
    return lambda now, _: RoomQuery(now, frozenset(states))


# Each shape: the query of a first page, at `now`, for a participant (the shapes by participant rotate over many).
SHAPES: dict[str, Callable[[int, str], RoomQuery]] = {
    BASELINE: lambda now, _: RoomQuery(now),
    "participant": lambda now, user: RoomQuery(now, participant=user),
    "state=upcoming": _states("upcoming"),
    "state=open": _states("open"),
    "state=ended": _states("ended"),
    "state=open,upcoming": _states("open", "upcoming"),
    "participant&state=open,upcoming": lambda now, user: RoomQuery(now, frozenset({"open", "upcoming"}), user),
}


async def _time_shapes(store: RoomStore, users: list[str], calls: int) -> dict[str, Any]:
    """Each shape's first page `calls` times, the shapes in turn (so that a slow moment of the machine falls on all
    of them), after one unmeasured round."""
    times: dict[str, list[float]] = {name: [] for name in SHAPES}
    rows: dict[str, list[int]] = {name: [] for name in SHAPES}
    now = time.time_ns() // 100
    for n in range(calls + 1):
        for k, (name, shape) in enumerate(SHAPES.items()):
            query = shape(now, users[(n * len(SHAPES) + k) % len(users)])  # no shape finds a user another read
            started = time.perf_counter()
            page = await store.query_rooms(query, None, DEFAULT_PAGE_SIZE + 1)
            if n:
                times[name].append(time.perf_counter() - started)
                rows[name].append(len(page))
    base = statistics.median(times[BASELINE])
    return {name: {"p50_ms": round(statistics.median(t) * 1000, 3), "mean_ms": round(statistics.fmean(t) * 1000, 3),
                   "rooms_per_page": round(statistics.fmean(rows[name]), 1),
                   "ratio": round(statistics.median(t) / base, 3)} for name, t in times.items()}


def _plans(explain: Callable[[str, dict[str, Any]], list[str]], placeholder: Callable[[str, str], str],
           user: str) -> dict[str, list[str]]:
    now = time.time_ns() // 100
    return {name: explain(*room_query(_COLUMNS, shape(now, user), None, DEFAULT_PAGE_SIZE + 1, placeholder))
            for name, shape in SHAPES.items()}


def sqlite_plans(path: Path, user: str) -> dict[str, list[str]]:
    db = sqlite3.connect(path)
    try:
        return _plans(lambda sql, params: [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)],
                      lambda name, _: f":{name}", user)
    finally:
        db.close()


def postgres_plans(url: str, user: str) -> dict[str, list[str]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        return _plans(lambda sql, params: [row[0] for row in db.execute(
            f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) {sql}", params).fetchall()],
            lambda name, kind: f"%({name})s::{kind}", user)


def measure(work: Path, rooms: int, participants: int, postgres_url: str | None, *, calls: int = 200,
            quiet: bool = True) -> dict[str, Any]:
    """Preload `rooms` rooms and `participants` roster entries (mixed windows) into SQLite at `work`, copy them
    into the migrated, empty PostgreSQL database `postgres_url` (if any), and time every shape on each."""
    location = work / "room-queries"
    out: dict[str, Any] = {"rooms": rooms, "participants": participants, "page_size": DEFAULT_PAGE_SIZE,
                           "calls": calls, "target_ratio": TARGET_RATIO, "stores": {}}
    started = time.monotonic()
    preload.preload(location, rooms, participants, quiet=quiet, mixed_windows=True)
    out["preload_seconds"] = round(time.monotonic() - started, 1)
    path = location / "openrooms.db"
    counts = sqlite3.connect(path)
    now = time.time_ns() // 100
    out["states"] = dict(zip(("upcoming", "open", "ended"), counts.execute(
        "SELECT sum(valid_from > ?1), sum(valid_from <= ?1 AND valid_until > ?1), sum(valid_until <= ?1) FROM rooms",
        (now,)).fetchone(), strict=True))
    counts.close()
    users = [user_id(k) for k in random.Random(7).sample(range(preload.USERS), min(preload.USERS, 10_000))]
    stores: dict[str, Callable[[], RoomStore]] = {"sqlite": lambda: SqliteStore.open(path, migrate_schema=False)}
    plans: dict[str, Callable[[], dict[str, list[str]]]] = {"sqlite": lambda: sqlite_plans(path, users[0])}
    if postgres_url:
        started = time.monotonic()
        preload.copy_to_postgres(location, postgres_url, quiet=quiet)
        out["postgres_copy_seconds"] = round(time.monotonic() - started, 1)
        stores["postgresql"] = lambda: PostgresStore.open(postgres_url, pool_size=1)
        plans["postgresql"] = lambda: postgres_plans(postgres_url, users[0])

    async def timed(open_store: Callable[[], RoomStore]) -> dict[str, Any]:
        store = open_store()
        try:
            return await _time_shapes(store, users, calls)
        finally:
            await store.close()

    for name, open_store in stores.items():
        out["stores"][name] = {"shapes": asyncio.run(timed(open_store)), "plans": plans[name]()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=100_000)
    parser.add_argument("--participants", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--postgres-url", default=None, help="a migrated, empty PostgreSQL database")
    parser.add_argument("--work", type=Path, default=Path("bench/results/work-queries"))
    args = parser.parse_args()
    result = measure(args.work, args.rooms, args.participants, args.postgres_url, calls=args.calls, quiet=False)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
