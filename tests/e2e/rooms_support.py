"""Driving the official Python Rooms SDK (sync and async alike) against a server, and checking its errors.

The server is a real process (`tests.support.Server`) or the app in process (`tests.api.inprocess.InProcess`):
both sign raw requests (`request`) and make SDK clients."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, cast, overload

import httpx
from azure.communication.rooms import (
    CommunicationRoom,
    CommunicationUserIdentifier,
    ParticipantRole,
    RoomParticipant,
)
from azure.communication.rooms import RoomsClient as SyncRoomsClient
from azure.communication.rooms.aio import RoomsClient as AsyncRoomsClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.paging import ItemPaged

from tests.support import Server, user_id

GA_VERSIONS = ("2023-06-14", "2024-04-15", "2025-03-13")
# The GA version whose rooms carry no pstnDialOutEnabled.
NO_PSTN_VERSION = "2023-06-14"
MALFORMED_REQUEST = "The request could not be understood by the server due to malformed syntax."
NOT_FOUND = "The server cannot find the requested resource."
MAX_WINDOW = timedelta(days=180)

ROOM_OPERATIONS = ("create_room", "get_room", "update_room")


class Target(Protocol):
    """What the tests drive: a server process, or the app in process."""

    @property
    def endpoint(self) -> str: ...

    @property
    def connection_string(self) -> str: ...

    @property
    def access_key(self) -> str: ...

    def request(self, method: str, path_and_query: str, body: bytes = b"", headers: dict[str, str] | None = None,
                sign: bool = True, key: str | None = None) -> httpx.Response: ...


def participant(n: int | str, role: ParticipantRole | str | None = None) -> RoomParticipant:
    identifier = CommunicationUserIdentifier(user_id(n) if isinstance(n, int) else n)
    if role is None:  # the SDK then sends Attendee
        return RoomParticipant(communication_identifier=identifier)
    return RoomParticipant(communication_identifier=identifier, role=role)


def member(user: object, role: ParticipantRole | str = ParticipantRole.ATTENDEE) -> RoomParticipant:
    """A participant from a user of the Identity SDK, whose identifier type is its own copy of the one the Rooms
    SDK declares (the same class at run time, another to a type checker)."""
    return RoomParticipant(communication_identifier=cast(CommunicationUserIdentifier, user), role=role)


def identifier(n: int) -> CommunicationUserIdentifier:
    return CommunicationUserIdentifier(user_id(n))


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_time(text: str) -> datetime:
    """A wire timestamp as a datetime; the SDK hands them over as the strings it received."""
    return datetime.fromisoformat(text)


@dataclass
class Rooms:
    """One RoomsClient, sync or async, behind one awaitable interface, so that each test is written once.

    Calls return what the SDK returns, with pagers drained into lists.

    SDK 1.2.0 builds `CommunicationRoom` with `body["pstnDialOutEnabled"]`, so at 2023-06-14, whose rooms
    have no such field, its room-returning calls raise KeyError after the server answered correctly. For
    those calls the wrapper checks that this is what happened, and builds the room from the captured
    response body (with `pstn_dial_out_enabled` None), so the same tests cover that version too.
    """

    client: SyncRoomsClient | AsyncRoomsClient
    api_version: str
    flavour: str  # "sync" or "async"
    server: Target

    @property
    def has_pstn(self) -> bool:
        return self.api_version != NO_PSTN_VERSION

    async def call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        method: Callable[..., Any] = getattr(self.client, operation)
        if operation in ROOM_OPERATIONS and not self.has_pstn:
            return await self._room_without_pstn(method, *args, **kwargs)
        return await _settle(method(*args, **kwargs))

    async def _room_without_pstn(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> CommunicationRoom:
        bodies: list[Any] = []
        kwargs["raw_response_hook"] = lambda pipeline_response: bodies.append(pipeline_response.http_response)
        sdk_failure: KeyError | None = None
        try:
            await _settle(method(*args, **kwargs))
        except KeyError as exc:
            sdk_failure = exc
        body = bodies[-1].json()
        assert "pstnDialOutEnabled" not in body, "2023-06-14 rooms have no pstnDialOutEnabled"
        assert sdk_failure is not None and sdk_failure.args == ("pstnDialOutEnabled",), (
            "the SDK now reads 2023-06-14 rooms: drop this workaround"
        )
        return CommunicationRoom({**body, "pstnDialOutEnabled": None})

    async def list_rooms(self, **kwargs: Any) -> list[CommunicationRoom]:
        if not self.has_pstn:  # the SDK cannot build these rooms (see the class doc): read the wire instead
            return [CommunicationRoom({**room, "pstnDialOutEnabled": None}) for room in self.raw_pages("/rooms")]
        return cast(list[CommunicationRoom], await self.call("list_rooms", **kwargs))

    async def create_room(self, **kwargs: Any) -> CommunicationRoom:
        return cast(CommunicationRoom, await self.call("create_room", **kwargs))

    async def roster(self, room_id: str) -> dict[str, str]:
        """The room's participants as {raw id: role}."""
        participants = await self.call("list_participants", room_id)
        raw_ids = [p.communication_identifier.raw_id for p in participants]
        assert len(raw_ids) == len(set(raw_ids)), "a participant was listed twice"
        return {p.communication_identifier.raw_id: p.role for p in participants}

    def raw_pages(self, path: str) -> list[Any]:
        """Every item of a listing, following nextLink with raw signed requests at this client's version."""
        items: list[Any] = []
        path_and_query = f"{path}?api-version={self.api_version}"
        while True:
            response = self.server.request("GET", path_and_query)
            assert response.status_code == 200, response.text
            page = response.json()
            items += page["value"]
            if "nextLink" not in page:
                return items
            path_and_query = page["nextLink"].removeprefix(self.server.endpoint.rstrip("/"))


