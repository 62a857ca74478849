"""The app's own cost per operation: the ASGI app driven directly, without an HTTP server, 16 requests at a time.

    python -m bench.inprocess [get_room list_rooms ...] [--profile]

Prints µs of wall and CPU time per request; with --profile, cProfile's top functions for each operation. This is
what the "in-process" numbers of the optimisation table (docs/performance.md) measure: the cost of openrooms
itself, apart from the HTTP server's. It runs on the event loop `openrooms serve` runs its workers on (uvloop).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.wire import API_VERSION, signed_headers, user_id
from openrooms.config import Settings, event_loop
from openrooms.http.app import create_app
from openrooms.store.sqlite import SqliteStore

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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("operations", nargs="*", help="get_room, list_rooms, list_participants, create_room, "
                                                      "update_room (default: all)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions per operation")
    args = parser.parse_args()
    if event_loop() == "uvloop":
        import uvloop

        uvloop.run(measure(args.operations, args.profile))
    else:
        asyncio.run(measure(args.operations, args.profile))


if __name__ == "__main__":
    main()
