"""The ACS Rooms API on the wire: request bodies -> service commands, service results -> response bodies.

One handler per operationId of the published spec (Rooms_Create, Rooms_List, ..., Participants_Update).
"""

from __future__ import annotations

import functools
import hashlib
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openrooms.http.auth import undoubled_host
from openrooms.http.context import context_of
from openrooms.http.versions import ApiVersion
from openrooms.http.wire import decode, json_response, query_int, query_of, timestamp
from openrooms.service import errors, timestamps
from openrooms.service.clock import TICKS_PER_SECOND
from openrooms.service.model import CreateRoom, Page, Participant, Repeatability, Room, UpdateRoom
from openrooms.service.rooms import RoomsService, Upsert


class ParticipantProperties(msgspec.Struct):
    role: str | None = None


class CreateRoomRequest(msgspec.Struct):
    validFrom: str | None = None
    validUntil: str | None = None
    pstnDialOutEnabled: bool | None = None
    participants: dict[str, ParticipantProperties | None] | None = None


class UpdateRoomRequest(msgspec.Struct):
    validFrom: str | None = None
    validUntil: str | None = None
    pstnDialOutEnabled: bool | None = None


class UpdateParticipantsRequest(msgspec.Struct):
    participants: dict[str, ParticipantProperties | None] | None = None


class RoomBody(msgspec.Struct):
    id: str
    createdAt: str
    validFrom: str
    validUntil: str
    # Left out (UNSET) at the api-versions that have no dial-out.
    pstnDialOutEnabled: bool | msgspec.UnsetType = msgspec.UNSET


class ParticipantBody(msgspec.Struct):
    rawId: str
    role: str


def room_json(room: Room, version: ApiVersion) -> bytes:
    return _room_json(room, version.pstn_dial_out)


def _render_room(room: Room, pstn_dial_out: bool) -> bytes:
    return msgspec.json.encode(RoomBody(
        room.id,
        timestamps.format(room.created_at),
        timestamps.format(room.valid_from),
        timestamps.format(room.valid_until),
        room.pstn_dial_out_enabled if pstn_dial_out else msgspec.UNSET,
    ))


# Cached: the same rooms are read and listed over and over (a room is an immutable tuple, and so a key), and a
# page of a list is its rooms' bodies joined. Not for the answer to a create (see `rooms_create`).
_room_json = functools.lru_cache(maxsize=1 << 14)(_render_room)


@functools.lru_cache(maxsize=1 << 14)
def participant_json(participant: Participant) -> bytes:
    return msgspec.json.encode(ParticipantBody(participant.raw_id, participant.role))


# A page's items, joined. Cached as well: while nothing changes, the same page is asked for again and again, and
# hashing its tuple of items costs a fifth of looking each item up.
@functools.lru_cache(maxsize=256)
def _rooms_json(rooms: tuple[Room, ...], pstn_dial_out: bool) -> bytes:
    return b",".join([_room_json(room, pstn_dial_out) for room in rooms])


@functools.lru_cache(maxsize=256)
def _participants_json(participants: tuple[Participant, ...]) -> bytes:
    return b",".join([participant_json(participant) for participant in participants])


@functools.lru_cache(maxsize=1024)
def _next_link(origin: str, path: str, version: str, cursor: str, max_page_size: str | None,
               carried: tuple[tuple[str, str], ...] = ()) -> bytes:
    query = [("api-version", version), *carried, ("skipToken", cursor)]
    if max_page_size is not None:
        query.append(("maxpagesize", max_page_size))
    return msgspec.json.encode(f"{origin}{path}?{urlencode(query)}")


# The room queries (openrooms extension, docs/rooms.md): their query parameters, which the next page's link carries.
QUERY_PARAMETERS = ("participant", "state", "idPrefix", "orderby")
ORDERS = ("validFrom", "validFrom asc")
_ORDERS = {" ".join(order.casefold().split()) for order in ORDERS}


def _last(given: dict[str, list[str]], name: str) -> str | None:
    """A parameter's last value, as for any other parameter given more than once."""
    values = given.get(name)
    return values[-1] if values else None


@functools.lru_cache(maxsize=1024)
def _query_parameters(query_string: bytes) -> tuple[tuple[str, str], ...]:
    """The room query parameters of a query string, every occurrence, in order."""
    return tuple((name, value) for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
                 if name in QUERY_PARAMETERS)


def _version(request: Request) -> ApiVersion:
    version = context_of(request).api_version
    assert version is not None  # the pipeline's api-version step sets it for every /rooms path
    return version


def _repeatability(request: Request, version: ApiVersion, body: bytes) -> Repeatability | None:
    headers = context_of(request).headers
    request_id = headers.get("repeatability-request-id")
    if request_id is None:
        return None
    if not 0 < len(request_id) <= 128:
        raise errors.repeatability_request_id_length()
    first_sent = headers.get("repeatability-first-sent")
    try:
        sent = parsedate_to_datetime(first_sent) if first_sent else None
    except (TypeError, ValueError):
        sent = None
    if sent is None or sent.tzinfo is None:
        raise errors.repeatability_first_sent_missing()
    fingerprint = hashlib.sha256(version.name.encode() + b"\n" + body).hexdigest()
    return Repeatability(request_id, int(sent.timestamp()) * TICKS_PER_SECOND, fingerprint)


