"""The delivery process of `openrooms serve` (cli/delivery.py, http/delivery.py): wakes between processes, the
process started, niced and stopped with `serve`'s block, dying with a parent killed outright, restarted when it
exits while `serve` runs (and a real `serve` delivering again after its delivery process was killed), and a
commit in a serving process waking it on SQLite although its poll would not come for an hour. Serving with real
workers and killing `serve` is in tests/reliability/test_stopping.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from openrooms.cli import delivery as process
from openrooms.config import Settings
from openrooms.http import delivery
from openrooms.http.app import create_app
from openrooms.service.webhooks import Dispatcher, Policy
from openrooms.store.sqlite import SqliteStore
from tests.reliability.test_stopping import delivery_processes
from tests.store import postgres_schema
from tests.support import Server, running_server
from tests.webhooks.receiver import Receiver, receiving
from tests.webhooks.test_webhooks import FAST, create_room, subscribe
from tests.webhooks.test_webhooks_server import ThreadedReceiver


def gone(pid: int) -> bool:
    """Whether the process has ended (a zombie waiting for its reaper counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped before the open, or between the open and the read
        return True


def wait_until(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


async def test_wakes_reach_the_listener_and_sending_never_blocks_nor_fails(tmp_path: Path) -> None:
    woken = asyncio.Event()
    path = str(tmp_path / "wake")
    nowhere = delivery.WakeSender(str(tmp_path / "nobody-listens"))
    nowhere()  # nothing listens there: dropped, no error
    nowhere.close()
    receiver = delivery.WakeReceiver(path, woken.set)
    receiver.start()
    sender = delivery.WakeSender(path)
    try:
        for _ in range(5000):  # far more than the socket holds: the rest are dropped, without waiting
            sender()
        await asyncio.wait_for(woken.wait(), 10)
        woken.clear()
        await asyncio.sleep(0.05)  # every wake sent so far is read at once, in one batch
        assert not woken.is_set()
        sender()
        await asyncio.wait_for(woken.wait(), 10)
    finally:
        sender.close()
        receiver.close()


def settings_at(location: Path, **values: Any) -> Settings:
    SqliteStore.upgrade(location / "openrooms.db")
    return Settings(location=location, silent=True, **values).validated()


def test_no_delivery_process_in_memory_or_without_webhooks(tmp_path: Path) -> None:
    with process.running(Settings(in_memory=True)) as started:
        assert started is None
    with process.running(Settings(location=tmp_path, webhooks=False)) as started:
        assert started is None
    assert delivery.WAKE_ENV not in os.environ


def test_the_delivery_process_runs_niced_while_the_block_runs_and_stops_after_it(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    with process.running(settings) as started:
        assert started is not None and started.process.poll() is None
        wake = Path(os.environ[delivery.WAKE_ENV])
        wait_until(wake.exists, "the delivery process to listen for wakes")
        assert os.getpriority(os.PRIO_PROCESS, started.pid) == os.getpriority(os.PRIO_PROCESS, 0) + process.NICE
    assert started.process.returncode == 0  # stopped by SIGTERM, cleanly
    assert delivery.WAKE_ENV not in os.environ and not wake.parent.exists()


def test_the_restart_delay_doubles_up_to_its_bound_and_starts_over_after_a_long_run() -> None:
    delays = [process.restart_delay(None, 0.5)]
    for _ in range(6):
        delays.append(process.restart_delay(delays[-1], 0.5))
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert process.restart_delay(30, process.RESTART_RESET_SECONDS) == 1


def test_a_delivery_process_that_dies_is_restarted_until_the_block_ends(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    with process.running(settings) as supervisor:
        assert supervisor is not None
        first = supervisor.process
        first.send_signal(signal.SIGKILL)
        wait_until(lambda: supervisor.process is not first, "the delivery process to be restarted")
        assert first.returncode == -signal.SIGKILL and supervisor.restarts == 1
        second = supervisor.process
        assert second.poll() is None
        niced = os.getpriority(os.PRIO_PROCESS, 0) + process.NICE
        wait_until(lambda: os.getpriority(os.PRIO_PROCESS, second.pid) == niced, "the restarted one to be niced")
        second.send_signal(signal.SIGKILL)
        second.wait()  # the block ends while the next one waits its turn (2 s): none is started after it
    assert supervisor.process is second and supervisor.restarts == 1
    assert not supervisor._thread.is_alive()


def test_a_delivery_process_asked_to_stop_is_not_restarted(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    with process.running(settings) as supervisor:
        assert supervisor is not None
        first = supervisor.process
        wait_until(Path(os.environ[delivery.WAKE_ENV]).exists, "the delivery process to listen for wakes")
        first.send_signal(signal.SIGTERM)  # as a terminal's Ctrl-C or a service manager's stop of every process
        assert first.wait() == 0
        supervisor._thread.join(5)
        assert not supervisor._thread.is_alive() and supervisor.process is first and supervisor.restarts == 0


def test_no_delivery_process_is_restarted_once_the_server_is_stopping(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    with process.running(settings) as supervisor:
        assert supervisor is not None
        supervisor.shutting_down_when(lambda: True)  # as the server's stop, before it has stopped its workers
        first = supervisor.process
        first.send_signal(signal.SIGKILL)
        first.wait()
        supervisor._thread.join(5)
        assert not supervisor._thread.is_alive() and supervisor.process is first and supervisor.restarts == 0


async def test_a_dispatcher_that_ends_fails_the_delivery_process(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    async def ends(self: Dispatcher) -> None:
        raise ValueError("broken")

    monkeypatch.setattr(Dispatcher, "run", ends)
    with pytest.raises(RuntimeError, match="dispatcher stopped") as failed:
        await delivery.deliver(settings_at(tmp_path), None, asyncio.Event())
    assert isinstance(failed.value.__cause__, ValueError)


def restarts_in_metrics(server: Server) -> float:
    scraped = server.request("GET", "/metrics", sign=False)
    assert scraped.status_code == 200, scraped.text
    for line in scraped.text.splitlines():
        if line.startswith("openrooms_delivery_process_restarts_total "):
            return float(line.split()[1])
    raise AssertionError(f"no openrooms_delivery_process_restarts_total in /metrics:\n{scraped.text}")


def room_created(server: Server, receiver: Receiver) -> None:
    made = server.request("POST", "/rooms?api-version=2025-03-13", b"{}")
    assert made.status_code == 201, made.text
    wait_until(lambda: made.json()["id"] in {e["data"]["roomId"] for e in receiver.events()},
               f"the event of room {made.json()['id']} to be delivered")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_serve_restarts_a_killed_delivery_process_which_delivers_again(
        tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    database: tuple[str, ...] = ()
    if kind == "postgres":  # woken by LISTEN/NOTIFY there; on SQLite by the workers, on its socket
        url = request.getfixturevalue("postgres_url")
        postgres_schema.truncate_all(url)
        database = ("--database-url", url)
    # A lease far longer than the test: the restarted process takes the subscription over from the killed one at
    # once, since it sees that the holder's process has ended.
    flags = ("--webhook-retry-scale", "0.0001", "--webhook-timeout", "2", "--webhook-lease-seconds", "600",
             "--silent")
    with ThreadedReceiver() as receiver, \
            running_server(tmp_path / "server", *database, *flags, "--workers", "2", tls=False) as server:
        made = server.request("POST", "/events/subscriptions?api-version=2026-11-01-openrooms", json.dumps(
            {"endpoint": receiver.url, "types": ["OpenRooms.RoomCreated"]}).encode())
        assert made.status_code == 201, made.text
        receiver.secret = made.json()["secret"]
        room_created(server, receiver)
        [killed] = delivery_processes(server)
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: gone(killed), "the delivery process to die")
        room_created(server, receiver)  # its event waits for the next delivery process
        [restarted] = delivery_processes(server)
        assert restarted != killed
        assert restarts_in_metrics(server) == 1
        log = server.log()
        assert f"the delivery process {killed} was killed by SIGKILL" in log
        assert f"restarted the delivery process: pid {restarted}" in log
    # running_server checks that no process of serve's group outlived it: the restarted one was stopped too


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_delivery_process_dies_with_a_parent_killed_outright(tmp_path: Path) -> None:
    settings_at(tmp_path)
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from openrooms.cli import delivery\n"
         "from openrooms.config import Settings\n"
         f"with delivery.running(Settings(location={str(tmp_path)!r}, silent=True)) as p:\n"
         "    print(p.pid, flush=True)\n"
         "    time.sleep(120)\n"],
        stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_until(lambda: gone(child), "the delivery process to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


async def test_a_commit_in_a_serving_process_wakes_the_delivery_process_on_sqlite(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The dispatcher polls once an hour: an event delivered within the test came by a wake.
    polled_hourly = delivery.webhook_policy

    def hourly(settings: Settings) -> Policy:
        return dataclasses.replace(polled_hourly(settings), poll_seconds=3600.0)

    monkeypatch.setattr(delivery, "webhook_policy", hourly)
    settings = settings_at(tmp_path, **FAST)
    wake_path = str(tmp_path / "wake")
    app = create_app(settings, wake_path=wake_path)  # a serving process: it dispatches nothing itself
    async with receiving() as receiver, app._lifespan_context(app):
        await subscribe(app, receiver, types=["OpenRooms.RoomCreated"])
        first = await create_room(app)
        await asyncio.sleep(0.5)
        assert receiver.events() == []  # queued for the delivery process, which is not running yet
        stop = asyncio.Event()
        delivering = asyncio.create_task(delivery.deliver(settings, wake_path, stop))
        try:
            await receiver.wait_for(1)  # its first round
            await asyncio.sleep(0.5)  # it has settled into its hour-long wait
            second = await create_room(app)
            events = await receiver.wait_for(2)
            assert [e["data"]["roomId"] for e in events] == [first, second]
        finally:
            stop.set()
            await delivering
