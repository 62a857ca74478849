"""The OpenAPI document of what openrooms serves, generated from the wire Structs of `http.rooms`."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from openrooms import __version__
from openrooms.http import rooms, versions


class Room(msgspec.Struct):
    id: str
    createdAt: str
    validFrom: str
    validUntil: str
    pstnDialOutEnabled: bool | None = None


class RoomsPage(msgspec.Struct):
    value: list[Room]
    nextLink: str | None = None


class RoomParticipant(msgspec.Struct):
    rawId: str
    role: str


class ParticipantsPage(msgspec.Struct):
    value: list[RoomParticipant]
    nextLink: str | None = None


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    target: str | None = None


class Error(msgspec.Struct):
    code: str
    message: str
    target: str | None = None
    details: list[ErrorDetail] | None = None


class ErrorResponse(msgspec.Struct):
    error: Error


_MODELS = (
    rooms.CreateRoomRequest, rooms.UpdateRoomRequest, rooms.UpdateParticipantsRequest,
    Room, RoomsPage, ParticipantsPage, ErrorResponse,
)


def _ref(model: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _operation(op_id: str, ok: int, response: type | None, body: type | None = None,
               body_type: str = "application/json", paged: bool = False, room_id: bool = False) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "api-version", "in": "query", "required": True,
         "schema": {"type": "string", "enum": [v.name for v in versions.ROOMS.versions]}},
    ]
    if room_id:
        params.append({"name": "room_id", "in": "path", "required": True,
                       "schema": {"type": "string", "pattern": "^[0-9]{16,18}$"}})
    if paged:
        params += [{"name": "maxpagesize", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                   {"name": "skipToken", "in": "query", "schema": {"type": "string"}}]
    op: dict[str, Any] = {
        "operationId": op_id,
        "parameters": params,
        "responses": {
            str(ok): {"description": "Success", **({"content": _json(response)} if response else {})},
            "default": {"description": "An ACS error envelope", "content": _json(ErrorResponse)},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": False, "content": {body_type: {"schema": _ref(body)}}}
    return op


@functools.cache
def document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(_MODELS, ref_template="#/components/schemas/{name}")
    merge = "application/merge-patch+json"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "openrooms",
            "version": __version__,
            "description": "The Azure Communication Services Rooms API as served by openrooms. Every request "
            "but GET /healthz is signed with HMAC-SHA256 (see the README). Supported api-versions: "
            + versions.ROOMS.supported + ".",
        },
        "paths": {
            "/rooms": {
                "post": _operation("Rooms_Create", 201, Room, rooms.CreateRoomRequest),
                "get": _operation("Rooms_List", 200, RoomsPage, paged=True),
            },
            "/rooms/{room_id}": {
                "get": _operation("Rooms_Get", 200, Room, room_id=True),
                "patch": _operation("Rooms_Update", 200, Room, rooms.UpdateRoomRequest, merge, room_id=True),
                "delete": _operation("Rooms_Delete", 204, None, room_id=True),
            },
            "/rooms/{room_id}/participants": {
                "get": _operation("Participants_List", 200, ParticipantsPage, paged=True, room_id=True),
                "patch": _operation("Participants_Update", 200, None, rooms.UpdateParticipantsRequest, merge,
                                    room_id=True),
            },
            "/healthz": {"get": {"operationId": "Health", "security": [],
                                 "responses": {"200": {"description": "The server is up"}}}},
        },
        "components": {"schemas": components},
    }
