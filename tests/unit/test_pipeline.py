"""The request pipeline, driven in process: routing errors, the headers every answer carries, the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from openrooms.config import Settings
from openrooms.http import rooms
from openrooms.http.app import create_app
from openrooms.http.pipeline import Pipeline
from openrooms.store.sqlite import SqliteStore
from tests.support import sign_headers

HOST = "test"
V = "api-version=2025-03-13"


@pytest.fixture
async def app() -> AsyncIterator[Pipeline]:
    store = SqliteStore.open(None)
    yield create_app(Settings(in_memory=True), store=store)
    await store.close()


async def call(app: Pipeline, method: str, path_and_query: str, body: bytes = b"", **headers: str) -> httpx.Response:
    signed = {**sign_headers(method, path_and_query, HOST, body), **headers}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}") as client:
        return await client.request(method, path_and_query, content=body, headers=signed)


async def test_an_unknown_path_is_a_404_in_the_error_envelope(app: Pipeline) -> None:
    response = await call(app, "GET", f"/nothing/here?{V}")
    assert response.status_code == 404
    message = "The server cannot find the requested resource."
    assert response.json() == {"error": {"code": "NotFound", "message": message}}
    assert response.headers["x-ms-error-code"] == "NotFound"
    assert len(response.headers["x-ms-request-id"]) == 32


async def test_a_method_the_path_does_not_take_is_a_405_naming_every_method_it_takes(app: Pipeline) -> None:
    response = await call(app, "PUT", f"/rooms?{V}")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "MethodNotAllowed"
    assert response.headers["allow"] == "GET, HEAD, POST"


async def test_every_answer_carries_the_request_id_and_echoes_the_correlation_ids(app: Pipeline) -> None:
    ok = await call(app, "POST", f"/rooms?{V}", b"{}", **{"x-ms-client-request-id": "abc", "ms-cv": "cv.1"})
    failed = await call(app, "GET", "/rooms/1", **{"x-ms-client-request-id": "def"})  # no api-version
    assert ok.status_code == 201 and failed.status_code == 400
    assert ok.headers["x-ms-client-request-id"] == "abc" and ok.headers["ms-cv"] == "cv.1"
    assert failed.headers["x-ms-client-request-id"] == "def" and "ms-cv" not in failed.headers
    assert ok.headers["x-ms-request-id"] != failed.headers["x-ms-request-id"]
    assert ok.headers["api-supported-versions"] == failed.headers["api-supported-versions"]
    assert "2025-03-13" in ok.headers["api-supported-versions"]


async def test_credentials_are_checked_before_routing(app: Pipeline) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}") as client:
        response = await client.get(f"/nothing/here?{V}")  # unsigned
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "Denied"


@pytest.mark.parametrize(("http_version", "length", "waits_for_body"), [
    ("1.1", None, False),  # HTTP/1 without Content-Length or Transfer-Encoding: no body (RFC 9112, 6.3)
    ("1.1", "0", False),
    ("2", None, True),  # HTTP/2 says where a body ends in its frames, not its headers
    ("1.1", "2", True),
])
async def test_the_body_is_waited_for_only_when_the_request_has_one(
    app: Pipeline, http_version: str, length: str | None, waits_for_body: bool
) -> None:
    body = b"{}" if length == "2" else b""
    scope = _create_room_scope(http_version, length, body)
    received: list[bool] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        received.append(True)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 201
    assert bool(received) is waits_for_body


def _create_room_scope(http_version: str, length: str | None, body: bytes) -> dict[str, Any]:
    path, _, query = f"/rooms?{V}".partition("?")
    headers = {"host": HOST, **sign_headers("POST", f"{path}?{query}", HOST, body)}
    if length is not None:
        headers["content-length"] = length
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": http_version, "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
            "root_path": "", "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 1), "server": (HOST, 80)}


@pytest.mark.parametrize(("http_version", "declared", "receives"), [
    ("1.1", True, 2),  # the declared length is in after two chunks: no wait for the server's empty last message
    ("2", False, 3),  # no declared length: read until the server says the body is over
])
async def test_a_body_is_read_until_its_declared_length_is_in_or_the_server_says_it_is_over(
    app: Pipeline, http_version: str, declared: bool, receives: int
) -> None:
    body = b'{"pstnDialOutEnabled":true}'
    chunks = [body[:20], body[20:], b""]  # as granian sends it: each chunk with more_body, then an empty last one
    scope = _create_room_scope(http_version, str(len(body)) if declared else None, body)
    received: list[bytes] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        chunk = chunks[len(received)]
        received.append(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunk)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 201
    assert b'"pstnDialOutEnabled":true' in sent[1]["body"]
    assert len(received) == receives


async def test_a_room_s_body_is_cached_by_reads_not_by_the_create_or_update_that_answers_with_it(
    app: Pipeline,
) -> None:
    # A stream of writes would otherwise fill the cache with versions no read asks for, pushing out those reads use.
    rooms._room_json.cache_clear()
    created = await call(app, "POST", f"/rooms?{V}", b"{}")
    room_id = created.json()["id"]
    updated = await call(app, "PATCH", f"/rooms/{room_id}?{V}", b'{"pstnDialOutEnabled": true}')
    assert created.status_code == 201 and updated.status_code == 200
    assert updated.json()["pstnDialOutEnabled"] is True
    assert rooms._room_json.cache_info().currsize == 0
    first = await call(app, "GET", f"/rooms/{room_id}?{V}")
    second = await call(app, "GET", f"/rooms/{room_id}?{V}")
    assert first.content == second.content == updated.content
    info = rooms._room_json.cache_info()
    assert (info.currsize, info.misses, info.hits) == (1, 1, 1)


async def test_the_lifespan_starts_and_stops_the_app() -> None:
    store = SqliteStore.open(None)
    app = create_app(Settings(in_memory=True), store=store)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await inbox.put({"type": "lifespan.startup"})
    running = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send))
    while not sent:
        await asyncio.sleep(0.01)
    assert sent == [{"type": "lifespan.startup.complete"}]
    await inbox.put({"type": "lifespan.shutdown"})
    await running
    assert sent[-1] == {"type": "lifespan.shutdown.complete"}
    await store.close()
