"""Room call fixtures: a network namespace of the test's own, a real Janus in it, and `openrooms serve` in it.

Neither Janus nor Chromium uses loopback addresses for ICE, so media would otherwise go over the machine's
external interface. The session creates a network namespace (`ip netns`) with `lo` and a veth pair of two
private addresses, and moves this test process's main thread into it (`setns`), so that every socket the tests
open and every process they start (Janus, openrooms, Chromium) lives there. Nothing leaves the namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from openrooms.calls import local
from tests.support import Server, running_server

CLONE_NEWNET = 0x40000000
JANUS_PORT = 8188
JANUS_SECRET = "janus-test-api-secret"


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="session")
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("room call tests need root and iproute2 (a network namespace of their own)")
    name = f"orcalls{os.getpid()}"
    _ip("netns", "add", name)
    original = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        _ip("-n", name, "addr", "add", "10.203.0.1/24", "dev", "v0")
        _ip("-n", name, "addr", "add", "10.203.0.2/24", "dev", "v1")
        _ip("-n", name, "link", "set", "v0", "up")
        _ip("-n", name, "link", "set", "v1", "up")
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield name
        finally:
            _setns(original)
    finally:
        os.close(original)
        _ip("netns", "del", name)


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
def janus_url(netns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if local.janus_binary() is None:
        pytest.fail("janus is not installed: `make test` installs it (apt-get install janus)")
    folder = local.write_config(tmp_path_factory.mktemp("janus"), ws_port=JANUS_PORT, api_secret=JANUS_SECRET)
    log = folder / "janus.log"
    process = local.start(folder, log)
    try:
        _wait_listening(JANUS_PORT, process, log)
        yield f"ws://127.0.0.1:{JANUS_PORT}/"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class CallServer:
    server: Server
    janus_url: str


@pytest.fixture(scope="session")
def call_server(janus_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallServer]:
    with running_server(tmp_path_factory.mktemp("calls"), "--in-memory", "--janus-url", janus_url,
                        "--janus-api-secret", JANUS_SECRET, tls=False) as server:
        yield CallServer(server, janus_url)
