"""Room call fixtures: a network namespace of the tests' own, a real Janus in it, and `openrooms serve` in it.

Neither Janus nor Chromium uses loopback addresses for ICE, so media would otherwise go over the machine's
external interface. The session creates a network namespace (`ip netns`) with `lo` and a veth pair of two
private addresses. The fixtures start Janus and openrooms in it, and every call test runs with this process's
main thread moved into it (`setns`), so that its sockets and the browsers it starts live there too: nothing
leaves the namespace. Between call tests (and for every other test of the session) the thread is back outside.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openrooms.calls import local
from tests import support
from tests.store import postgres_schema
from tests.support import Server, running_server

JANUS_PORT = 8188
JANUS_SECRET = "janus-test-api-secret"


class HostDialer:
    """Connects to addresses outside the namespace: its thread is started before the main thread moves in, and a
    socket belongs to the namespace of the thread that made it. Only the PostgreSQL the tests use is reached
    this way (loopback traffic of the machine, never media)."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[tuple[str, int], queue.Queue[socket.socket | OSError]] | None] = \
            queue.Queue()
        self._thread = threading.Thread(target=self._run, name="host-dialer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._requests.get()) is not None:
            address, answer = item
            try:
                answer.put(socket.create_connection(address, timeout=5))
            except OSError as exc:
                answer.put(exc)

    def dial(self, address: tuple[str, int]) -> socket.socket:
        answer: queue.Queue[socket.socket | OSError] = queue.Queue()
        self._requests.put((address, answer))
        result = answer.get()
        if isinstance(result, OSError):
            raise result
        return result

    def stop(self) -> None:
        self._requests.put(None)
        self._thread.join()


class Relay:
    """A port inside the namespace whose connections are carried to `target` outside it."""

    def __init__(self, dialer: HostDialer, target: tuple[str, int]) -> None:
        self._dialer = dialer
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = self._dialer.dial(self._target)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (closing alone does not)
        self._listener.close()
        self._thread.join()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@dataclass
class Namespace:
    name: str
    dialer: HostDialer


@pytest.fixture(scope="session")
def netns() -> Iterator[Namespace]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("room call tests need root and iproute2 (a network namespace of their own)")
    dialer = HostDialer()
    try:
        with local.private_network(f"orcalls{os.getpid()}") as name:
            yield Namespace(name, dialer)
    finally:
        dialer.stop()


@pytest.fixture(autouse=True)
def in_namespace(netns: Namespace) -> Iterator[None]:
    """Every call test runs inside the namespace (set up before the test's own function-scoped fixtures)."""
    with local.inside(netns.name):
        yield


@pytest.fixture(autouse=True)
def no_openrooms_errors(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A call test fails when an `openrooms` logger of this process logged an ERROR during it (the servers the
    tests start log elsewhere)."""
    with support.no_openrooms_errors(request, caplog):
        yield


@contextlib.contextmanager
def server_inside(netns: Namespace, *args: Any, **kwargs: Any) -> Iterator[Server]:
    """`running_server`, started inside the namespace (it stays there; stopping it needs no network)."""
    started = running_server(*args, **kwargs)
    with local.inside(netns.name):
        server = started.__enter__()
    try:
        yield server
    finally:
        started.__exit__(None, None, None)


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"janus exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"janus did not listen on {port}:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def janus_url(netns: Namespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if local.janus_binary() is None:
        pytest.fail("janus is not installed: `make test` installs it (apt-get install janus)")
    folder = local.write_config(tmp_path_factory.mktemp("janus"), ws_port=JANUS_PORT, api_secret=JANUS_SECRET)
    log = folder / "janus.log"
    with local.inside(netns.name):
        process = local.start(folder, log)
    try:
        with local.inside(netns.name):
            _wait_listening(JANUS_PORT, process, log)
        yield f"ws://127.0.0.1:{JANUS_PORT}/"
    finally:
        support.stop_process(process)


@dataclass
class CallServer:
    server: Server
    janus_url: str


@pytest.fixture(scope="session")
def call_server(netns: Namespace, janus_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallServer]:
    with server_inside(netns, tmp_path_factory.mktemp("calls"), "--in-memory", "--janus-url", janus_url,
                       "--janus-api-secret", JANUS_SECRET, tls=False) as server:
        yield CallServer(server, janus_url)


@pytest.fixture(scope="session")
def postgres_url(netns: Namespace) -> Iterator[str]:
    """A fresh, migrated schema of the tests' PostgreSQL, and its URL as seen from inside the namespace (through
    a relay)."""
    with postgres_schema.fresh_schema(postgres_schema.base_url()) as schema_url:
        given = urllib.parse.urlsplit(schema_url)
        with local.inside(netns.name):
            relay = Relay(netns.dialer, (given.hostname or "127.0.0.1", given.port or 5432))
        try:
            userinfo = given.netloc.rpartition("@")[0]
            netloc = f"{userinfo + '@' if userinfo else ''}127.0.0.1:{relay.port}"
            yield urllib.parse.urlunsplit(given._replace(netloc=netloc))
        finally:
            relay.close()
