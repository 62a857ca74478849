"""The delivery process of `openrooms serve`: the webhook dispatcher, beside the serving processes.

`serve` starts one (`running`), whatever the number of workers, unless webhooks are off (`--no-webhooks`) or the
database is in memory (`--in-memory`: one process, which delivers itself). It runs at a lower CPU priority
(`NICE`): deliveries never take the processor from requests; under a load that takes every core they fall behind
and catch up when it eases. It ends:
- when `serve` stops: `serve` asks it (SIGTERM) after its workers, and kills it if it is not gone within
  `STOP_SECONDS`;
- when `serve` dies however it does (SIGKILL too): Linux kills it with its parent (`PR_SET_PDEATHSIG`), and on
  any system it stops when the pipe from `serve` ends (`serve` holds its only writing end), so that a server
  killed outright delivers no more and another instance takes its queues over once their leases run out.

`serve` supervises it (`Supervisor`): one that exits while `serve` runs (killed by a signal, SIGKILL of the OOM
killer too, or failing with an exception) is started again after `restart_delay` (1 s, doubling up to 30 s, and
1 s again once one has run `RESTART_RESET_SECONDS`), each exit and restart logged and counted in
`openrooms_delivery_process_restarts_total`. Never once `serve` is stopping, nor after an exit 0: the delivery
process exits 0 only when asked to stop (SIGTERM or SIGINT, which a terminal's Ctrl-C and a service manager's stop
send to every process of `serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

from openrooms.config import Settings, event_loop

log = logging.getLogger("openrooms")
NICE = 10  # added to the delivery process's niceness
STOP_SECONDS = 5
RESTART_FIRST_SECONDS = 1.0  # the wait before restarting a delivery process that exited, doubled at each exit...
RESTART_MAX_SECONDS = 30.0  # ... up to this
RESTART_RESET_SECONDS = 60.0  # and back to the first after one that had run this long
# The read end of the pipe from `serve`, and `serve`'s pid, for the delivery process.
PARENT_PIPE_ENV = "_OPENROOMS_DELIVERY_PIPE"
PARENT_PID_ENV = "_OPENROOMS_DELIVERY_PARENT"
_PR_SET_PDEATHSIG = 1


def needed(settings: Settings) -> bool:
    return settings.webhooks and not settings.in_memory


def restart_delay(previous: float | None, ran_seconds: float) -> float:
    """How long to wait before restarting a delivery process that exited after `ran_seconds`, the wait before
    the previous restart having been `previous` (None: none yet)."""
    if previous is None or ran_seconds >= RESTART_RESET_SECONDS:
        return RESTART_FIRST_SECONDS
    return min(previous * 2, RESTART_MAX_SECONDS)


def exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


class Supervisor:
    """The delivery process of one `serve`, started again when it exits while `serve` runs (see the module's
    docstring). A thread of its own waits for it and starts the next one: Linux ties each process it starts to
    that thread (`PR_SET_PDEATHSIG`), which therefore ends only once no process it started is running."""

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        self._start = start
        self._lock = threading.Lock()  # `_process` and `_stopping`: a restart and `stop` never cross
        self._stopping = threading.Event()
        self._shutting_down: Callable[[], bool] = lambda: False
        self._process = start()
        self.restarts = 0
        self._thread = threading.Thread(target=self._supervise, name="openrooms-delivery", daemon=True)
        self._thread.start()

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The delivery process running now (or the last one)."""
        with self._lock:
            return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    def shutting_down_when(self, shutting_down: Callable[[], bool]) -> None:
        """Restart nothing once `shutting_down()` (the server's own stop, before the workers are gone)."""
        self._shutting_down = shutting_down

    def _stopped(self) -> bool:
        return self._stopping.is_set() or self._shutting_down()

    def _supervise(self) -> None:
        from openrooms.http.metrics import DELIVERY_RESTARTS

        process = self._process
        started = time.monotonic()
        delay: float | None = None
        while True:
            returncode = process.wait()
            ran = time.monotonic() - started
            if self._stopped():
                return
            if returncode == 0:  # asked to stop, by a signal of its own: its sender meant it
                # A stop sent to every process of `serve` may reach the server a moment after this one.
                if self._stopping.wait(1) or self._stopped():
                    return
                log.warning("the delivery process %s stopped when asked (exit code 0) while serve runs: it is not "
                            "restarted, and webhooks are not delivered until serve restarts", process.pid)
                return
            delay = restart_delay(delay, ran)
            log.warning("the delivery process %s %s after %.1f s: webhooks are not delivered until it is restarted, "
                        "in %.0f s", process.pid, exit_description(returncode), ran, delay)
            while True:
                if self._stopping.wait(delay):
                    return
                with self._lock:
                    if self._stopped():
                        return
                    try:
                        process = self._process = self._start()
                    except OSError as exc:
                        delay = restart_delay(delay, 0)
                        log.error("could not restart the delivery process: %s; trying again in %.0f s", exc, delay)
                        continue
                    self.restarts += 1
                break
            started = time.monotonic()
            DELIVERY_RESTARTS.inc()
            log.warning("restarted the delivery process: pid %s (restart %s of this serve)", process.pid,
                        self.restarts)

    def stop(self) -> None:
        """Stop the delivery process running now (by its pid, see `stop`), and restart none after it."""
        with self._lock:
            self._stopping.set()
            process = self._process
        stop(process)
        self._thread.join()


