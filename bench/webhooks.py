"""Webhook delivery benchmark: delivery latency (commit to receiver) under a create load, delivery throughput of one
subscription, and the create throughput while webhooks dispatch compared with while they do not.

Each round has a fresh server location (SQLite, or a fresh PostgreSQL schema with `--postgres-url`) and one
subscription (Event Grid schema) to a receiver on loopback in this process:

1. `serve --no-webhooks`: wrk creates rooms for `seconds`; their events queue up for the subscription undelivered
   (the same preload in every round);
2. `serve` (dispatching) on the same location: the backlog drains, timed from its first delivery to its last
   (the delivery throughput of one subscription, rooms side by side);
3. wrk creates rooms for `seconds` with the server dispatching (each event's latency from its eventTime, when its
   change committed, to its arrival at the receiver), and for `seconds` with `serve --no-webhooks`: in this order in
   odd rounds, the other way round in even ones, so that neither is always measured on the larger database. After
   the run without dispatching, its events are drained (untimed) before anything else is measured.

The figures are the medians over the rounds (and each round's, in `rounds`), for each `maxEventsPerBatch` asked
for (`--max-events-per-batch 1,100`: one event per request, as without batches, then up to 100), each its own
rows (`runs`, by the value).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from aiohttp import web

from bench import measure
from bench.measure import LoadResult, RunningServer
from bench.wire import Client, write_pool
from bench.workloads import Fixture, Pools

EVENTS = "?api-version=2026-11-01-openrooms"
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"


class Receiver:
    """Answers the handshake and accepts every delivery, noting when each event arrived (wall clock)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []  # arrival time, the event's eventTime
        self.requests: list[int] = []  # the events of each delivery request
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        if body and body[0].get("eventType") == VALIDATION_EVENT:
            return web.json_response({"validationResponse": body[0]["data"]["validationCode"]})
        arrived = time.time()
        self.arrivals += [(arrived, event["eventTime"]) for event in body]
        self.requests.append(len(body))
        return web.Response()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()


