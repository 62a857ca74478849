"""Test helpers: a real `openrooms serve` process, and the HMAC signer that signs as the SDKs do (both the
start-and-wait loop and the signer are openrooms.testing's, shared with bench/)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from openrooms.config import DEV_ACCESS_KEY
from openrooms.testing import sign_headers, wait_until_healthy

__all__ = ["Server", "free_port", "loopback_site", "running_server", "sign_headers", "user_id"]

USER_PREFIX = "8:acs:1b5cc06b-f352-4571-b1e6-d9b259b7c776_"


def user_id(n: int | str) -> str:
    """A well-formed ACS user raw id."""
    return f"{USER_PREFIX}00000005-14a2-493b-8a72-{int(n):012x}" if str(n).isdigit() else USER_PREFIX + str(n)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port bound and never listening while the block runs: connections to it are refused, and no
    other test's server can be given it meanwhile (a port found free and let go can be)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


@dataclass
class Server:
    """A running `openrooms serve` process."""

    process: subprocess.Popen[bytes]
    port: int
    location: Path
    tls: bool
    access_key: str = DEV_ACCESS_KEY
    log_path: Path = field(default_factory=Path)

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/"

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.endpoint};accesskey={self.access_key}"

    @property
    def ca(self) -> str:
        return str(self.location / "certs" / "ca.pem")

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx needs to trust this server."""
        return ssl.create_default_context(cafile=self.ca) if self.tls else False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path_and_query: str, body: bytes = b"", headers: dict[str, str] | None = None,
                sign: bool = True, key: str | None = None) -> httpx.Response:
        """A raw signed request, for what the SDKs cannot send."""
        host = f"127.0.0.1:{self.port}"
        all_headers = {"content-type": "application/json"}
        if sign:
            all_headers.update(sign_headers(method, path_and_query, host, body, key or self.access_key))
        all_headers.update(headers or {})
        with httpx.Client(verify=self.verify) as client:
            return client.request(method, self.endpoint.rstrip("/") + path_and_query, content=body,
                                  headers=all_headers)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Ask `serve` to stop (its workers with it) and wait for it; if it has not stopped within `timeout`,
        kill its whole process group, so that no worker is left serving, and raise TimeoutExpired."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise

    def kill_group(self) -> None:
        """SIGKILL every process of the server's process group (`serve` and its workers), and reap `serve`."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def group_processes(self) -> list[int]:
        """Pids of the processes still running in the server's process group (zombies are not running)."""
        return processes_in_group(self.process.pid)

    def wait_group_gone(self, timeout: float = 5) -> list[int]:
        """After `serve` has exited: wait until its process group is empty (a worker killed as its parent died
        takes a moment to go); the pids still running at `timeout`."""
        deadline = time.monotonic() + timeout
        while (left := self.group_processes()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return left


@contextlib.contextmanager
def running_server(location: Path, *args: str, tls: bool = True, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start `openrooms serve` as a real process and wait until it answers /healthz."""
    port = free_port()
    location.mkdir(parents=True, exist_ok=True)
    log_path = location / f"server-{port}.log"
    command = [sys.executable, "-m", "openrooms", "serve", "--port", str(port), "--location", str(location), *args]
    if not tls:
        command.append("--no-tls")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROOMS_")}
    full_env.update(env or {})
    with open(log_path, "wb") as log_file:
        # A process group of its own: stopping can then reach every worker, even one its parent lost.
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=full_env,
                                   start_new_session=True)
    server = Server(process, port, location, tls, log_path=log_path)
    try:
        _wait_healthy(server)
        yield server
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.stop()
        left = server.wait_group_gone()
        if left:  # `serve` stopped and a worker did not: never leave it serving, and say so
            server.kill_group()
            raise AssertionError(f"worker processes {left} outlived openrooms serve (pid {process.pid})")


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def processes_in_group(pgid: int) -> list[int]:
    """Pids of the running (not zombie) processes whose process group is `pgid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after its last ')'
        state, _ppid, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _wait_healthy(server: Server, timeout: float = 30) -> None:
    def exited() -> str | None:
        if server.process.poll() is None:
            return None
        return f"openrooms serve exited with {server.process.returncode}:\n{server.log()}"

    try:
        wait_until_healthy(server.endpoint + "healthz", alive=exited, ca=server.ca if server.tls else None,
                           timeout=timeout)
    except RuntimeError as exc:
        if server.process.poll() is not None:
            raise
        raise RuntimeError(f"openrooms serve did not become healthy:\n{server.log()}") from exc


@contextlib.asynccontextmanager
async def loopback_site(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app on a free loopback port for as long as the block runs; its origin, http://127.0.0.1:<port>."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def no_openrooms_errors(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test when an `openrooms` logger logged an ERROR during it (a loop that fails and carries on would
    still pass), unless the test is marked `logs_errors` (it provokes one on purpose and checks it)."""
    yield
    if request.node.get_closest_marker("logs_errors") is not None:
        return
    errors = [r for r in caplog.get_records("call") if r.name.startswith("openrooms") and r.levelno >= logging.ERROR]
    assert not errors, "logged: " + "; ".join(r.getMessage() + (f" ({r.exc_info[1]!r})" if r.exc_info else "")
                                              for r in errors)
