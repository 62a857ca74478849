"""The rate of `openrooms migrate from-acs`: rooms and participants copied a second from an openrooms server
standing in for the ACS resource (filled as bench/preload.py fills a database) into a fresh SQLite store; then
a second run with nothing to change (every roster read again, nothing written) and `migrate verify`.

    python -m bench.migrate --rooms 10000 --participants 50000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import measure
from bench.preload import preload
from openrooms.config import DEV_ACCESS_KEY, Settings
from openrooms.migrate.copy import CopyOptions, copy
from openrooms.migrate.source import AcsSource, parse_connection_string
from openrooms.migrate.target import open_target
from openrooms.migrate.verify import verify

DEFAULT_ROOMS = 10_000
DEFAULT_PARTICIPANTS = 50_000


def _rates(rooms: int, participants: int, seconds: float, requests: int) -> dict[str, Any]:
    return {"seconds": round(seconds, 2), "rooms_per_second": round(rooms / seconds, 1),
            "participants_per_second": round(participants / seconds, 1),
            "source_requests_per_second": round(requests / seconds, 1)}


async def _runs(connection_string: str, target: Path, rooms: int, participants: int,
                concurrency: int) -> dict[str, Any]:
    settings = Settings().replace(location=target, database_url=None, in_memory=False)
    results: dict[str, Any] = {}
    for label in ("copy", "unchanged_rerun"):
        store = open_target(settings)
        try:
            async with AcsSource(parse_connection_string(connection_string)) as source:
                started = time.monotonic()
                report = await copy(source, store, CopyOptions(concurrency=concurrency))
                results[label] = _rates(rooms, participants, time.monotonic() - started, source.requests)
                results[label]["created"] = report.to_json()["rooms"]["created"]
        finally:
            await store.close()
    store = open_target(settings)
    try:
        async with AcsSource(parse_connection_string(connection_string)) as source:
            started = time.monotonic()
            _, differences = await verify(source, store, concurrency=concurrency)
            results["verify"] = _rates(rooms, participants, time.monotonic() - started, source.requests)
            results["verify"]["differences"] = len(differences)
    finally:
        await store.close()
    return results


def measure_migration(work: Path, rooms: int = DEFAULT_ROOMS, participants: int = DEFAULT_PARTICIPANTS,
                      concurrency: int = 16) -> dict[str, Any]:
    """Copy `rooms` rooms with `participants` roster entries; their rates (one source server worker)."""
    source_location = work / "migrate-source"
    preload(source_location, rooms, participants, quiet=True)
    port = measure.free_port()
    command = measure.openrooms_command(port, source_location, workers=1)
    with measure.serve(command, port, work / "migrate-source.log"):
        connection_string = f"endpoint=http://127.0.0.1:{port}/;accesskey={DEV_ACCESS_KEY}"
        runs = asyncio.run(_runs(connection_string, work / "migrate-target", rooms, participants, concurrency))
    return {"rooms": rooms, "participants": participants, "concurrency": concurrency, **runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=DEFAULT_ROOMS)
    parser.add_argument("--participants", type=int, default=DEFAULT_PARTICIPANTS)
    parser.add_argument("--concurrency", type=int, default=16, help="rosters read at once (as --concurrency)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openrooms-bench-migrate-") as work:
        print(json.dumps(measure_migration(Path(work), args.rooms, args.participants, args.concurrency), indent=2))


if __name__ == "__main__":
    main()
