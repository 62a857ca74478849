"""The app's own cost per operation: the ASGI app driven directly, without an HTTP server, 16 requests at a time.

    python -m bench.inprocess [get_room list_rooms ...] [--profile]
    python -m bench.inprocess --event-log-ab


Prints µs of wall and CPU time per request; with --profile, cProfile's top functions for each operation. This is
what the "in-process" numbers of the optimisation table (docs/performance.md) measure: the cost of openrooms
itself, apart from the HTTP server's. It runs on the event loop `openrooms serve` runs its workers on (uvloop).

With --event-log-ab it measures instead what the event log and the window events cost (`event_log_ab`, part of
`make bench`), and how soon after its instant the scheduler writes a window event (`window_latency`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import pstats
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.wire import API_VERSION, signed_headers, user_id
from openrooms.config import Settings, event_loop
from openrooms.events import types as t
from openrooms.events.types import NewEvent
from openrooms.http.app import create_app
from openrooms.service import timestamps
from openrooms.service.clock import TICKS_PER_SECOND, SystemClock
from openrooms.service.window_events import WindowScheduler
from openrooms.store.sqlite import SqliteStore

T = TypeVar("T")
Q = f"?api-version={API_VERSION}"
HOST = "127.0.0.1:8765"
CONCURRENCY = 16
Request = tuple[dict[str, Any], bytes]
READS = {"get_room", "list_rooms", "list_participants"}


def request(method: str, path_and_query: str, body: bytes = b"") -> Request:
    path, _, query = path_and_query.partition("?")
    headers = {"host": HOST, "accept": "application/json", "user-agent": "openrooms-bench",
               **{k.lower(): v for k, v in signed_headers(method, path_and_query, HOST, body).items()}}
    if body:
        headers |= {"content-type": "application/json", "content-length": str(len(body))}
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()], "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8765)}
    return scope, body


async def call(app: Any, req: Request) -> list[dict[str, Any]]:
    scope, body = req
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(dict(scope), receive, send)
    return sent


async def created_id(app: Any, body: bytes) -> str:
    sent = await call(app, request("POST", "/rooms" + Q, body))
    return str(json.loads(sent[1]["body"])["id"])


async def measure(only: list[str], profile: bool) -> None:
    settings = Settings(location=Path(tempfile.mkdtemp(prefix="openrooms-inprocess-")), silent=True, tls=False)
    SqliteStore.upgrade(settings.database_file)
    app = create_app(settings)
    ids = [await created_id(app, json.dumps({"participants": {user_id(2 * n): {"role": "Presenter"},
                                                               user_id(2 * n + 1): {}}}).encode())
           for n in range(1000)]
    big = await created_id(app, json.dumps({"participants": {user_id(5_000_000 + n): {"role": "Attendee"}
                                                             for n in range(1000)}}).encode())
    operations: dict[str, list[Request]] = {
        "get_room": [request("GET", f"/rooms/{ids[n % 1000]}{Q}") for n in range(2000)],
        "list_rooms": [request("GET", "/rooms" + Q) for _ in range(300)],
        "list_participants": [request("GET", f"/rooms/{big}/participants{Q}") for _ in range(300)],
        "create_room": [request("POST", "/rooms" + Q, b"{}") for _ in range(2000)],
        "update_room": [request("PATCH", f"/rooms/{ids[n % 1000]}{Q}",
                                json.dumps({"pstnDialOutEnabled": n % 2 == 0}).encode()) for n in range(1000)],
    }
    for name, requests in operations.items():
        if only and name not in only:
            continue

        async def run(batch: list[Request]) -> None:
            for start in range(0, len(batch), CONCURRENCY):
                await asyncio.gather(*(call(app, r) for r in batch[start:start + CONCURRENCY]))

        # Warm up: reads once over every request, so that each room is read and kept before the measured pass (a
        # room the app creates is kept once it is first read); writes for a few requests.
        await run(requests if name in READS else requests[:50])
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        wall, cpu = time.perf_counter(), time.process_time()
        await run(requests)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        status = (await call(app, requests[0]))[0]["status"]
        print(f"{name:20} {1e6 * wall / len(requests):7.1f} µs wall  {1e6 * cpu / len(requests):7.1f} µs CPU  "
              f"(status {status})")


class StoreWithoutEventLog(SqliteStore):
    """The store as it would be without the event log: every change's events dropped instead of appended."""

    def _log(self, events: Sequence[NewEvent]) -> None:
        pass


AB_ROUNDS = 12
AB_CREATES = 500
AB_GETS = 2000


