"""Webhook delivery beside the serving processes (docs/events.md, "How delivery runs").

`openrooms serve` runs the webhook dispatcher in a delivery process of its own (`openrooms.cli.delivery`), so
that delivering never takes the serving processes' event loops: they only tell it that there is something new.
On PostgreSQL it hears of new events by LISTEN/NOTIFY, from every instance; the serving processes of its own
server also tell it through a UNIX datagram socket (`WakeSender`), about every commit that appended events
(SQLite, which has no notifications across processes) and about dead letters queued again (both stores). A wake
is one byte sent without waiting: when the socket is full, or nothing listens on it (the delivery process is
starting or gone), it is dropped, since a wake already waits there, or the dispatcher's first round and its poll
find the work all the same.

`webhooks` builds the subscriptions' service and, where this process delivers, its dispatcher: the serving app
(`http.app`) and the delivery process (`deliver`) build them alike, from the same settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from openrooms.config import Settings
from openrooms.http import metrics
from openrooms.http.webhooks import HttpSender
from openrooms.service.clock import Clock, SystemClock
from openrooms.service.identity import IdentityService
from openrooms.service.ports import RoomStore
from openrooms.service.webhooks import Dispatcher, Policy, WebhooksService
from openrooms.store import open_store

log = logging.getLogger("openrooms.webhooks")
# Where the serving processes of one `serve` send their wakes: set by `serve` for its workers and its delivery
# process. When it is set, the serving processes deliver nothing themselves.
WAKE_ENV = "_OPENROOMS_DELIVERY_WAKE"


class WakeSender:
    """Sends wakes to the delivery process listening at `path`; never blocks, never fails."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def __call__(self) -> None:
        # BlockingIOError: the socket is full of wakes not read yet; FileNotFoundError, ConnectionRefusedError:
        # no delivery process listens (yet, or any more).
        with contextlib.suppress(OSError):
            self._socket.sendto(b"w", self._path)

    def close(self) -> None:
        self._socket.close()


class WakeReceiver:
    """The delivery process's end: calls `wake` once per batch of wakes read."""

    def __init__(self, path: str, wake: Callable[[], None]) -> None:
        self._path = path
        self._wake = wake
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._socket.bind(path)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._socket.fileno(), self._read)

    def _read(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                self._socket.recv(64)
        self._wake()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._socket.fileno())
        self._socket.close()


def webhook_policy(settings: Settings) -> Policy:
    return Policy(retry_scale=settings.webhook_retry_scale, max_attempts=settings.webhook_max_attempts,
                  timeout_seconds=settings.webhook_timeout, lease_seconds=settings.webhook_lease_seconds,
                  hosts=None if settings.webhook_hosts is None else frozenset(
                      host.strip().lower() for host in settings.webhook_hosts.split(",") if host.strip()))


def webhooks(settings: Settings, store: RoomStore, clock: Clock, identity: IdentityService, *, dispatching: bool,
             wake: Callable[[], None] | None = None) -> tuple[WebhooksService, Dispatcher | None, HttpSender]:
    """The webhook subscriptions' service and, with `dispatching`, this process's dispatcher; `wake` tells a
    dispatcher elsewhere (the delivery process) that dead letters were queued again."""
    sender = HttpSender()
    dispatcher: Dispatcher | None = None

    def woken() -> None:
        if dispatcher is not None:
            dispatcher.wake()
        elif wake is not None:
            wake()

    service = WebhooksService(store, clock, identity.resource_id, sender, webhook_policy(settings), wake=woken,
                              origin=urlsplit(settings.endpoint).hostname or "openrooms")
    if dispatching:
        dispatcher = Dispatcher(store, service, clock, observe=metrics.observe_delivery)
    return service, dispatcher, sender


async def forward_events(store: RoomStore, wake: Callable[[], None]) -> None:
    """Wake the delivery process after each commit of this process that appended events (SQLite)."""
    async for _ in store.listen_events():
        wake()


async def deliver(settings: Settings, wake_path: str | None, stop: asyncio.Event) -> None:
    """The delivery process's work: dispatch every subscription's events until `stop` is set."""
    clock = SystemClock()
    store = open_store(settings, migrate_schema=False, background=True)
    identity = IdentityService(store, clock, resource_id=settings.resource_id)
    _, dispatcher, sender = webhooks(settings, store, clock, identity, dispatching=True)
    assert dispatcher is not None
    receiver = WakeReceiver(wake_path, dispatcher.wake) if wake_path else None
    try:
        if receiver is not None:
            receiver.start()
        dispatching = asyncio.create_task(dispatcher.run())
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait((dispatching, stopping), return_when=asyncio.FIRST_COMPLETED)
        for task in (dispatching, stopping):
            task.cancel()
        await asyncio.gather(dispatching, stopping, return_exceptions=True)
        if dispatching in done and not stop.is_set():  # it ends only when cancelled: the process fails, and
            # `serve` starts another (cli/delivery.py)
            failure = None if dispatching.cancelled() else dispatching.exception()
            raise RuntimeError("the webhook dispatcher stopped") from failure
    finally:
        if receiver is not None:
            receiver.close()
        await sender.close()
        await store.close()
        metrics.flush()
