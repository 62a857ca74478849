"""The HTTP server `openrooms serve` runs (granian, or uvicorn), and how its worker processes stop.

Stopping is bounded and leaves nothing behind:
- SIGTERM or SIGINT asks every worker to stop; a worker still running `WORKER_STOP_SECONDS` later is killed
  (granian's `workers_kill_timeout`; for uvicorn's supervisor, the same bound added here).
- A worker dies with the process that started it (Linux `PR_SET_PDEATHSIG`), so killing `serve` outright
  leaves no worker serving on its port; the webhook delivery process too (`delivery`), which `serve` restarts
  should it exit while `serve` runs, and no more once the server has begun to stop.
- A granian worker is forked with its parent's signal handlers, which only tell the parent to stop: until the
  worker installs its own, a stop it is sent would be lost and the parent would wait for it forever. The worker
  therefore takes the default action (exit) until then, and exits at once if a stop came before that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from openrooms.config import Settings, event_loop

if TYPE_CHECKING:
    from openrooms.cli.delivery import Supervisor
    from openrooms.http.pipeline import Pipeline

# How long a worker may take to stop (finish its requests, close its store) before it is killed.
WORKER_STOP_SECONDS = 5
# How long a client may take to send a request's head (granian): a slow or half-sent one is dropped before a stop
# would have to kill the worker for it.
HEADER_READ_SECONDS = 3
# The pid of the `serve` process, for its workers: set by `run`, read by `worker_app`.
SERVE_PID_ENV = "_OPENROOMS_SERVE_PID"
_TARGET = "openrooms.cli.server:worker_app"
log = logging.getLogger("openrooms")


def run(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; `settings` reach the workers through the environment."""
    from openrooms.cli import delivery
    from openrooms.logs import configure_logging

    configure_logging(silent=settings.silent, json_lines=settings.log_format == "json")  # serve's own lines
    os.environ[SERVE_PID_ENV] = str(os.getpid())
    # The webhook delivery process (cli/delivery.py), restarted should it exit, stopped after the workers.
    with delivery.running(settings) as supervisor:
        if settings.server == "uvicorn":
            _run_uvicorn(settings, supervisor)
        else:
            _run_granian(settings, supervisor)


def worker_app() -> Pipeline:
    """The app factory each server worker calls first: bind the worker to `serve`'s process, then build the app."""
    _bind_to_serve(os.environ.get("OPENROOMS_SERVER", "granian"))
    from openrooms.http.app import app_from_env

    return app_from_env()


def _bind_to_serve(server: str) -> None:
    serve_pid = int(os.environ.get(SERVE_PID_ENV) or 0)
    if serve_pid in (0, os.getpid()):  # not started by `serve`, or serving in its process (one uvicorn worker)
        return
    if server == "granian":
        inherited = signal.getsignal(signal.SIGTERM)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        # The inherited handler is the parent server's: it notes a stop on its own (here: copied) state.
        if getattr(getattr(inherited, "__self__", None), "interrupt_signal", False) is True:
            os._exit(0)
    from openrooms.cli.delivery import die_with_parent

    die_with_parent()
    if os.getppid() != serve_pid:  # `serve` ended before this worker could bind itself to it
        os._exit(0)


def _run_granian(settings: Settings, supervisor: Supervisor | None) -> None:
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    server = Server(
        _TARGET, address=settings.host, port=settings.port, interface=Interfaces.ASGI, workers=settings.workers,
        factory=True, loop=Loops(event_loop()), log_level=LogLevels.warning, log_access=False,
        ssl_cert=settings.cert if settings.tls else None, ssl_key=settings.key if settings.tls else None,
        workers_kill_timeout=WORKER_STOP_SECONDS,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_SECONDS * 1000),
    )
    if supervisor is not None:  # granian notes SIGINT and SIGTERM there, then stops its workers
        supervisor.shutting_down_when(lambda: getattr(server, "interrupt_signal", False) is True)
    server.serve()


def _run_uvicorn(settings: Settings, supervisor: Supervisor | None) -> None:
    import uvicorn

    options: dict[str, Any] = dict(
        factory=True, host=settings.host, port=settings.port, workers=settings.workers,
        ssl_certfile=str(settings.cert) if settings.tls else None,
        ssl_keyfile=str(settings.key) if settings.tls else None,
        access_log=False, log_level="warning", server_header=False, loop=event_loop(),
        timeout_graceful_shutdown=WORKER_STOP_SECONDS,
    )
    if settings.workers == 1:  # one process: uvicorn's own graceful-shutdown timeout bounds the stop
        server = uvicorn.Server(uvicorn.Config(_TARGET, **options))
        if supervisor is not None:
            supervisor.shutting_down_when(lambda: server.should_exit is True)

        def stop_asked(sig: int, frame: object) -> None:
            # Before uvicorn has taken SIGTERM over: stop here (the delivery process is stopped on the way out).
            # After its graceful shutdown, uvicorn raises the signal again for the handler it found, this one:
            # the stop is done, and `serve` goes on to stop the delivery process and exit 0, as with granian.
            if not server.should_exit:
                raise SystemExit(0)

        signal.signal(signal.SIGTERM, stop_asked)
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        if not server.started:  # as uvicorn.run ends
            from uvicorn.config import STARTUP_FAILURE

            sys.exit(STARTUP_FAILURE)
        return
    from uvicorn.supervisors.multiprocess import Multiprocess

    class BoundedMultiprocess(Multiprocess):
        """uvicorn's supervisor, waiting at most `WORKER_STOP_SECONDS` for its workers before killing them."""

        def join_all(self) -> None:
            deadline = time.monotonic() + WORKER_STOP_SECONDS
            for worker in self.processes:
                worker.process.join(max(deadline - time.monotonic(), 0.001))
                if worker.process.is_alive():
                    log.warning("killing worker %s: it did not stop within %s s", worker.pid, WORKER_STOP_SECONDS)
                    worker.kill()
                    worker.process.join()

    config = uvicorn.Config(_TARGET, **options)
    processes = BoundedMultiprocess(config, sockets=[config.bind_socket()])
    if supervisor is not None:
        supervisor.shutting_down_when(processes.should_exit.is_set)
    with contextlib.suppress(KeyboardInterrupt):
        processes.run()
