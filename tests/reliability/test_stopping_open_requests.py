"""A stop of `openrooms serve` does not wait for what holds a connection open: an events long-poll answers at once
(an empty page), a half-sent request head is dropped, so the worker's lifespan shutdown runs (it logs that it
stopped) before granian's kill timeout. What holds a connection open would hold the shutdown too: the kill would
come first and the shutdown never run. (The worker process' own exit after its shutdown can take a while on a
loaded machine, and granian may then kill what is left of it: harmless, its store is closed.)"""

from __future__ import annotations

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from openrooms.cli.server import WORKER_STOP_SECONDS
from tests.support import Server, running_server

KILLED = "refused to gracefully stop"
STOPPED = "stopped: its background work ended, its store closed"
LONG_POLL = "/events?api-version=2026-11-01-openrooms&wait=30"


def wait_for_long_poll_in_flight(server: Server) -> None:
    """The long-poll's request has reached the app once the connection is in; a short pause leaves it time to."""
    time.sleep(0.5)


def stop(server: Server) -> None:
    # uvicorn serving in `serve`'s own process ends as its signal asks (uvicorn raises it again once stopped)
    assert server.stop(signal.SIGTERM, timeout=WORKER_STOP_SECONDS + 25) in (0, -signal.SIGTERM), server.log()


def assert_shut_down_before_any_kill(log: str) -> None:
    assert STOPPED in log, log
    killed = [log.find(line) for line in (KILLED, "killing worker") if line in log]
    assert all(at > log.find(STOPPED) for at in killed), log


@pytest.mark.parametrize("server_name", ["granian", "uvicorn"])
def test_a_stop_answers_an_open_long_poll_and_runs_the_shutdown(tmp_path: Path, server_name: str) -> None:
    with running_server(tmp_path, "--server", server_name, tls=False) as server, ThreadPoolExecutor(1) as pool:
        polling = pool.submit(server.request, "GET", LONG_POLL)
        wait_for_long_poll_in_flight(server)
        stop(server)
        answer = polling.result(timeout=30)
    # Answered by the app, not cut by a kill (the long-poll would have waited 30 s).
    assert answer.status_code == 200, answer.text
    assert answer.json()["value"] == [] and "nextLink" in answer.json()
    assert_shut_down_before_any_kill(server.log())


def test_a_stop_drops_a_half_sent_request_head(tmp_path: Path) -> None:
    with running_server(tmp_path, tls=False) as server, socket.create_connection(("127.0.0.1", server.port)) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends its head
        stop(server)
    assert_shut_down_before_any_kill(server.log())
