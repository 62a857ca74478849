"""A browser-like client of the console in process: cookies kept, forms posted with the page's CSRF token."""

from __future__ import annotations

import re
from typing import Any

import httpx

from openrooms.console.session import COOKIE
from openrooms.testing import Emulator

HOST = "openrooms.test"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    match = _CSRF.search(page.text)
    assert match is not None, page.text
    return match.group(1)


class ConsoleClient:
    def __init__(self, emulator: Emulator, scheme: str = "https", *, address: str = "127.0.0.1") -> None:
        self.emulator = emulator
        self.client: httpx.AsyncClient = emulator.run(self._open(f"{scheme}://{HOST}", address))
        self.csrf = ""

    async def _open(self, base_url: str, address: str) -> httpx.AsyncClient:
        """A client whose requests come from `address` (what the console counts failed sign-ins by)."""
        transport = httpx.ASGITransport(app=self.emulator.asgi, client=(address, 50000))
        return httpx.AsyncClient(transport=transport, base_url=base_url)

    @property
    def session(self) -> str | None:
        """The session cookie's value, if any."""
        return self.client.cookies.get(COOKIE)

    def use_session(self, token: str) -> None:
        """Send `token` as the session cookie (a copy of another browser's)."""
        self.client.cookies.set(COOKIE, token, domain=HOST, path="/console")

    def close(self) -> None:
        self.emulator.run(self.client.aclose())

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            response = await self.client.request(method, path, **options)
            await response.aread()
            return response

        return self.emulator.run(send())

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)

    def post(self, path: str, data: dict[str, Any], *, csrf: bool = True, **options: Any) -> httpx.Response:
        return self.request("POST", path, data={**({"csrf": self.csrf} if csrf else {}), **data}, **options)

    def sign_in(self, key: str) -> httpx.Response:
        form = self.get("/console/sign-in")
        response = self.request("POST", "/console/sign-in", data={"csrf": csrf_of(form), "access_key": key})
        if response.status_code == 303:
            self.csrf = csrf_of(self.get("/console/"))
        return response