@contextlib.contextmanager
def running(settings: Settings) -> Iterator[Supervisor | None]:
    """Run the delivery process, supervised, while the block runs (None when `settings` need none); its wake
    socket's path is in the environment the workers get (`http.delivery.WAKE_ENV`)."""
    from openrooms.http.delivery import WAKE_ENV

    if not needed(settings):
        yield None
        return
    directory = tempfile.mkdtemp(prefix="openrooms-delivery-")
    previous = os.environ.get(WAKE_ENV)
    os.environ[WAKE_ENV] = os.path.join(directory, "wake")
    # Every delivery process gets the read end; `serve` keeps the only writing end (not inherited).
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, False)
    environment = {**os.environ, **settings.to_env(), PARENT_PIPE_ENV: str(read_end),
                   PARENT_PID_ENV: str(os.getpid())}

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "openrooms.cli.delivery"], pass_fds=(read_end,),
                                env=environment)

    try:
        supervisor = Supervisor(start)
    except BaseException:
        _restore(WAKE_ENV, previous)
        os.close(read_end)
        os.close(write_end)
        shutil.rmtree(directory, ignore_errors=True)
        raise
    try:
        yield supervisor
    finally:
        supervisor.stop()
        _restore(WAKE_ENV, previous)
        os.close(read_end)
        os.close(write_end)
        shutil.rmtree(directory, ignore_errors=True)


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ask it to stop, by its pid; kill it if it has not within `STOP_SECONDS`."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        log.warning("killing the delivery process %s: it did not stop within %s s", process.pid, STOP_SECONDS)
        process.kill()
        process.wait()


def die_with_parent() -> None:
    """Linux: be sent SIGKILL when the parent (the thread that started this process) ends."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("could not bind the process to its parent: %s", os.strerror(ctypes.get_errno()))


def main() -> None:
    die_with_parent()
    parent = int(os.environ.get(PARENT_PID_ENV) or 0)
    if parent and os.getppid() != parent:  # `serve` ended before this process could bind itself to it
        os._exit(0)
    with contextlib.suppress(OSError):
        os.nice(NICE)
    from openrooms.http.delivery import WAKE_ENV, deliver
    from openrooms.logs import configure_logging

    settings = Settings.from_env().validated()
    configure_logging(silent=settings.silent, json_lines=settings.log_format == "json")
    pipe = int(os.environ[PARENT_PIPE_ENV]) if os.environ.get(PARENT_PIPE_ENV) else None

    async def delivering() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if pipe is not None:  # readable once `serve` is gone: the end of the pipe
            loop.add_reader(pipe, stop.set)
        await deliver(settings, os.environ.get(WAKE_ENV) or None, stop)

    loop_factory = None
    if event_loop() == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(delivering())


if __name__ == "__main__":
    main()
