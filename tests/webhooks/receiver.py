"""A real webhook receiver on loopback (aiohttp): answers both handshakes (or answers them wrongly), checks each
delivery's Standard Webhooks signature with the `standardwebhooks` package, and answers what the test says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook

from tests.support import loopback_site

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"


class Receiver:
    def __init__(self) -> None:
        self.url = ""
        self.secret: str | None = None  # set once the subscription is made: deliveries are verified with it
        self.deliveries: list[tuple[dict[str, str], bytes]] = []  # headers, body of each accepted delivery
        self.attempts = 0
        self.handshakes = 0
        # What to answer a delivery (its parsed body): a status; default 200.
        self.answer: Callable[[Any], int] = lambda body: 200
        self.wrong_handshake = False
        self.delay = 0.0
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "OPTIONS":
            self.handshakes += 1
            origin = request.headers.get("WebHook-Request-Origin", "")
            return web.Response(headers={"WebHook-Allowed-Origin": "elsewhere" if self.wrong_handshake else origin})
        raw = await request.read()
        body = json.loads(raw)
        if isinstance(body, list) and body and body[0].get("eventType") == VALIDATION_EVENT:
            self.handshakes += 1
            code = "wrong" if self.wrong_handshake else body[0]["data"]["validationCode"]
            return web.json_response({"validationResponse": code})
        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.answer(body)
        if status < 300:
            headers = {k.lower(): v for k, v in request.headers.items()}
            assert self.secret is not None
            Webhook(self.secret).verify(raw, headers)  # raises if the signature does not match
            self.deliveries.append((headers, raw))
            self.arrived.set()
        return web.Response(status=status)

    def events(self) -> list[Any]:
        """Every event delivered, in arrival order (an Event Grid array holds one or more)."""
        out: list[Any] = []
        for _, raw in self.deliveries:
            body = json.loads(raw)
            out += body if isinstance(body, list) else [body]
        return out

    async def wait_for(self, count: int, timeout: float = 20) -> list[Any]:
        async with asyncio.timeout(timeout):
            while len(self.events()) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events()


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/hook", receiver.handle)
    async with loopback_site(app) as origin:
        receiver.url = f"{origin}/hook"
        yield receiver
