"""`POST /rooms/{roomId}:join` on the wire (an openrooms extension, not an ACS operation).

Authenticated with the user's ACS access token (`Authorization: Bearer <token>`), not with an access key: the
request pipeline's credential step sends this path here unsigned, and the admission service checks the token.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openrooms.http.context import context_of
from openrooms.http.wire import decode, json_response
from openrooms.service import errors, timestamps
from openrooms.service.admission import Admission, AdmissionService, Reason
from openrooms.service.errors import ServiceError
from openrooms.service.model import Role

if TYPE_CHECKING:  # the LiveKit library is loaded only when a LiveKit server is configured
    from openrooms.livekit import LiveKitBridge

JOIN_ROUTE = "/rooms/{room_id}:join"
_JOIN_PATH = re.compile(r"/rooms/[^/]+:join")
_BEARER = re.compile(r"Bearer +(\S+) *", re.IGNORECASE)
# RFC 6750: a 401 for a bearer-token resource says which scheme it wants.
_CHALLENGE = 'Bearer realm="openrooms", error="invalid_token"'


def is_join_path(path: str) -> bool:
    return _JOIN_PATH.fullmatch(path) is not None


class JoinRequest(msgspec.Struct):
    """No fields yet: the body may be empty or `{}`."""


class AdmittedParticipant(msgspec.Struct):
    rawId: str
    role: Role


class CapabilityBody(msgspec.Struct):
    isPresent: bool
    reason: Reason


class LiveKitGrantBody(msgspec.Struct):
    """Where and how to connect to the LiveKit media server (only when openrooms is configured with one)."""

    url: str
    room: str
    identity: str
    token: str
    expiresAt: str


class AdmissionBody(msgspec.Struct, omit_defaults=True):
    roomId: str
    participant: AdmittedParticipant
    validFrom: str
    validUntil: str
    pstnDialOutEnabled: bool
    grantExpiresAt: str
    # Every capability of the matrix (named as the ACS Calling SDK names them), present or not and why.
    capabilities: dict[str, CapabilityBody]
    livekit: LiveKitGrantBody | None = None


def admission_body(admission: Admission, livekit: LiveKitBridge | None) -> AdmissionBody:
    room = admission.room
    body = AdmissionBody(
        roomId=room.id,
        participant=AdmittedParticipant(admission.participant.raw_id, admission.participant.role),
        validFrom=timestamps.format(room.valid_from),
        validUntil=timestamps.format(room.valid_until),
        pstnDialOutEnabled=room.pstn_dial_out_enabled,
        grantExpiresAt=timestamps.format(admission.grant_expires_at),
        capabilities={
            capability.value: CapabilityBody(state.is_present, state.reason)
            for capability, state in admission.capabilities.items()
        },
    )
    if livekit is not None:
        grant = livekit.grant(admission)
        body.livekit = LiveKitGrantBody(
            grant.url, grant.room, grant.identity, grant.token, timestamps.format(grant.expires_at)
        )
    return body


class AdmissionApi:
    def __init__(self, service: AdmissionService, livekit: LiveKitBridge | None = None) -> None:
        self._service = service
        self._livekit = livekit

    def routes(self) -> list[Route]:
        return [Route(JOIN_ROUTE, self.rooms_join, methods=["POST"])]

    async def rooms_join(self, request: Request) -> Response:
        decode(context_of(request).body, JoinRequest)
        try:
            admission = await self._service.admit(_bearer_token(request), request.path_params["room_id"])
        except ServiceError as exc:
            if exc.status == 401:
                exc.headers.setdefault("WWW-Authenticate", _CHALLENGE)
            raise
        # The answer may carry a media-server token: no cache keeps it.
        return json_response(admission_body(admission, self._livekit), headers={"Cache-Control": "no-store"})


def _bearer_token(request: Request) -> str:
    match = _BEARER.fullmatch(request.headers.get("authorization", ""))
    if match is None:
        raise errors.admission_bearer_missing()
    return match.group(1)
