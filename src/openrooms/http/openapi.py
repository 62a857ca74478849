"""The OpenAPI document of everything openrooms serves: one generator over a table of operations, with the bodies
generated from the wire Structs of `http.rooms`, `http.identity` and `http.admission`, and each API's api-versions
from `http.versions`."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from openrooms import __version__
from openrooms.http import admission, identity, rooms, versions, webhooks
from openrooms.http import calls as calls_http
from openrooms.http.versions import ApiFamily
from openrooms.service import ids
from openrooms.service.admission import JOIN_SCOPES
from openrooms.service.ports import ROOM_STATES

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


# Response bodies that the handlers build without a Struct of their own, described here.
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


class Event(msgspec.Struct):
    """An event of the log (docs/events.md): an Event Grid event with its place in the log, `cursor`."""

    id: str
    subject: str
    eventType: str
    eventTime: str
    dataVersion: str
    metadataVersion: str
    cursor: str
    data: dict[str, Any]


class EventsPage(msgspec.Struct):
    value: list[Event]
    nextLink: str


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


class TeamsUserExchangeTokenRequest(msgspec.Struct):
    """The published request body (exchanged only with an OpenID Connect issuer configured, else 501)."""

    token: str
    appId: str
    userId: str


class JsonWebKey(msgspec.Struct):
    kty: str
    use: str
    alg: str
    kid: str
    x5t: str
    n: str
    e: str
    x5c: list[str]


class JsonWebKeySet(msgspec.Struct):
    keys: list[JsonWebKey]


class ServerStatus(msgspec.Struct):
    status: str


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # path parameters are named as in PATH_PARAMETERS
    operation_id: str
    summary: str
    status: int  # the answer when all goes well (for the Teams token exchange: always)
    response: type | None = None  # a Struct (in components) or a plain type, e.g. `str`
    response_type: str = JSON
    body: type | None = None
    body_type: str = JSON
    body_required: bool = False  # openrooms reads a missing body as `{}`
    family: ApiFamily | None = None  # None: no api-version parameter
    paged: bool = False
    security: str | None = "hmac"  # a name in SECURITY_SCHEMES; None: served to anyone
    tag: str = "Server"
    # An extension family that serves the operation too, at its own api-versions, with these query parameters.
    extension: ApiFamily | None = None
    extension_query: tuple[dict[str, Any], ...] = ()


OPERATIONS = (
    # Rooms
    Operation("post", "/rooms", "Rooms_Create", "Create a room.", 201, Room, body=rooms.CreateRoomRequest,
              family=versions.ROOMS),
    Operation("get", "/rooms", "Rooms_List", "List the rooms that have not ended, newest first; at the openrooms "
              "extension's api-version, every room by validFrom, optionally by participant, state and id prefix.",
              200, RoomsPage, family=versions.ROOMS, paged=True, extension=versions.ROOM_QUERIES,
              extension_query=(
                  {"name": "participant", "schema": {"type": "string", "pattern": f"^{ids.USER_ID_PATTERN}$"},
                   "description": "Only the rooms whose roster holds this raw id."},
                  {"name": "state", "style": "form", "explode": True,
                   "schema": {"type": "array", "items": {"type": "string", "enum": list(ROOM_STATES)}},
                   "description": "Only the rooms in one of these states now (repeated or comma-separated)."},
                  {"name": "idPrefix",
                   "schema": {"type": "string", "pattern": f"^[0-9]{{1,{max(ids.ROOM_ID_LENGTHS)}}}$"},
                   "description": "Only the rooms whose id starts with these digits."},
                  {"name": "orderby", "schema": {"type": "string", "enum": list(rooms.ORDERS)},
                   "description": "The order: by validFrom, then id (the only one, and the default)."},
              )),
    Operation("get", "/rooms/{room_id}", "Rooms_Get", "Get a room.", 200, Room, family=versions.ROOMS),
    Operation("patch", "/rooms/{room_id}", "Rooms_Update", "Update a room's validity window or settings.", 200,
              Room, body=rooms.UpdateRoomRequest, body_type=MERGE_PATCH, family=versions.ROOMS),
    Operation("delete", "/rooms/{room_id}", "Rooms_Delete", "Delete a room.", 204, family=versions.ROOMS),
    Operation("get", "/rooms/{room_id}/participants", "Participants_List", "List a room's participants.", 200,
              ParticipantsPage, family=versions.ROOMS, paged=True),
    Operation("patch", "/rooms/{room_id}/participants", "Participants_Update",
              "Add, re-role (a role) or remove (null) participants.", 200, body=rooms.UpdateParticipantsRequest,
              body_type=MERGE_PATCH, family=versions.ROOMS),
    # Identity
    Operation("post", "/identities", "CommunicationIdentity_Create",
              "Create a user, and with createTokenWithScopes an access token for it.", 201,
              identity.CreateIdentityResponse, body=identity.CreateIdentityRequest, family=versions.IDENTITY),
    Operation("delete", "/identities/{id}", "CommunicationIdentity_Delete",
              "Delete a user: its tokens stop verifying and it leaves every room.", 204, family=versions.IDENTITY),
    Operation("post", "/identities/{id}/:revokeAccessTokens", "CommunicationIdentity_RevokeAccessTokens",
              "Revoke every access token issued to the user so far.", 204, family=versions.IDENTITY),
    Operation("post", "/identities/{id}/:issueAccessToken", "CommunicationIdentity_IssueAccessToken",
              "Issue an access token for the user.", 200, identity.AccessTokenBody,
              body=identity.IssueAccessTokenRequest, family=versions.IDENTITY),
    Operation("post", "/teamsUser/:exchangeAccessToken", "CommunicationIdentity_ExchangeTeamsUserAccessToken",
              "Exchange a Teams user's Entra ID token for an ACS token (serve --oidc-issuer); else 501.", 501,
              ErrorResponse, body=TeamsUserExchangeTokenRequest, body_required=True, family=versions.IDENTITY),
    # Admission (openrooms extension)
    Operation("post", "/rooms/{room_id}:join", "Rooms_Join",
              "Admit the token's user to the room's call: its role, capabilities and, with a LiveKit server "
              "configured, a LiveKit token. The user's ACS access token authenticates, not an access key.", 200,
              admission.AdmissionBody, body=admission.JoinRequest, family=versions.ADMISSION, security="bearer"),
    # Room calls (openrooms extension, docs/calls.md); the signalling itself is a WebSocket, not described here
    Operation("get", "/rooms/{room_id}/call", "Calls_Get",
              "Who is in the room's call now: role, since when, what each publishes.", 200, calls_http.CallBody,
              family=versions.CALLS),
    Operation("post", "/rooms/{room_id}/call:end", "Calls_End", "End the room's call for everyone.", 204,
              family=versions.CALLS),
    Operation("delete", "/rooms/{room_id}/call/participants/{raw_id}", "Calls_RemoveParticipant",
              "Remove one participant from the room's call (it stays on the roster).", 204, family=versions.CALLS),
    Operation("get", "/call/{room_id}", "Calls_Page", "The call page (HTML); the user's token stays in the page.",
              200, str, response_type="text/html", security=None),
    Operation("get", "/call-static/call.js", "Calls_PageScript", "The call page's script.", 200, str,
              response_type="text/javascript", security=None),
    Operation("get", "/call-static/call.css", "Calls_PageStyle", "The call page's style sheet.", 200, str,
              response_type="text/css", security=None),
    # The event log (openrooms extension, docs/events.md); `after`, `types`, `roomId` and `wait` as documented there
    Operation("get", "/events", "Events_List", "The event log in order, after a cursor; optionally filtered and "
              "long-polled.", 200, EventsPage, family=versions.EVENTS, paged=True),
    # Webhook subscriptions to the event log (openrooms extension, docs/events.md)
    Operation("post", "/events/subscriptions", "Subscriptions_Create",
              "Subscribe an endpoint to events, after its handshake; the answer shows the signing secret, once.", 201,
              webhooks.SubscriptionBody, body=webhooks.CreateSubscriptionRequest, body_required=True,
              family=versions.EVENTS),
    Operation("get", "/events/subscriptions", "Subscriptions_List", "Every subscription, with its delivery state.",
              200, webhooks.SubscriptionsPage, family=versions.EVENTS),
    Operation("get", "/events/subscriptions/{subscription_id}", "Subscriptions_Get",
              "A subscription, with its delivery state.", 200, webhooks.SubscriptionBody, family=versions.EVENTS),
    Operation("patch", "/events/subscriptions/{subscription_id}", "Subscriptions_Update",
              "Change a subscription (a new endpoint or schema: the handshake again).", 200,
              webhooks.SubscriptionBody, body=webhooks.UpdateSubscriptionRequest, body_type=MERGE_PATCH,
              family=versions.EVENTS),
    Operation("delete", "/events/subscriptions/{subscription_id}", "Subscriptions_Delete",
              "Delete a subscription with its queued and dead-lettered deliveries.", 204, family=versions.EVENTS),
    Operation("get", "/events/subscriptions/{subscription_id}/deadLetters", "Subscriptions_ListDeadLetters",
              "The subscription's dead-lettered events, oldest first.", 200, webhooks.DeadLettersPage,
              family=versions.EVENTS),
    Operation("post", "/events/subscriptions/{subscription_id}:redeliver", "Subscriptions_Redeliver",
              "Queue dead-lettered events again: those named, or every one.", 200, webhooks.RedeliveredBody,
              body=webhooks.RedeliverRequest, family=versions.EVENTS),
    # The server itself
    Operation("get", "/healthz", "Health", "Up: answers as long as the process serves.", 200, ServerStatus,
              security=None),
    Operation("get", "/readyz", "Readiness", "Ready: the store answers (503 in the error envelope when not).", 200,
              ServerStatus, security=None),
    Operation("get", "/metrics", "Metrics", "Prometheus metrics (unless served with --no-metrics).", 200, str,
              response_type="text/plain", security=None),
    Operation("get", identity.JWKS_PATH, "Jwks", "The public keys that verify the access tokens this server issues.",
              200, JsonWebKeySet, security=None, tag="Identity"),
    Operation("get", "/openapi.json", "OpenApi", "This document.", 200, dict[str, Any]),
)

PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "room_id": {"type": "string", "pattern": f"^[0-9]{{{min(ids.ROOM_ID_LENGTHS)},{max(ids.ROOM_ID_LENGTHS)}}}$"},
    "id": {"type": "string", "pattern": f"^{ids.USER_ID_PATTERN}$",
           "description": "An ACS user id, as POST /identities answered it."},
}
PATH_PARAMETERS["subscription_id"] = {"type": "string", "format": "uuid",
                                       "description": "A subscription's id, as its create answered it."}
PATH_PARAMETERS["raw_id"] = {"type": "string", "pattern": f"^{ids.USER_ID_PATTERN}$",
                              "description": "The participant's ACS user id."}
_PATH_PARAMETER = re.compile(r"{(\w+)}")

SECURITY_SCHEMES = {
    "hmac": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "HMAC-SHA256 with an access key, as the ACS SDKs sign: "
        "`Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<signature>`, "
        "where the signature is the base64 HMAC-SHA256, keyed with the base64-decoded access key, of "
        "`<METHOD>\\n<path and query>\\n<x-ms-date>;<host>;<x-ms-content-sha256>`; `x-ms-date` is the RFC 1123 "
        "request date (within the server's clock skew, 5 minutes by default) and `x-ms-content-sha256` the base64 "
        "SHA-256 of the body.",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user's ACS access token (from POST /identities or /identities/{id}/:issueAccessToken) "
        f"with one of the scopes {', '.join(JOIN_SCOPES)}.",
    },
}


def _schema(model: type) -> dict[str, Any]:
    if isinstance(model, type) and issubclass(model, msgspec.Struct):
        return {"$ref": f"#/components/schemas/{model.__name__}"}
    return msgspec.json.schema(model)


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    if op.family is not None:
        families = [op.family] if op.extension is None else [op.family, op.extension]
        params.append({"name": "api-version", "in": "query", "required": True,
                       "description": f"An api-version of the {' or the '.join(f.title for f in families)} API.",
                       "schema": {"type": "string", "enum": [v.name for f in families for v in f.versions]}})
    params += [{"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS[name]}
               for name in _PATH_PARAMETER.findall(op.path)]
    if op.paged:
        params += [{"name": "maxpagesize", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                   {"name": "skipToken", "in": "query", "schema": {"type": "string"}}]
    if op.extension is not None:
        params += [{**param, "in": "query", "description": f"{param['description']} Only at the api-version of the "
                    f"{op.extension.title} ({op.extension.supported}); ignored at the others."}
                   for param in op.extension_query]
    return params


def _operation(op: Operation) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": op.summary if op.status >= 400 else "Success"}
    if op.response is not None:
        answer["content"] = {op.response_type: {"schema": _schema(op.response)}}
    spec: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.family.title if op.family is not None else op.tag],
        "parameters": _parameters(op),
        "responses": {
            str(op.status): answer,
            "default": {"description": "An ACS error envelope", "content": {JSON: {"schema": _schema(ErrorResponse)}}},
        },
    }
    if op.body is not None:
        spec["requestBody"] = {"required": op.body_required, "content": {op.body_type: {"schema": _schema(op.body)}}}
    if op.security != "hmac":  # the document's default
        spec["security"] = [] if op.security is None else [{op.security: []}]
    return spec


def _models() -> list[type]:
    models: list[type] = [ErrorResponse]
    for op in OPERATIONS:
        models += [m for m in (op.body, op.response) if isinstance(m, type) and issubclass(m, msgspec.Struct)]
    return list(dict.fromkeys(models))


@functools.cache
def document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(_models(), ref_template="#/components/schemas/{name}")
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    apis = "; ".join(f"{family.title}: {family.supported}" for family in versions.FAMILIES)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "openrooms",
            "version": __version__,
            "description": "The Azure Communication Services Rooms and Identity APIs as served by openrooms, and "
            "its own extensions. Requests are signed with HMAC-SHA256 (the `hmac` scheme) unless an operation "
            f"says otherwise. Supported api-versions, per API: {apis}.",
        },
        "security": [{"hmac": []}],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }
