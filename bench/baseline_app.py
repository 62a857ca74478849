"""The baseline: a bare ASGI app (no framework, no auth, no store) answering with bodies shaped like
openrooms' own: a room, a first page of 100 rooms, a first page of 100 participants. Served by the same
HTTP server (granian) with the same worker count, it is the ceiling that every workload is measured against."""

from __future__ import annotations

import json
from typing import Any

_ROOM = {
    "id": "99412345678901234",
    "createdAt": "2026-11-21T10:00:00.0000000Z",
    "validFrom": "2026-11-21T10:00:00.0000000Z",
    "validUntil": "2027-05-20T10:00:00.0000000Z",
    "pstnDialOutEnabled": False,
}
_NEXT = "http://127.0.0.1/rooms?api-version=2025-03-13&skipToken=MTc2MzcxOTIwMDAwMDAwMDAfOTk0MTIzNDU2Nzg5MDEyMzQ"
ROOM = json.dumps(_ROOM, separators=(",", ":")).encode()
ROOM_PAGE = json.dumps({"value": [_ROOM] * 100, "nextLink": _NEXT}, separators=(",", ":")).encode()
PARTICIPANT_PAGE = json.dumps(
    {
        "value": [
            {"rawId": f"8:acs:1b5cc06b-f352-4571-b1e6-d9b259b7c776_00000005-14a2-493b-8a72-{n:012x}",
             "role": "Attendee"}
            for n in range(100)
        ],
        "nextLink": _NEXT,
    },
    separators=(",", ":"),
).encode()
_EMPTY = b"{}"


def _body_length(scope: dict[str, Any]) -> int | None:
    """The declared length of the body: 0 when there is none, None when only the server knows where it ends."""
    headers: dict[bytes, bytes] = dict(scope["headers"])
    length = headers.get(b"content-length")
    if length is not None:
        return int(length)
    if b"transfer-encoding" in headers or scope.get("http_version") not in ("1.0", "1.1"):
        return None
    return 0


def _headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(body)).encode())]


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    # Read the whole body, as a real handler must, and as openrooms does: no wait when the headers say there is
    # none (HTTP/1 without Content-Length or Transfer-Encoding, or Content-Length: 0), and none for the server's
    # empty last message once the declared length is in.
    expected = _body_length(scope)
    if expected != 0:
        size, more = 0, True
        while more and size != expected:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
    method, path = scope["method"], scope["path"]
    status, body = 200, ROOM
    if method == "POST":
        status = 201
    elif path.endswith("/participants"):
        body = PARTICIPANT_PAGE if method == "GET" else _EMPTY
    elif method == "GET" and path == "/rooms":
        body = ROOM_PAGE
    await send({"type": "http.response.start", "status": status, "headers": _headers(body)})
    await send({"type": "http.response.body", "body": body})
