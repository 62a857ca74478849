import collections
import contextlib
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from _pytest.nodeid import coerce_node_id
from hypothesis import settings as hypothesis_settings

# Every process the test session starts inherits this mark in its environment, so that processes left behind
# can be found at the end, among those of everything else running on the machine. (Not an OPENROOMS_
# variable: tests/support.py gives servers no OPENROOMS_ variables but their own.)
SESSION_MARK = "PYTEST_OPENROOMS_SESSION"

# No example has a time limit: how long a property takes on a loaded 2-core machine is no rule of openrooms
# (timings belong to bench/), and hypothesis' default 200 ms deadline fails such examples at random.
hypothesis_settings.register_profile("openrooms", deadline=None)
hypothesis_settings.load_profile("openrooms")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # schemathesis' items of one test share its node id under this pytest (their operation is only in the name):
    # a parallel run, which tells tests apart by node id, would run one of them. Give each its name's id.
    ids = collections.Counter(item.nodeid for item in items)
    for item in items:
        if ids[item.nodeid] > 1:
            item._id = coerce_node_id(f"{item.nodeid.rpartition('::')[0]}::{item.name}")
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


# Run in parallel (`make test`: pytest-xdist), the tests under each of these paths share one worker: the call tests,
# so that one network namespace, one Janus and one call server serve them all; the fuzzing, whose last check reads
# what the fuzzing recorded in its process; the console's browser tests, which share one server and one browser and
# rotate that server's keys last. Every other test goes to whichever worker is free.
SHARED_WORKER = {"tests/calls/": "calls", "tests/reliability/test_fuzz.py": "fuzz",
                 "tests/console/test_console_browser.py": "console"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class Scheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return next((group for path, group in SHARED_WORKER.items() if nodeid.startswith(path)), nodeid)

    return Scheduling(config, log)


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    # The workers of a parallel run keep the mark of the run that started them, so that the run checks them all.
    if not is_xdist_worker(config):
        os.environ[SESSION_MARK] = f"{os.getpid()}-{secrets.token_hex(8)}"


def marked_processes(mark: bytes, exclude: int) -> dict[int, str]:
    """Running processes (pid: command line) whose environment carries `mark` (NAME=value)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            if mark not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if command:  # a zombie has none: it is not running
            found[int(entry.name)] = command
    return found


@pytest.hookimpl(trylast=True)  # in a parallel run, after pytest-xdist has stopped its workers
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a process it started (a server, a worker, a client) is still running at its end;
    then end those processes, by pid. A parallel run checks once, at its end, for every worker's processes."""
    if is_xdist_worker(session.config):
        return
    mark = f"{SESSION_MARK}={os.environ[SESSION_MARK]}".encode()
    deadline = time.monotonic() + 5  # a process being stopped as the last test ends may take a moment
    while (left := marked_processes(mark, os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not left:
        return
    lines = [f"{len(left)} process(es) started by the tests are still running:"]
    lines += [f"  pid {pid}: {command}" for pid, command in sorted(left.items())]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_sep("=", "processes left behind", red=True)
        reporter.write_line("\n".join(lines))
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
