"""The worker-wide "stopping" signal: set as soon as the server begins to stop (SIGTERM or SIGINT reach the worker),
before its connections drain and long before the app's lifespan shutdown.

What holds a connection open without end reads it, so that a stop does not wait for it (nor get the worker killed):
a long-poll of the event log answers at once with what it has (`event_log.EventsService.read`), the console's event
stream ends, a room call's WebSocket leaves the call through its normal path (`http/calls.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopping:
    def __init__(self) -> None:
        self._set = False
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def is_set(self) -> bool:
        return self._set

    def begin(self) -> None:
        """Note the stop (from a signal handler, any thread, or the loop) and wake whoever waits for it."""
        self._set = True
        for loop, future in list(self._waiters):
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self) -> None:
        if self._set:
            return
        loop = asyncio.get_running_loop()
        entry = (loop, loop.create_future())
        self._waiters.add(entry)
        try:
            if not self._set:
                await entry[1]
        finally:
            self._waiters.discard(entry)

    def reset(self) -> None:
        """For tests in one process: forget a stop."""
        self._set = False

    @contextlib.contextmanager
    def noted_on_signals(self) -> Iterator[None]:
        """While inside: SIGTERM and SIGINT begin the stop, then go on to the handler the server installed (granian's
        and uvicorn's alike: a handler installed with the event loop's `add_signal_handler` still runs, as it is
        woken through the loop's wakeup fd). Outside the main thread (an app served in a test's thread) nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
        for sig, handler in previous.items():
            signal.signal(sig, self._chained(handler))
        try:
            yield
        finally:
            for sig, handler in previous.items():
                with contextlib.suppress(TypeError, ValueError):
                    signal.signal(sig, handler)

    def _chained(self, handler: Any) -> Callable[[int, FrameType | None], Any]:
        def on_signal(signum: int, frame: FrameType | None) -> Any:
            self.begin()
            if callable(handler):
                return handler(signum, frame)
            if handler == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
            return None

        return on_signal


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# The one signal of this process (a server worker).
STOPPING = Stopping()
