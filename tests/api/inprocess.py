"""The app in process, reached through httpx's ASGI transport: raw signed requests, and the official SDKs'
clients, whose azure-core pipeline (signing, retries, deserialisation) runs unchanged over a transport that
hands each request to the app instead of to a socket."""

from __future__ import annotations

import copy
import io
from typing import Any

import httpx
import requests
from azure.core.pipeline.transport import AsyncioRequestsTransport, RequestsTransport
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from openrooms.testing import Emulator, sign_headers

HOST = "openrooms.test"


class InProcess:
    """An emulator's app (run with serve=False) with the interface of a server process (`request`, `endpoint`,
    `connection_string`), for the tests of wire rules."""

    tls = True

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.access_key = emulator.access_key
        self.endpoint = f"https://{HOST}/"
        self.connection_string = f"endpoint={self.endpoint};accesskey={self.access_key}"
        self._client: httpx.AsyncClient = emulator.run(self._open())

    async def _open(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.emulator.asgi), base_url=self.endpoint)

    def close(self) -> None:
        self.emulator.run(self._client.aclose())

    def with_key(self, key: str) -> InProcess:
        """The same app, reached by clients that sign with `key`."""
        other = copy.copy(self)
        other.access_key = key
        other.connection_string = f"endpoint={self.endpoint};accesskey={key}"
        return other

    def exchange(self, method: str, url: str, headers: dict[str, str], content: bytes) -> httpx.Response:
        """One request through the ASGI transport, on the app's event loop."""
        return self.emulator.run(self._send(method, url, headers, content))

    async def _send(self, method: str, url: str, headers: dict[str, str], content: bytes) -> httpx.Response:
        response = await self._client.request(method, url, headers=headers, content=content)
        await response.aread()
        return response

    def request(self, method: str, path_and_query: str, body: bytes = b"", headers: dict[str, str] | None = None,
                sign: bool = True, key: str | None = None) -> httpx.Response:
        """A raw signed request, for what the SDKs cannot send (as `tests.support.Server.request`)."""
        all_headers = {"content-type": "application/json"}
        if sign:
            all_headers.update(sign_headers(method, path_and_query, HOST, body, key or self.access_key))
        all_headers.update(headers or {})
        return self.exchange(method, self.endpoint.rstrip("/") + path_and_query, all_headers, body)

    def transport(self, flavour: str) -> RequestsTransport | AsyncioRequestsTransport:
        """An azure-core transport for a sync or an async SDK client: requests' session, whose adapter is the app."""
        session = requests.Session()
        session.mount(self.endpoint, _AsgiAdapter(self))
        if flavour == "sync":
            return RequestsTransport(session=session, session_owner=True)
        return AsyncioRequestsTransport(session=session, session_owner=True)

    def sdk_options(self, flavour: str) -> dict[str, Any]:
        return {"transport": self.transport(flavour)}


class _AsgiAdapter(BaseAdapter):
    """A requests adapter that answers from the app: what azure-core sends goes out as it would on a socket."""

    def __init__(self, target: InProcess) -> None:
        super().__init__()
        self._target = target

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        body = request.body or b""
        content = body.encode() if isinstance(body, str) else bytes(body)  # type: ignore[arg-type]
        assert request.method is not None and request.url is not None
        headers = {name: value if isinstance(value, str) else value.decode("latin-1")
                   for name, value in request.headers.items()}
        answer = self._target.exchange(request.method, request.url, headers, content)
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(answer.headers)
        response.reason = answer.reason_phrase
        response.url = request.url
        response.request = request
        response.encoding = answer.encoding
        response.raw = io.BytesIO(answer.content)
        response._content = answer.content
        response._content_consumed = True
        return response

    def close(self) -> None:
        pass