async def event_log_ab(rounds: int = AB_ROUNDS, creates: int = AB_CREATES, gets: int = AB_GETS) -> dict[str, Any]:
    """Create (an open room; a room opening in an hour, which the window events index) and get, through an app on
    the store as it is and one on a store without the event log (no event appended, no index of the rooms that
    open ahead), in alternating rounds in this process: throughput with / without, the median of the rounds' ratios.
    """
    apps = {}
    for variant, store_class in (("with", SqliteStore), ("without", StoreWithoutEventLog)):
        settings = Settings(location=Path(tempfile.mkdtemp(prefix=f"openrooms-ab-{variant}-")), silent=True,
                            tls=False)
        SqliteStore.upgrade(settings.database_file)
        if variant == "without":
            with contextlib.closing(sqlite3.connect(settings.database_file)) as db:
                db.execute("DROP INDEX rooms_by_valid_from_ahead")
        store = store_class.open(settings.database_file)
        apps[variant] = (create_app(settings, store=store), store)
    ahead = json.dumps({"validFrom": "2100-01-01T00:00:00Z", "validUntil": "2100-01-02T00:00:00Z"}).encode()
    seeded = min(1000, gets)
    ids = {variant: [await created_id(app, b"{}") for _ in range(seeded)] for variant, (app, _) in apps.items()}
    workloads: dict[str, Any] = {
        "create_room": lambda variant: [request("POST", "/rooms" + Q, b"{}") for _ in range(creates)],
        "create_room_opening_ahead": lambda variant: [request("POST", "/rooms" + Q, ahead) for _ in range(creates)],
        "get_room": lambda variant: [request("GET", f"/rooms/{ids[variant][n % seeded]}{Q}") for n in range(gets)],
    }
    result: dict[str, Any] = {}
    for name, make in workloads.items():
        wall: dict[str, list[float]] = {"with": [], "without": []}
        cpu: dict[str, list[float]] = {"with": [], "without": []}
        for round_ in range(rounds + 1):  # the first round warms up; each round alternates which goes first
            order = ("with", "without") if round_ % 2 else ("without", "with")
            for variant in order:
                app, batch = apps[variant][0], make(variant)
                started, started_cpu = time.perf_counter(), time.process_time()
                for start in range(0, len(batch), CONCURRENCY):
                    await asyncio.gather(*(call(app, r) for r in batch[start:start + CONCURRENCY]))
                if round_:
                    wall[variant].append(time.perf_counter() - started)
                    cpu[variant].append(time.process_time() - started_cpu)
        count = len(make("with"))
        result[name] = {
            "with_event_log_per_second": round(count / statistics.median(wall["with"]), 1),
            "without_event_log_per_second": round(count / statistics.median(wall["without"]), 1),
            # Each round's two runs are back to back: the median of their ratios is what a busy machine blurs
            # least. The CPU time's ratio is the throughput's where the app is CPU-bound, and what other
            # processes on the machine disturb least; the wall time's includes waiting for the disk and the CPU.
            "ratio": _median_ratio(cpu), "wall_ratio": _median_ratio(wall),
        }
    logged = await apps["with"][1].list_events(None, [t.ROOM_CREATED], None, 1)
    assert logged and not await apps["without"][1].list_events(None, None, None, 1)  # the variants are what they say
    for _, store in apps.values():
        await store.close()
    return result


async def window_latency(rooms: int = 20) -> dict[str, Any]:
    """Rooms whose windows open 0.5 to 1.5 s from now and close 0.5 s later, with the scheduler running: how long
    after each instant its event was written (the scheduler's aim: less than a second)."""
    settings = Settings(location=Path(tempfile.mkdtemp(prefix="openrooms-windows-")), silent=True, tls=False)
    store = SqliteStore.open(settings.database_file)
    clock = SystemClock()
    scheduler = WindowScheduler(store, clock)
    await scheduler.claim()
    running = asyncio.create_task(scheduler.run())
    app = create_app(settings, store=store)
    try:
        now = clock.now()
        for n in range(rooms):
            opens = now + TICKS_PER_SECOND // 2 + n * TICKS_PER_SECOND // rooms
            body = {"validFrom": timestamps.format(opens),
                    "validUntil": timestamps.format(opens + TICKS_PER_SECOND // 2)}
            await created_id(app, json.dumps(body).encode())
        types = [t.ROOM_WINDOW_OPENED, t.ROOM_WINDOW_CLOSED]
        while len(found := await store.list_events(None, types, None, 1000)) < 2 * rooms:
            await asyncio.sleep(0.1)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await store.close()
    late = sorted(e.time - _ticks(json.loads(e.data)["dueDateTime"]) for e in found)
    return {"events": len(found), "median_ms": round(late[len(late) // 2] / 10_000, 1),
            "max_ms": round(late[-1] / 10_000, 1)}


def _median_ratio(seconds: dict[str, list[float]]) -> float:
    """with / without throughput: the median over the rounds of without's time over with's."""
    return round(statistics.median(b / a for a, b in zip(seconds["with"], seconds["without"], strict=True)), 3)


def _ticks(instant: str) -> int:
    ticks = timestamps.parse(instant)
    assert ticks is not None
    return ticks


async def event_log_report(rounds: int = AB_ROUNDS, creates: int = AB_CREATES, gets: int = AB_GETS,
                           window_rooms: int = 20) -> dict[str, Any]:
    return {"in_process_ab": await event_log_ab(rounds, creates, gets),
            "window_events": await window_latency(window_rooms)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("operations", nargs="*", help="get_room, list_rooms, list_participants, create_room, "
                                                      "update_room (default: all)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions per operation")
    parser.add_argument("--event-log-ab", action="store_true",
                        help="what the event log and the window events cost, and the window events' lateness")
    args = parser.parse_args()
    if args.event_log_ab:
        print(json.dumps(event_log_section(), indent=2))
    else:
        on_serving_loop(measure(args.operations, args.profile))


def event_log_section() -> dict[str, Any]:
    """The `event_log` section of `make bench`'s report."""
    return on_serving_loop(event_log_report())


def on_serving_loop(work: Coroutine[Any, Any, T]) -> T:
    if event_loop() == "uvloop":
        import uvloop

        return uvloop.run(work)
    return asyncio.run(work)


if __name__ == "__main__":
    main()
