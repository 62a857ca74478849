"""The ACS resource being left, read through its public Rooms API (api-version 2025-03-13).

Requests are signed with the Rooms SDK's own HMAC policy and sent through an azure-core pipeline, whose retry
policy retries throttling (429, honouring Retry-After), 5xx and network errors with exponential backoff. The JSON
is read here rather than by the SDK's models so that timestamps keep all seven fractional digits ACS sends
(Python's datetime keeps six).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from azure.communication.rooms._shared.policy import HMACCredentialsPolicy
from azure.core import AsyncPipelineClient
from azure.core.exceptions import AzureError
from azure.core.pipeline.policies import AsyncRetryPolicy, HeadersPolicy, UserAgentPolicy
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import HttpRequest

from openrooms import __version__
from openrooms.service import timestamps
from openrooms.service.model import Room

API_VERSION = "2025-03-13"


class SourceError(Exception):
    """The source could not be read (after the retries). Its message never contains the access key."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Connection:
    endpoint: str  # https://host/ (with the trailing slash)
    access_key: str

    def __repr__(self) -> str:  # the key never reaches a log or a traceback
        return f"Connection(endpoint={self.endpoint!r})"


def parse_connection_string(text: str) -> Connection:
    """`endpoint=https://...;accesskey=...`, as the Azure portal shows it."""
    parts: dict[str, str] = {}
    for element in text.strip().split(";"):
        name, _, value = element.partition("=")
        if name.strip():
            parts[name.strip().lower()] = value.strip()
    endpoint, key = parts.get("endpoint"), parts.get("accesskey")
    if not endpoint or not key:
        raise ValueError("the source connection string must be endpoint=https://...;accesskey=...")
    scheme = urlsplit(endpoint).scheme
    if scheme not in ("http", "https") or not urlsplit(endpoint).netloc:
        raise ValueError("the source connection string's endpoint must be an http(s) URL")
    return Connection(endpoint.rstrip("/") + "/", key)


@dataclass(frozen=True, slots=True)
class Retries:
    """How the source's throttling and failures are retried (azure-core's RetryPolicy settings)."""

    total: int = 10
    backoff_factor: float = 0.8  # seconds; doubled on each retry, up to backoff_max
    backoff_max: int = 60


@dataclass(frozen=True, slots=True)
class SourceParticipant:
    raw_id: str
    role: str  # as the source names it


class AcsSource:
    """An async reader of one ACS resource's rooms and rosters."""

    def __init__(self, connection: Connection, retries: Retries = Retries(), *, connections: int = 32,
                 ca_file: Path | None = None) -> None:
        self._connection = connection
        self._ca_file = ca_file
        self._retries = retries
        self._connections = connections
        self.requests = 0  # answered requests, retries included (for the benchmark)
        self._session: Any = None
        self._client: AsyncPipelineClient[HttpRequest, Any] | None = None

    @property
    def endpoint(self) -> str:
        return self._connection.endpoint

    async def __aenter__(self) -> AcsSource:
        import aiohttp

        policies: list[Any] = [
            HeadersPolicy({"Accept": "application/json"}),
            UserAgentPolicy(f"openrooms-migrate/{__version__}"),
            AsyncRetryPolicy(retry_total=self._retries.total, retry_backoff_factor=self._retries.backoff_factor,
                             retry_backoff_max=self._retries.backoff_max),
            # After the retry policy: every attempt is signed afresh (its x-ms-date).
            HMACCredentialsPolicy(self._connection.endpoint, self._connection.access_key, decode_url=True),
        ]
        tls = True if self._ca_file is None else ssl.create_default_context(cafile=str(self._ca_file))
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._connections, ssl=tls))
        transport = AioHttpTransport(session=self._session, session_owner=False)
        self._client = AsyncPipelineClient(base_url=self._connection.endpoint, policies=policies,
                                           transport=transport)
        await self._client.__aenter__()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._client is not None:
            await self._client.__aexit__(kind, exc, tb)
        if self._session is not None:
            await self._session.close()

    async def _get(self, url: str) -> dict[str, Any]:
        assert self._client is not None, "use the source as `async with source:`"
        try:
            response = await self._client.send_request(HttpRequest("GET", url))
            body = await response.read()
        except AzureError as exc:
            raise SourceError(f"GET {_path(url)}: {type(exc).__name__}: {exc.message}") from None
        self.requests += 1
        if response.status_code != 200:
            raise SourceError(f"GET {_path(url)}: {response.status_code} {_error_text(body)}", response.status_code)
        answer: dict[str, Any] = json.loads(body)
        return answer

    async def _pages(self, path: str) -> list[dict[str, Any]]:
        # No page size is asked for: the published API has no such parameter; the service's default page is used.
        url: str | None = f"{self._connection.endpoint}{path}?api-version={API_VERSION}"
        items: list[dict[str, Any]] = []
        while url is not None:
            page = await self._get(url)
            items.extend(page.get("value") or [])
            next_link = page.get("nextLink")
            url = self._next_url(next_link) if next_link else None
        return items

    def _next_url(self, next_link: str) -> str:
        """The next page, asked of the endpoint we were given (a proxy in front of ACS keeps working), with
        our api-version."""
        parts = urlsplit(next_link)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "api-version"]
        query.append(("api-version", API_VERSION))
        return f"{self._connection.endpoint}{parts.path.lstrip('/')}?{urlencode(query)}"

    async def rooms(self) -> list[Room]:
        """Every room the resource lists (rooms whose window has not ended)."""
        return [_room(item) for item in await self._pages("rooms")]

    async def roster(self, room_id: str) -> list[SourceParticipant] | None:
        """The room's participants; None if the room is gone (deleted since it was listed)."""
        try:
            items = await self._pages(f"rooms/{room_id}/participants")
        except SourceError as exc:
            if exc.status == 404:
                return None
            raise
        return [SourceParticipant(str(item["rawId"]), str(item.get("role") or "Attendee")) for item in items]


def _room(item: dict[str, Any]) -> Room:
    def ticks(name: str) -> int:
        value = timestamps.parse(str(item.get(name, "")))
        if value is None:
            raise SourceError(f"room {item.get('id')}: {name} {item.get(name)!r} is not a timestamp")
        return value

    return Room(str(item["id"]), ticks("createdAt"), ticks("validFrom"), ticks("validUntil"),
                bool(item.get("pstnDialOutEnabled", False)))


def _path(url: str) -> str:
    return urlsplit(url).path


def _error_text(body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
        return f"{error.get('code')}: {error.get('message')}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return body[:200].decode(errors="replace")
