"""Stopping `openrooms serve --workers 2`, at any moment after it answers, ends every process of it (its workers
and its webhook delivery process) and frees its port; killing `serve` outright takes them with it."""

from __future__ import annotations

import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from openrooms.cli.server import WORKER_STOP_SECONDS
from tests.support import Server, running_server

# How long a stop may take before the test calls it a hang: the workers' bound, plus room for a busy machine.
HANG_SECONDS = WORKER_STOP_SECONDS + 25


def listening_on(port: int) -> bool:
    """Whether a socket on this machine listens on the port. Read from /proc/net/tcp{,6} rather than probed with a
    bind: once serve has let the port go, any test's outgoing connection may take it as its ephemeral port (the
    suite runs in parallel on loopback), and that connection blocks a bind without anything listening."""
    listen = "0A"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == listen and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def assert_gone(server: Server, what: str, timeout: float = 5) -> None:
    left = server.wait_group_gone(timeout)
    assert left == [], f"{what}: processes {left} of serve (pid {server.process.pid}) are still running"
    # A killed process's main thread shows as a zombie while its other threads (granian's) are still exiting and
    # hold its sockets open: its listening socket goes a moment after, once the last of them has gone.
    deadline = time.monotonic() + timeout
    while listening_on(server.port) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not listening_on(server.port), f"{what}: something still listens on port {server.port}"


def delivery_processes(server: Server) -> list[int]:
    def command(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""

    return [pid for pid in server.group_processes() if b"openrooms.cli.delivery" in command(pid)]


def stop_cycles(location: Path, server_name: str, cycles: int, rng: random.Random, seed: int) -> None:
    for cycle in range(cycles):
        sig = (signal.SIGTERM, signal.SIGINT)[cycle % 2]
        delay = rng.uniform(0, 2)
        what = f"{server_name} cycle {cycle}, {sig.name} {delay:.2f} s after /healthz (seed {seed})"
        with running_server(location, "--workers", "2", "--server", server_name, tls=False) as server:
            # The point of the test is the moment: a worker may still be starting, or both be serving.
            time.sleep(delay)
            stopped = server.stop(sig, timeout=HANG_SECONDS)
            assert stopped == 0, f"{what}: serve exited with {stopped}\n{server.log()}"
            assert_gone(server, what)


@pytest.mark.parametrize(("server_name", "cycles", "lanes"), [("granian", 30, 3), ("uvicorn", 4, 2)])
def test_stopping_at_random_moments_after_it_answers(
    tmp_path: Path, server_name: str, cycles: int, lanes: int
) -> None:
    seed = random.randrange(2**32)
    # Several servers at a time, each on its own location and port: the cycles of one lane overlap the waits
    # of the others, which keeps the test short.
    with ThreadPoolExecutor(lanes) as pool:
        runs = [
            pool.submit(stop_cycles, tmp_path / f"lane-{lane}", server_name, -(-cycles // lanes),
                        random.Random(seed + lane), seed)
            for lane in range(lanes)
        ]
        for run in runs:
            run.result()


@pytest.mark.parametrize("server_name", ["granian", "uvicorn"])
def test_killing_serve_takes_its_workers_with_it(tmp_path: Path, server_name: str) -> None:
    with running_server(tmp_path, "--workers", "2", "--server", server_name, tls=False) as server:
        assert len(server.group_processes()) >= 4  # serve, two workers and the webhook delivery process
        assert delivery_processes(server), "serve runs one webhook delivery process"
        assert listening_on(server.port), "the check of the port sees serve listen on it"
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        assert_gone(server, f"{server_name} after SIGKILL of serve")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("server_name", ["granian", "uvicorn"])
def test_one_worker_serve_stops_with_exit_status_0(tmp_path: Path, server_name: str, sig: signal.Signals) -> None:
    # One worker runs in serve's own process (uvicorn): a stop asked for is a clean exit there too, after the
    # delivery process has been stopped.
    with running_server(tmp_path, "--workers", "1", "--server", server_name, tls=False) as server:
        assert delivery_processes(server), "serve runs one webhook delivery process"
        assert server.stop(sig, timeout=HANG_SECONDS) == 0, server.log()
        assert_gone(server, f"{server_name}, one worker, after {sig.name}")
