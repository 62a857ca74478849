"""Two `openrooms serve` instances on one PostgreSQL schema share one subscription: one of them at a time leases it
and delivers its events from the log. That one is killed with SIGKILL (its whole process tree) while deliveries
are in flight on it, and the other takes the subscription over and goes on from its cursor (at once: both run on
this machine, so the other sees the holder's process gone; an instance elsewhere waits the lease out, as
tests/store and tests/webhooks/test_dispatcher_batches.py check): every event of the log reaches the receiver,
each room's in the log's order, nothing from the other instance while the lease was live, repeats only of the
batch the killed instance had taken (what it delivered before that never comes again), every signature verifies
(standardwebhooks), and nothing of the killed instance delivers again.
The receiver tells which instance sent each request by the process that owns the other end of its connection
(Linux /proc), whichever process of the instance delivers (a server worker, or a child of its own); a request whose
sender is gone by the time it is read came from the killed instance. The instance to be killed is the one that delivers
first (the lease holder); the receiver answers its first requests, then holds its requests open until it is dead:
the kill always cuts deliveries off mid-request."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.store import postgres_schema
from tests.support import Server, loopback_site, running_server, user_id

ROOMS = "api-version=2025-03-13"
EVENTS = "api-version=2026-11-01-openrooms"
MERGE_PATCH = {"content-type": "application/merge-patch+json"}
# Retries within milliseconds; a lease the killed instance held runs out 2.5 s after it last took it. The lease
# must outlast a delivery's timeout, and the timeout the answer of a receiver on loopback on a loaded machine.
FLAGS = ("--webhook-retry-scale", "0.0001", "--webhook-timeout", "2", "--webhook-lease-seconds", "2.5", "--silent")
ANSWERED_BEFORE_HOLDING = 2  # the doomed instance's first deliveries are answered: it has delivered some
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
GONE = "gone"  # the sender of a request whose other end no process holds any more: it died


# Processes (Linux /proc) ----------------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """A process's state, parent, process group and session; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid, pgrp, session = text.rpartition(")")[2].split()[:4]  # after comm, which may hold anything
    return state, int(ppid), int(pgrp), int(session)


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def running(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def instance_processes(serve_pid: int) -> set[int]:
    """The running processes of the instance `serve_pid` started: its descendants, and whatever is in its session
    or process group (`running_server` makes `serve` the leader of both)."""
    stats = {pid: stat for pid in _pids() if (stat := _stat(pid)) is not None and stat[0] not in ("Z", "X")}
    found = {pid for pid, (_, _, pgrp, session) in stats.items() if serve_pid in (pgrp, session)}
    if serve_pid in stats:
        found.add(serve_pid)
    grown = True
    while grown:
        more = {pid for pid, (_, ppid, _, _) in stats.items() if ppid in found} - found
        found |= more
        grown = bool(more)
    return found


def kill_instance(server: Server) -> set[int]:
    """SIGKILL every process of the instance, by pid (and its process group), and wait until none runs; the pids."""
    doomed = instance_processes(server.process.pid)
    killed: set[int] = set()
    deadline = time.monotonic() + 30
    while True:
        with suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        for pid in doomed - killed:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= doomed
        server.process.wait()
        # Whatever it started meanwhile (its session and group outlive its leader) goes the same way.
        doomed |= {pid for pid in _pids() if (stat := _stat(pid)) is not None and stat[0] not in ("Z", "X")
                   and server.process.pid in (stat[2], stat[3])}
        if not any(running(pid) for pid in doomed):
            return killed
        assert time.monotonic() < deadline, f"processes {sorted(filter(running, doomed))} outlived SIGKILL"
        time.sleep(0.01)


def socket_inode(local_port: int, remote_port: int) -> str | None:
    """The inode of the IPv4 TCP socket from `local_port` to `remote_port` (both on loopback)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (int(fields[1].rpartition(":")[2], 16), int(fields[2].rpartition(":")[2], 16)) == (local_port, remote_port):
            return fields[9]
    return None


def socket_owner(inode: str, pids: Iterable[int]) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            with os.scandir(f"/proc/{pid}/fd") as fds:
                for fd in fds:
                    with suppress(OSError):
                        if os.readlink(fd.path) == target:
                            return pid
        except OSError:  # gone, or not ours to read
            continue
    return None


@contextlib.contextmanager
def servers(*starting: contextlib.AbstractContextManager[Server]) -> Iterator[list[Server]]:
    """Servers started side by side (each start mostly waits), all stopped afterwards, also when one fails to."""
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(len(starting)) as pool:
        started = [pool.submit(manager.__enter__) for manager in starting]
        failed: BaseException | None = None
        for manager, future in zip(starting, started, strict=True):
            try:
                future.result()
            except BaseException as exc:
                failed = failed or exc
            else:
                stack.push(manager.__exit__)
        if failed is not None:
            raise failed
        yield [future.result() for future in started]


# The receiver -----------------------------------------------------------------------------------------------------
@dataclass
class Arrival:
    sender: str  # the instance ("a", "b") or the process that sent it, or GONE
    at: float  # time.monotonic() once its sender was known
    event: dict[str, Any]
    answered: bool = False  # answered 2xx (a held request never is)

    @property
    def id(self) -> str:
        return str(self.event["id"])

    @property
    def room(self) -> str:
        return str(self.event["data"]["roomId"])


class TellingReceiver:
    """Verifies every request's signature, notes which instance sent it, and holds the doomed one's requests."""

    def __init__(self, secret: str, instances: dict[str, int]) -> None:
        self.hook = Webhook(secret)
        self.instances = instances  # name -> pid of its `serve`
        self.doomed = ""  # the instance that delivers first: the one that holds the subscription's lease
        self.arrivals: list[Arrival] = []
        self.unverified: list[str] = []
        self.held: list[web.Request] = []
        self.holding = threading.Event()  # read by the thread that makes the load
        self.release = asyncio.Event()

    def sender(self, request: web.Request) -> str:
        """Looked up for every request, not once per connection: a connection outlives nothing that dies."""
        transport = request.transport
        assert transport is not None
        inode = socket_inode(transport.get_extra_info("peername")[1], transport.get_extra_info("sockname")[1])
        if inode is None:
            return GONE
        ours = set().union(*(instance_processes(pid) for pid in self.instances.values()))
        pid = socket_owner(inode, ours) or socket_owner(inode, _pids())
        return GONE if pid is None else self.instance_of(pid)

    def instance_of(self, pid: int) -> str:
        for name, serve_pid in self.instances.items():
            if pid in instance_processes(serve_pid):
                return name
        return f"pid {pid}"

    def open_held(self) -> list[web.Request]:
        return [r for r in self.held if r.transport is not None and not r.transport.is_closing()]

    def answered_ids(self) -> set[str]:
        return {arrival.id for arrival in self.arrivals if arrival.answered}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = self.hook.verify(raw, dict(request.headers))
        except WebhookVerificationError as exc:
            self.unverified.append(f"{exc}: {raw[:200]!r}")
            return web.Response(status=401)
        if body[0]["eventType"] == VALIDATION_EVENT:
            return web.json_response({"validationResponse": body[0]["data"]["validationCode"]})
        sender = self.sender(request)
        if not self.doomed and sender in self.instances:
            self.doomed = sender
        arrival = Arrival(sender, time.monotonic(), body[0])
        self.arrivals.append(arrival)
        answered_by_doomed = sum(1 for a in self.arrivals if a.sender == self.doomed and a.answered)
        # A request of the doomed instance is held once it has delivered a few; so is one whose sender is gone.
        if sender == GONE or (sender == self.doomed and answered_by_doomed >= ANSWERED_BEFORE_HOLDING):
            self.held.append(request)
            self.holding.set()
            await self.release.wait()
            return web.Response(status=503)  # to a connection that died with its instance
        arrival.answered = True
        return web.Response(status=200)


# The load ---------------------------------------------------------------------------------------------------------
def make_rooms(servers: list[Server], rooms: list[str], count: int, stop: Callable[[], bool] = lambda: False) -> None:
    """Up to `count` rooms through the servers in turn, each with two participants added (three events), until
    `stop()` holds."""
    for n in range(count):
        if stop():
            return
        server = servers[(len(rooms) + n) % len(servers)]
        created = server.request("POST", f"/rooms?{ROOMS}", b"{}")
        assert created.status_code == 201, created.text
        room_id = created.json()["id"]
        rooms.append(room_id)
        for k in range(2):
            add_participant(server, room_id, k)


def add_participant(server: Server, room_id: str, k: int) -> None:
    body = json.dumps({"participants": {user_id(k): {"role": "Attendee"}}}).encode()
    changed = server.request("PATCH", f"/rooms/{room_id}/participants?{ROOMS}", body, MERGE_PATCH)
    assert changed.status_code == 200, changed.text


def read_log(server: Server) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    path = f"/events?{EVENTS}&maxpagesize=1000"
    while True:
        page = server.request("GET", path)
        assert page.status_code == 200, page.text
        body = page.json()
        if not body["value"]:
            return events
        events += body["value"]
        next_link = urlsplit(body["nextLink"])
        path = f"{next_link.path}?{next_link.query}"


async def until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def increasing(values: list[int]) -> bool:
    return all(x < y for x, y in itertools.pairwise(values))


async def test_an_instance_killed_mid_delivery_leaves_its_subscription_to_the_other(tmp_path: Path) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with postgres_schema.fresh_schema(postgres_schema.base_url()) as url, \
            servers(*(running_server(tmp_path / name, "--database-url", url, *FLAGS, tls=False)
                      for name in "ab")) as (a, b):
        receiver = TellingReceiver(secret, {"a": a.process.pid, "b": b.process.pid})
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        async with loopback_site(app) as origin:
            before = {e["id"] for e in await asyncio.to_thread(read_log, b)}
            made = await asyncio.to_thread(b.request, "POST", f"/events/subscriptions?{EVENTS}",
                                           json.dumps({"endpoint": f"{origin}/hook", "secret": secret}).encode())
            assert made.status_code == 201, made.text

            # Load through both, until the lease holder has delivered some events and holds a delivery open.
            rooms: list[str] = []
            for _ in range(8):
                await asyncio.to_thread(make_rooms, [a, b], rooms, 4, receiver.holding.is_set)
                await until(lambda: receiver.holding.is_set() or len(receiver.answered_ids()) >= 3 * len(rooms),
                            "a delivery held open, or every event so far delivered")
                if receiver.holding.is_set():
                    break
            assert receiver.holding.is_set(), "no instance delivered: no load for the test"
            await until(receiver.open_held, "a delivery of the lease holder in flight")
            # More events while the lease holder's batch is stuck: they wake the other instance too, which must
            # leave them to the live lease.
            await asyncio.to_thread(make_rooms, [a, b], rooms, 2)
            doomed, survivor = (a, b) if receiver.doomed == "a" else (b, a)
            other = "b" if receiver.doomed == "a" else "a"

            kill_at = time.monotonic()
            killed = await asyncio.to_thread(kill_instance, doomed)
            dead_at = time.monotonic()
            assert doomed.process.pid in killed
            await until(lambda: not receiver.open_held(), "the killed instance's connections to close")
            receiver.release.set()

            # More events through the survivor: one for every room (behind what the killed one held), and new rooms.
            def more() -> None:
                for room_id in rooms:
                    add_participant(survivor, room_id, 2)
                make_rooms([survivor], rooms, 2)

            await asyncio.to_thread(more)
            log = [e for e in await asyncio.to_thread(read_log, survivor) if e["id"] not in before]
            assert len(log) == 4 * len(rooms) - 2  # the two new rooms have no third add
            await until(lambda: {e["id"] for e in log} <= receiver.answered_ids(),
                        "every event delivered after the takeover")

        arrivals = receiver.arrivals
        assert not receiver.unverified  # every request's signature verified
        assert {arrival.id for arrival in arrivals if arrival.answered} == {e["id"] for e in log}

        # Nothing but the two instances delivered, and nothing of the killed one once it was dead: a request read
        # after that came from the survivor, or from a process that had died (the killed one's, sent as it died).
        assert {arrival.sender for arrival in arrivals} <= {"a", "b", GONE}
        assert all(arrival.at > kill_at for arrival in arrivals if arrival.sender == GONE)
        assert all(arrival.sender in (other, GONE) for arrival in arrivals if arrival.at > dead_at)
        assert not any(running(pid) for pid in killed)
        # One instance at a time: the survivor delivered nothing while the killed one's lease was live.
        assert not [arrival.id for arrival in arrivals if arrival.sender == other and arrival.at < kill_at]

        # What the killed one had in flight went to the survivor after the kill.
        by_doomed = [arrival for arrival in arrivals if arrival.sender in (receiver.doomed, GONE)]
        cut_off = {arrival.id for arrival in by_doomed if not arrival.answered}
        assert cut_off
        assert cut_off <= {x.id for x in arrivals if x.sender == other and x.answered and x.at > dead_at}

        # Repeats only of the batch the killed one had taken: the survivor goes on from the cursor its last batch
        # end recorded, so in the log's order what it tried is first a run delivered once (batches it finished),
        # then a run that comes again (the batch in flight, a stretch of the log after that cursor); nothing the
        # survivor delivered itself comes twice.
        place = {e["id"]: i for i, e in enumerate(log)}
        tried = sorted({arrival.id for arrival in by_doomed}, key=place.__getitem__)
        repeated = {event_id for event_id, n in Counter(arrival.id for arrival in arrivals).items() if n > 1}
        assert repeated <= set(tried), (repeated, tried)
        flags = [event_id in repeated for event_id in tried]
        assert flags == sorted(flags), flags  # once-delivered ones, then only repeated ones
        assert repeated, "the batch in flight came again"

        # Each room's events in the log's order: their first arrivals, and everything after the takeover.
        for room_id in rooms:
            firsts = list(dict.fromkeys(arrival.id for arrival in arrivals if arrival.room == room_id))
            assert increasing([place[event_id] for event_id in firsts]), room_id
            after = [place[x.id] for x in arrivals if x.room == room_id and x.sender == other and x.at > dead_at]
            assert increasing(after), room_id
