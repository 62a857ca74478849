"""Stopping `openrooms serve --workers 2`, at any moment after it answers, ends every process of it and frees
its port; killing `serve` outright takes its workers with it."""

from __future__ import annotations

import random
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from openrooms.cli.server import WORKER_STOP_SECONDS
from tests.support import Server, running_server

# How long a stop may take before the test calls it a hang: the workers' bound, plus room for a busy machine.
HANG_SECONDS = WORKER_STOP_SECONDS + 25


def port_is_free(port: int) -> bool:
    """Whether nothing listens on the port any more (SO_REUSEADDR: connections in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def assert_gone(server: Server, what: str) -> None:
    left = server.wait_group_gone()
    assert left == [], f"{what}: processes {left} of serve (pid {server.process.pid}) are still running"
    assert port_is_free(server.port), f"{what}: port {server.port} is still in use"


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


@pytest.mark.parametrize(("server_name", "cycles", "lanes"), [("granian", 50, 3), ("uvicorn", 4, 2)])
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
        assert len(server.group_processes()) >= 3  # serve and two workers
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        assert_gone(server, f"{server_name} after SIGKILL of serve")