def room_count(server: Target) -> int:
    """How many rooms a listing shows, across every page."""
    count, path = 0, "/rooms?api-version=2025-03-13&maxpagesize=1000"
    while True:
        page = server.request("GET", path).json()
        count += len(page["value"])
        if "nextLink" not in page:
            return count
        path = page["nextLink"].removeprefix(server.endpoint.rstrip("/"))


async def _settle(result: Any) -> Any:
    if hasattr(result, "__aiter__"):
        return [item async for item in result]
    if inspect.isawaitable(result):
        return await result
    if isinstance(result, ItemPaged):
        return list(result)
    return result


@overload
def make_client(server: Target, flavour: Literal["sync"], api_version: str | None) -> SyncRoomsClient: ...
@overload
def make_client(server: Target, flavour: Literal["async"], api_version: str | None) -> AsyncRoomsClient: ...
@overload
def make_client(server: Target, flavour: str, api_version: str | None) -> SyncRoomsClient | AsyncRoomsClient: ...
def make_client(server: Target, flavour: str, api_version: str | None) -> SyncRoomsClient | AsyncRoomsClient:
    """A process over HTTPS through the connection string (trusting the server's CA), over HTTP through the
    constructor; the app in process through the connection string and the in-process transport."""
    cls = SyncRoomsClient if flavour == "sync" else AsyncRoomsClient
    options: dict[str, Any] = {} if api_version is None else {"api_version": api_version}
    if not isinstance(server, Server):
        from tests.api.inprocess import InProcess

        assert isinstance(server, InProcess)
        return cls.from_connection_string(server.connection_string, **options, **server.sdk_options(flavour))
    if server.tls:
        return cls.from_connection_string(server.connection_string, connection_verify=server.ca, **options)
    return cls(server.endpoint, AzureKeyCredential(server.access_key), **options)


def error_body(code: str, message: str, details: list[tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """The ACS error envelope; details are (code, message, target)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = [{"code": c, "message": m, "target": t} for c, m, t in details]
    return {"error": error}


def bad_arguments(*details: tuple[str, str]) -> dict[str, Any]:
    """The envelope of argument errors: details are (message, target), each coded BadArgument."""
    return error_body("BadRequest", MALFORMED_REQUEST, [("BadArgument", m, t) for m, t in details])


def assert_sdk_error(exc: HttpResponseError, status: int, expected: dict[str, Any]) -> None:
    """The error as the SDK reports it (status, parsed `error`) and as it came over the wire."""
    response: Any = exc.response
    assert exc.status_code == status
    assert response.json() == expected
    assert response.headers["x-ms-error-code"] == expected["error"]["code"]
    assert exc.error is not None
    assert exc.error.code == expected["error"]["code"]
    assert exc.error.message == expected["error"]["message"]
    details = [(d.code, d.message, d.target) for d in exc.error.details]
    assert details == [(d["code"], d["message"], d["target"]) for d in expected["error"].get("details", [])]


def assert_wire_error(response: Any, status: int, expected: dict[str, Any]) -> None:
    assert response.status_code == status, response.text
    assert response.json() == expected
    assert response.headers["x-ms-error-code"] == expected["error"]["code"]
    assert response.headers["content-type"] == "application/json; charset=utf-8"


# The Identity API as both SDK test layers (tests/api in process, tests/e2e against a real server) drive it.
IDENTITY_VERSIONS = ("2023-10-01", "2025-06-30")
TOKEN_SCOPES = "chat, voip, chat.join, chat.join.limited, voip.join"
USER_PART = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@dataclass
class IdentityClient:
    """One CommunicationIdentityClient, sync or async, behind one awaitable interface."""

    client: Any
    flavour: str
    version: str

    async def call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, operation)(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result
