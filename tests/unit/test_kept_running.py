"""The app's lifespan background tasks (`http.app.KeptRunning`): a failure is logged with its traceback and the
task starts again after a short delay; never once it is stopped, nor once the server has begun to stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from openrooms.http.app import KeptRunning
from openrooms.service.stopping import STOPPING


class Flaky:
    """Fails on its first run, then runs until cancelled."""

    def __init__(self, failures: int = 1) -> None:
        self.runs = 0
        self.failures = failures
        self.running = asyncio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise RuntimeError(f"boom {self.runs}")
        self.running.set()
        await asyncio.Event().wait()


async def test_a_failed_task_is_logged_with_its_traceback_and_started_again(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky()
    kept = KeptRunning("the flaky loop", flaky, delay=0.01)
    with caplog.at_level(logging.ERROR, "openrooms"):
        await asyncio.wait_for(flaky.running.wait(), 10)
    await kept.stop()
    assert (flaky.runs, kept.restarts) == (2, 1)
    [record] = [r for r in caplog.records if "the flaky loop failed" in r.getMessage()]
    assert record.exc_info is not None and str(record.exc_info[1]) == "boom 1"
    assert "RuntimeError: boom 1" in caplog.text  # the traceback is in the log


async def test_no_restart_once_the_server_stops_or_the_task_is_stopped() -> None:
    STOPPING.begin()
    flaky = Flaky()
    kept = KeptRunning("the flaky loop", flaky, delay=0.01)
    await asyncio.sleep(0.1)
    assert (flaky.runs, kept.restarts) == (1, 0)
    await kept.stop()

    STOPPING.reset()
    flaky = Flaky()
    kept = KeptRunning("the flaky loop", flaky, delay=0.05)
    await asyncio.sleep(0)  # it fails; its restart is due later
    await kept.stop()
    await asyncio.sleep(0.1)
    assert (flaky.runs, kept.restarts) == (1, 0)


async def test_a_stop_wakes_its_waiters() -> None:
    waiting = asyncio.create_task(STOPPING.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    STOPPING.begin()
    await asyncio.wait_for(waiting, 5)
