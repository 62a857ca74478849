"""A loopback HTTP proxy in front of the source server that answers some requests itself: throttling (429 with
Retry-After), server errors (5xx), or holding them unanswered (so that a test can kill the copy mid-run)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.support import free_port

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


@dataclass
class Faults:
    """Each distinct request (method and URL) is answered, on its first attempt, 429 with Retry-After when
    `throttle` and, on the next, 503 or 500 when `fail`; then it is forwarded. With `always_fail`, every attempt
    gets a 500."""

    throttle: bool = True
    fail: bool = True
    always_fail: bool = False
    retry_after: str = "0"
    # Hold every participants request after this many (None: never); `held` is set when one is held.
    hold_after: int | None = None


@dataclass
class Proxy:
    url: str
    faults: Faults
    injected: dict[int, int] = field(default_factory=dict)  # status -> how many
    forwarded: int = 0
    held: threading.Event = field(default_factory=threading.Event)

    def connection_string(self, access_key: str) -> str:
        return f"endpoint={self.url};accesskey={access_key}"


@contextmanager
def fault_proxy(upstream: str, faults: Faults, ca: str | None = None) -> Iterator[Proxy]:
    port = free_port()
    proxy = Proxy(f"http://127.0.0.1:{port}/", faults)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    state = {"rosters": 0}
    attempts: dict[str, int] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        key = f"{request.method} {request.path_qs}"
        attempt = attempts[key] = attempts.get(key, 0) + 1
        if faults.throttle and attempt == 1:
            proxy.injected[429] = proxy.injected.get(429, 0) + 1
            return web.json_response({"error": {"code": "TooManyRequests", "message": "slow down"}}, status=429,
                                     headers={"Retry-After": faults.retry_after})
        if faults.always_fail or (faults.fail and attempt == 1 + faults.throttle):
            status = 503 if len(attempts) % 2 else 500
            proxy.injected[status] = proxy.injected.get(status, 0) + 1
            return web.json_response({"error": {"code": "InternalError", "message": "injected"}}, status=status)
        if request.path.endswith("/participants"):
            state["rosters"] += 1
            if faults.hold_after is not None and state["rosters"] > faults.hold_after:
                proxy.held.set()
                await stop.wait()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with session.request(request.method, upstream.rstrip("/") + request.path_qs, headers=headers,
                                   data=await request.read()) as answer:
            body = await answer.read()
            proxy.forwarded += 1
            return web.Response(body=body, status=answer.status,
                                headers={k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP})

    async def serve() -> None:
        nonlocal session
        tls = True if ca is None else ssl.create_default_context(cafile=ca)
        session = aiohttp.ClientSession(auto_decompress=False, connector=aiohttp.TCPConnector(ssl=tls))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await stop.wait()
        await runner.cleanup()
        await session.close()

    session: aiohttp.ClientSession
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
