"""Webhook delivery benchmark: delivery latency (commit to receiver) under a create load, delivery throughput of one
subscription, and the create throughput while webhooks dispatch compared with while they do not.

One SQLite server location, one subscription (Event Grid schema) to a receiver on loopback in this process:

1. `serve --no-webhooks`: wrk creates rooms for `seconds`; their events queue up for the subscription undelivered
   (the create throughput without dispatching);
2. `serve` (dispatching) on the same location: the backlog drains, timed from its first delivery to its last
   (the delivery throughput of one subscription, rooms side by side);
3. the same server: wrk creates rooms again while they are delivered (the create throughput with dispatching; each
   event's latency from its eventTime, when its change committed, to its arrival at the receiver).

Every number comes from this one run on this machine: the ratio is of two runs taken back to back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

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
def _server(work: Path, name: str, *flags: str) -> Iterator[RunningServer]:
    port = measure.free_port()
    command = [*measure.openrooms_command(port, work / "webhooks", 1), *flags]
    with measure.serve(command, port, work / f"webhooks-{name}.log") as server:
        yield server


def _creates(server: RunningServer, work: Path, seconds: float, connections: int) -> LoadResult:
    pool = Pools(Fixture([], ""), f"{server.host}:{server.port}").pool("create_room")
    return measure.run_wrk(server, write_pool(work / "webhooks-create.pool", pool), seconds=seconds,
                           connections=connections)


def measure_webhooks(work: Path, seconds: float, connections: int, drain_timeout: float = 300) -> dict[str, Any]:
    with Receiver() as receiver:
        with _server(work, "queueing", "--no-webhooks") as server:
            client = Client(server.host, server.port)
            made = client.call("POST", f"/events/subscriptions{EVENTS}", {"endpoint": receiver.url}, expect=201)
            queued = _creates(server, work, seconds, connections)
            client.close()
        backlog = queued.requests - queued.errors
        with _server(work, "dispatching") as server:
            client = Client(server.host, server.port)
            _wait_drained(client, made["id"], receiver, backlog, drain_timeout)
            drained = [arrived for arrived, _ in receiver.arrivals]
            drain_seconds = max(drained) - min(drained)
            receiver.arrivals.clear()
            dispatching = _creates(server, work, seconds, connections)
            _wait_drained(client, made["id"], receiver, dispatching.requests - dispatching.errors, drain_timeout)
            client.close()
        latencies = [(arrived - _event_time(event_time)) * 1000 for arrived, event_time in receiver.arrivals]
    return {
        "backlog_events": len(drained),
        "delivery_per_second": round(len(drained) / drain_seconds, 1) if drain_seconds > 0 else None,
        "latency_p50_ms": round(statistics.median(latencies), 2),
        "latency_p99_ms": round(_percentile(latencies, 99), 2),
        "latency_events": len(latencies),
        "create_rps_not_dispatching": queued.requests_per_second,
        "create_rps_dispatching": dispatching.requests_per_second,
        "create_ratio_dispatching_to_not": round(dispatching.requests_per_second / queued.requests_per_second, 3),
        "errors": queued.errors + dispatching.errors,
    }
