"""Webhooks across real processes: `openrooms events subscriptions` against a server, and a server killed with
SIGKILL while deliveries are in flight loses none of them once it is back (at least once: repeats allowed)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from tests.cli.conftest import run_openrooms
from tests.support import Server, running_server
from tests.webhooks.receiver import Receiver, receiving

ROOMS = "?api-version=2025-03-13"
# Retries within milliseconds; a lease a killed server held runs out in a second.
FAST = ("--webhook-retry-scale", "0.0001", "--webhook-timeout", "0.5", "--webhook-lease-seconds", "1", "--silent")


class ThreadedReceiver:
    """A `Receiver` served on an event loop of its own thread, for tests that block on processes."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.receiver: Receiver | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with receiving() as receiver:
            self.receiver = receiver
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait(10)
        assert self.receiver is not None
        return self.receiver

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.loop.close()


def cli(server: Server, *args: str) -> object:
    done = run_openrooms("events", "subscriptions", *args, "--connection-string", server.connection_string)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def created_rooms(receiver: Receiver) -> set[str]:
    return {e["data"]["roomId"] for e in receiver.events() if e["eventType"] == "OpenRooms.RoomCreated"}


def wait(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def location(tmp_path: Path) -> Path:
    return tmp_path / "server"


def test_the_cli_manages_subscriptions_and_a_killed_server_loses_no_delivery(location: Path) -> None:
    with ThreadedReceiver() as receiver:
        receiver.delay = 0.2  # deliveries stay in flight long enough to be cut off
        with running_server(location, *FAST, tls=False) as server:
            made = cli(server, "create", "--endpoint", receiver.url, "--type", "OpenRooms.RoomCreated")
            assert isinstance(made, dict) and made["secret"].startswith("whsec_")
            receiver.secret = made["secret"]
            listed = cli(server, "list")
            assert isinstance(listed, list) and [s["id"] for s in listed] == [made["id"]]
            rooms = {server.request("POST", "/rooms" + ROOMS, b"{}").json()["id"] for _ in range(8)}
            wait(lambda: receiver.attempts >= 2, "the first deliveries")
            server.kill_group()  # SIGKILL, serve and its worker alike
        assert not rooms <= created_rooms(receiver)  # cut off with deliveries left
        with running_server(location, *FAST, tls=False) as server:
            wait(lambda: rooms <= created_rooms(receiver), "every room's event after the restart")
            updated = cli(server, "update", "--id", made["id"], "--all-types", "--max-events-per-batch", "10",
                          "--preferred-batch-size-in-kilobytes", "128")
            assert isinstance(updated, dict) and updated["types"] is None and "secret" not in updated
            assert (updated["maxEventsPerBatch"], updated["preferredBatchSizeInKilobytes"]) == (10, 128)
            refused = run_openrooms("events", "subscriptions", "update", "--id", made["id"],
                                    "--max-events-per-batch", "5001", "--connection-string", server.connection_string)
            assert refused.returncode != 0 and "maxEventsPerBatch" in refused.stderr, refused.stderr
            cli(server, "delete", "--id", made["id"])
            gone = run_openrooms("events", "subscriptions", "show", "--id", made["id"],
                                 "--connection-string", server.connection_string)
            assert gone.returncode == 3 and "NotFound" in gone.stderr