class RoomsApi:
    def __init__(self, service: RoomsService, public_url: str | None = None) -> None:
        self._service = service
        self._public_url = public_url.rstrip("/") if public_url else None

    def routes(self) -> list[Route]:
        return [
            Route("/rooms", self.rooms_create, methods=["POST"]),
            Route("/rooms", self.rooms_list, methods=["GET"]),
            Route("/rooms/{room_id}", self.rooms_get, methods=["GET"]),
            Route("/rooms/{room_id}", self.rooms_update, methods=["PATCH"]),
            Route("/rooms/{room_id}", self.rooms_delete, methods=["DELETE"]),
            Route("/rooms/{room_id}/participants", self.participants_list, methods=["GET"]),
            Route("/rooms/{room_id}/participants", self.participants_update, methods=["PATCH"]),
        ]

    async def rooms_create(self, request: Request) -> Response:
        version = _version(request)
        body = context_of(request).body
        wire = decode(body, CreateRoomRequest)
        participants = None
        if wire.participants is not None:
            participants = {
                raw_id: props.role for raw_id, props in wire.participants.items() if props is not None
            }
        command = CreateRoom(
            valid_from=timestamp(wire.validFrom, "ValidFrom"),
            valid_until=timestamp(wire.validUntil, "ValidUntil"),
            # A version without the field cannot turn dial-out on.
            pstn_dial_out_enabled=wire.pstnDialOutEnabled if version.pstn_dial_out else None,
            participants=participants,
        )
        repeatability = _repeatability(request, version, body)
        created = await self._service.rooms_create(command, version.roles, repeatability)
        headers = {"Location": created.room.id}
        if repeatability is not None:
            headers["Repeatability-Result"] = "accepted"
        # Rendered without the cache: a room is cached once it is read. A stream of creates would otherwise keep
        # replacing what reads use with rooms nobody has asked for, and leave the heap strewn with them. A repeat
        # is rendered from the room as first created, for the same api-version: the first answer, byte for byte.
        return json_response(_render_room(created.room, version.pstn_dial_out), 201, headers)

    async def rooms_list(self, request: Request) -> Response:
        version = _version(request)
        if version.room_queries:
            return await self._rooms_query(request, version)
        page = await self._service.rooms_list(*self._paging(request))
        items = _rooms_json(tuple(page.items), version.pstn_dial_out)
        return json_response(self._page_body(request, version, page, items))

    async def _rooms_query(self, request: Request, version: ApiVersion) -> Response:
        carried = _query_parameters(request.scope["query_string"])
        given: dict[str, list[str]] = {}
        for name, value in carried:
            given.setdefault(name, []).append(value)
        for order in given.get("orderby", ()):
            if " ".join(order.casefold().split()) not in _ORDERS:
                raise errors.invalid_room_order(order, ORDERS)
        states = [state.strip().casefold() for value in given.get("state", ()) for state in value.split(",")]
        cursor, page_size = self._paging(request)
        page = await self._service.rooms_query(
            states=states if "state" in given else None, participant=_last(given, "participant"),
            id_prefix=_last(given, "idPrefix"), cursor=cursor, page_size=page_size,
        )
        items = _rooms_json(tuple(page.items), version.pstn_dial_out)
        return json_response(self._page_body(request, version, page, items, carried))

    async def rooms_get(self, request: Request) -> Response:
        room = await self._service.rooms_get(request.path_params["room_id"])
        return json_response(room_json(room, _version(request)))

    async def rooms_update(self, request: Request) -> Response:
        version = _version(request)
        wire = decode(context_of(request).body, UpdateRoomRequest)
        command = UpdateRoom(
            valid_from=timestamp(wire.validFrom, "ValidFrom"),
            valid_until=timestamp(wire.validUntil, "ValidUntil"),
            pstn_dial_out_enabled=wire.pstnDialOutEnabled if version.pstn_dial_out else None,
        )
        room = await self._service.rooms_update(request.path_params["room_id"], command)
        # Rendered without the cache, as a create's answer is: each update is a new version of its room, and
        # caching every one would push out what reads use.
        return json_response(_render_room(room, version.pstn_dial_out))

    async def rooms_delete(self, request: Request) -> Response:
        await self._service.rooms_delete(request.path_params["room_id"])
        return Response(status_code=204)

    async def participants_list(self, request: Request) -> Response:
        version = _version(request)
        page = await self._service.participants_list(request.path_params["room_id"], *self._paging(request))
        return json_response(self._page_body(request, version, page, _participants_json(tuple(page.items))))

    async def participants_update(self, request: Request) -> Response:
        version = _version(request)
        wire = decode(context_of(request).body, UpdateParticipantsRequest)
        changes = {
            raw_id: None if props is None else Upsert(props.role)
            for raw_id, props in (wire.participants or {}).items()
        }
        await self._service.participants_update(request.path_params["room_id"], changes, version.roles)
        return json_response(b"{}")

    @staticmethod
    def _paging(request: Request) -> tuple[str | None, int | None]:
        query = query_of(request.scope["query_string"])
        return query.get("skipToken"), query_int(query.get("maxpagesize"), "maxpagesize")

    def _page_body(self, request: Request, version: ApiVersion, page: Page[Any], items: bytes,
                   carried: tuple[tuple[str, str], ...] = ()) -> bytes:
        """`{"value": [...], "nextLink": ...}`, the items given as their JSON, joined; the link carries `carried`."""
        if page.next_cursor is None:
            return b'{"value":[' + items + b"]}"
        link = _next_link(self._origin(request), request.scope["path"], version.name, page.next_cursor,
                          query_of(request.scope["query_string"]).get("maxpagesize"), carried)
        return b'{"value":[' + items + b'],"nextLink":' + link + b"}"

    def _origin(self, request: Request) -> str:
        if self._public_url:
            return self._public_url
        host = context_of(request).headers.get("host") or request.url.netloc
        # The client follows nextLink as is: a doubled port would make it an invalid URL.
        return f"{request.scope['scheme']}://{undoubled_host(host)}"