def _event_time(text: str) -> float:
    """An eventTime (RFC 3339, up to seven fractional digits) as Unix seconds."""
    head, dot, rest = text.partition(".")
    fraction, zone = (rest[:-6], rest[-6:]) if dot else ("", "")
    return datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}{zone}" if dot else head).timestamp()


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _wait_drained(client: Client, subscription_id: str, receiver: Receiver, at_least: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    path = f"/events/subscriptions/{subscription_id}{EVENTS}"
    while time.monotonic() < deadline:
        if len(receiver.arrivals) >= at_least and client.call("GET", path)["delivery"]["backlog"] == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the webhook backlog did not drain in {timeout} s ({len(receiver.arrivals)} delivered)")


@contextlib.contextmanager
def _server(location: Path, log: Path, database_url: str | None, *flags: str) -> Iterator[RunningServer]:
    port = measure.free_port()
    command = [*measure.openrooms_command(port, location, 1, database_url), *flags]
    with measure.serve(command, port, log) as server:
        yield server


@contextlib.contextmanager
def _database(postgres_url: str | None) -> Iterator[str | None]:
    """None (SQLite in the location), or a URL whose search_path is a fresh PostgreSQL schema, dropped afterwards."""
    if postgres_url is None:
        yield None
        return
    import psycopg

    from openrooms.store import postgres

    name = f"bench_webhooks_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{name}"')
    parts = urlsplit(postgres_url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -csearch_path={name}".strip()
    url = urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
    try:
        postgres.upgrade(url)
        yield url
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{name}" CASCADE')


def _creates(server: RunningServer, work: Path, seconds: float, connections: int) -> LoadResult:
    pool = Pools(Fixture([], ""), f"{server.host}:{server.port}").pool("create_room")
    return measure.run_wrk(server, write_pool(work / "webhooks-create.pool", pool), seconds=seconds,
                           connections=connections)


def _round(work: Path, n: int, seconds: float, connections: int, drain_timeout: float,
           postgres_url: str | None, batch: int = 1) -> dict[str, Any]:
    location = work / f"webhooks-{n}"
    shutil.rmtree(location, ignore_errors=True)
    dispatching_first = n % 2 == 1

    with Receiver() as receiver, _database(postgres_url) as url:
        def server(name: str, *flags: str) -> contextlib.AbstractContextManager[RunningServer]:
            return _server(location, work / f"webhooks-{n}-{name}.log", url, *flags)

        with server("preload", "--no-webhooks") as running:
            client = Client(running.host, running.port)
            fields: dict[str, Any] = {"endpoint": receiver.url}
            if batch > 1:
                fields["maxEventsPerBatch"] = batch
            made = client.call("POST", f"/events/subscriptions{EVENTS}", fields, expect=201)
            preload = _creates(running, work, seconds, connections)
            client.close()
        expected = preload.requests - preload.errors

        def not_dispatching() -> LoadResult:
            with server("not-dispatching", "--no-webhooks") as running:
                return _creates(running, work, seconds, connections)

        with server("dispatching") as running:
            client = Client(running.host, running.port)
            _wait_drained(client, made["id"], receiver, expected, drain_timeout)
            drained = [arrived for arrived, _ in receiver.arrivals]
            drain_seconds = max(drained) - min(drained)
            drain_requests = len(receiver.requests)
            receiver.arrivals.clear()
            client.close()
        if not dispatching_first:
            queued = not_dispatching()
            expected = queued.requests - queued.errors
        with server("dispatching-load") as running:
            client = Client(running.host, running.port)
            if not dispatching_first:  # the backlog of the run without dispatching, untimed
                _wait_drained(client, made["id"], receiver, expected, drain_timeout)
                receiver.arrivals.clear()
            dispatching = _creates(running, work, seconds, connections)
            _wait_drained(client, made["id"], receiver, dispatching.requests - dispatching.errors, drain_timeout)
            latencies = [(arrived - _event_time(event_time)) * 1000 for arrived, event_time in receiver.arrivals]
            client.close()
        if dispatching_first:
            queued = not_dispatching()
    shutil.rmtree(location, ignore_errors=True)
    return {
        "order": "dispatching first" if dispatching_first else "not dispatching first",
        "events_per_request": round(len(drained) / drain_requests, 1),
        "backlog_events": len(drained),
        "delivery_per_second": round(len(drained) / drain_seconds, 1) if drain_seconds > 0 else None,
        "latency_p50_ms": round(statistics.median(latencies), 2),
        "latency_p99_ms": round(_percentile(latencies, 99), 2),
        "latency_events": len(latencies),
        "create_rps_not_dispatching": queued.requests_per_second,
        "create_rps_dispatching": dispatching.requests_per_second,
        "create_ratio_dispatching_to_not": round(dispatching.requests_per_second / queued.requests_per_second, 3),
        "errors": preload.errors + queued.errors + dispatching.errors,
    }


def _medians(results: list[dict[str, Any]]) -> dict[str, Any]:
    medians: dict[str, Any] = {}
    for key, value in results[0].items():
        if isinstance(value, (int, float)) and key != "errors":
            values = [r[key] for r in results if r[key] is not None]
            medians[key] = round(statistics.median(values), 3) if values else None
    medians["create_ratio_dispatching_to_not"] = round(
        statistics.median(r["create_ratio_dispatching_to_not"] for r in results), 3)
    return {**medians, "errors": sum(r["errors"] for r in results), "rounds": results}


def measure_webhooks(work: Path, seconds: float, connections: int, drain_timeout: float = 300, rounds: int = 3,
                     postgres_url: str | None = None, batches: tuple[int, ...] = (1, 100)) -> dict[str, Any]:
    runs = {}
    for batch in batches:
        results = [_round(work, n + 1, seconds, connections, drain_timeout, postgres_url, batch)
                   for n in range(rounds)]
        runs[f"maxEventsPerBatch={batch}"] = _medians(results)
    return {"store": "postgresql" if postgres_url else "sqlite", "runs": runs, "load_average": list(os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/openrooms-bench-webhooks"))
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres-url", default=None, help="measure on PostgreSQL (a fresh schema per round)")
    parser.add_argument("--max-events-per-batch", default="1,100",
                        help="the subscription's maxEventsPerBatch of each run, comma-separated")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    batches = tuple(int(value) for value in args.max_events_per_batch.split(","))
    print(json.dumps(measure_webhooks(args.work, args.seconds, args.connections, rounds=args.rounds,
                                      postgres_url=args.postgres_url, batches=batches), indent=1))


if __name__ == "__main__":
    main()
