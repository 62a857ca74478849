"""A copy stopped anywhere (Ctrl-C, kill -9) is finished by the next run: nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import clean_env
from tests.migrate.conftest import Source, ok, start_source
from tests.migrate.proxy import Faults, fault_proxy

# The 10,000 rooms take about a minute to copy and verify on a shared 2-core machine: the tests use
# 1,000 and the benchmark (bench/migrate.py) 10,000.
ROOMS, PARTICIPANTS = 1000, 5000


@pytest.fixture
def bulk_source(tmp_path: Path) -> Iterator[Source]:
    yield from start_source(tmp_path / "source", ROOMS, PARTICIPANTS)


def room_count(location: Path) -> int:
    path = location / "openrooms.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return int(db.execute("SELECT count(*) FROM rooms").fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


def stopped_mid_run(source: Source, target: Path, sig: int, hold_after: int) -> int:
    """Run the copy as a process through a proxy that stops answering after `hold_after` rosters; once some
    rooms are in, send `sig`. The rooms it had copied."""
    with fault_proxy(source.server.endpoint, Faults(throttle=False, fail=False, hold_after=hold_after),
                     source.server.ca) as proxy:
        env = clean_env({"OPENROOMS_MIGRATE_SOURCE_CONNECTION_STRING": proxy.connection_string(
            source.server.access_key)})
        process = subprocess.Popen([sys.executable, "-m", "openrooms", "migrate", "from-acs", "--location",
                                    str(target)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proxy.held.wait(120), "the copy never reached the held request"
            deadline = time.monotonic() + 60
            while room_count(target) == 0 and time.monotonic() < deadline:  # waiting for a state, not a time
                time.sleep(0.05)
            os.kill(process.pid, sig)
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode != 0, err.decode()
    copied = room_count(target)
    assert 0 < copied < ROOMS
    return copied


def test_ctrl_c_then_kill_9_then_a_rerun_finishes(bulk_source: Source, tmp_path: Path) -> None:
    target = tmp_path / "target"
    after_ctrl_c = stopped_mid_run(bulk_source, target, signal.SIGINT, hold_after=200)
    after_kill = stopped_mid_run(bulk_source, target, signal.SIGKILL, hold_after=600)
    assert after_kill >= after_ctrl_c

    at = ["--location", str(target), *bulk_source.options]
    ok("from-acs", *at, "--report", str(tmp_path / "rerun.json"),
       connection_string=bulk_source.connection_string)
    rerun = json.loads((tmp_path / "rerun.json").read_text())
    assert rerun["rooms"]["created"] == ROOMS - after_kill
    assert rerun["rooms"]["unchanged"] == after_kill
    assert rerun["rooms"]["updated"] == 0  # no room was left half copied
    assert room_count(target) == ROOMS
    verified = ok("verify", *at, connection_string=bulk_source.connection_string)
    assert f"{ROOMS} rooms in the source; 0 differences" in verified.stdout
