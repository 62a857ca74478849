"""Servers under test and the load generator, with what /proc says about their CPU and memory."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from openrooms.config import event_loop
from openrooms.testing import wait_until_healthy

BENCH_DIR = Path(__file__).resolve().parent
ROTATE_LUA = BENCH_DIR / "rotate.lua"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    return text[text.rindex(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (granian runs its workers as child processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes (all their threads), from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    return total


class RssSampler:
    """Samples the summed RSS of a process tree until stopped; keeps the peak."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self._root, self._interval = root, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        pids = process_tree(self._root)
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(pids))
            self._stop.wait(self._interval)
        self.peak = max(self.peak, rss_bytes(process_tree(self._root)))


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    @property
    def pids(self) -> list[int]:
        return process_tree(self.process.pid)


def _wait_listening(server: RunningServer, timeout: float = 60) -> None:
    def exited() -> str | None:
        if server.process.poll() is None:
            return None
        return f"server exited with {server.process.returncode}:\n{server.log_path.read_text()}"

    try:
        wait_until_healthy(f"http://{server.host}:{server.port}/healthz", alive=exited, timeout=timeout)
    except RuntimeError:
        if server.process.poll() is not None:
            raise
        raise RuntimeError(f"server did not start:\n{server.log_path.read_text()}") from None


@contextlib.contextmanager
def serve(command: list[str], port: int, log_path: Path, cwd: Path | None = None) -> Iterator[RunningServer]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROOMS_")}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    server = RunningServer(process, "127.0.0.1", port, log_path)
    try:
        _wait_listening(server)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                for pid in reversed(process_tree(process.pid)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait()


def openrooms_command(port: int, location: Path, workers: int, database_url: str | None = None) -> list[str]:
    command = [str(Path(sys.executable).with_name("openrooms")), "serve", "--no-tls", "--silent",
               "--host", "127.0.0.1", "--port", str(port), "--location", str(location), "--workers", str(workers)]
    if database_url:
        command += ["--database-url", database_url]
    return command


def baseline_command(port: int, workers: int) -> list[str]:
    # the same server and settings `openrooms serve` uses: granian, ASGI, N workers, its event loop, no access log
    return [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--loop", event_loop(), "--log-level", "warning", "--no-access-log",
            "bench.baseline_app:app"]


@dataclass
class LoadResult:
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # non-2xx/3xx answers + socket errors + timeouts
    server_cpu_cores: float  # CPU seconds of the server processes per second of wall time
    server_peak_rss_mb: float
    generator_cpu_cores: float


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: `make bench` installs it (apt-get install -y wrk)")
    return path


def run_wrk(server: RunningServer, pool: Path, *, seconds: float, connections: int, threads: int = 1) -> LoadResult:
    """Drive `server` with the pre-signed requests of `pool` for `seconds`, measuring the server from /proc."""
    command = [wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
               "-s", str(ROTATE_LUA), f"http://{server.host}:{server.port}", "--", str(pool)]
    pids = server.pids
    with RssSampler(server.process.pid) as rss:
        cpu_before, started = cpu_seconds(pids), time.monotonic()
        wrk = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert wrk.stdout is not None
        output = wrk.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(wrk.pid, 0)
        wall = time.monotonic() - started
        cpu_after = cpu_seconds(pids)
    wrk.returncode = os.waitstatus_to_exitcode(status)
    line = next((ln for ln in output.splitlines() if ln.startswith("WRK-JSON ")), None)
    if wrk.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({wrk.returncode}):\n{output}")
    summary = json.loads(line.removeprefix("WRK-JSON "))
    duration = summary["duration_us"] / 1e6
    errors = sum(summary[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return LoadResult(
        requests=summary["requests"],
        seconds=round(duration, 3),
        requests_per_second=round(summary["requests"] / duration, 1),
        p50_ms=summary["p50_us"] / 1000,
        p90_ms=summary["p90_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        max_ms=summary["max_us"] / 1000,
        errors=errors,
        server_cpu_cores=round((cpu_after - cpu_before) / wall, 3),
        server_peak_rss_mb=round(rss.peak / 2**20, 1),
        generator_cpu_cores=round((usage.ru_utime + usage.ru_stime) / wall, 3),
    )
