"""The ACS Identity API through the official Python Identity SDK (sync and async, both api-versions) against the
app in process, on each store: users, tokens, errors, the JWKS, and users as room participants."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from azure.communication.identity import (
    CommunicationIdentityClient,
    CommunicationTokenScope,
    CommunicationUserIdentifier,
)
from azure.communication.identity._shared.user_credential import CommunicationTokenCredential
from azure.communication.identity._shared.user_credential_async import (
    CommunicationTokenCredential as AsyncCommunicationTokenCredential,
)
from azure.communication.identity.aio import CommunicationIdentityClient as AsyncCommunicationIdentityClient
from azure.communication.rooms import ParticipantRole, RoomsClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests.api.conftest import RESOURCE_ID
from tests.api.inprocess import InProcess
from tests.e2e.rooms_support import IDENTITY_VERSIONS, TOKEN_SCOPES, USER_PART, IdentityClient, member

VERSIONS = IDENTITY_VERSIONS
SCOPES = TOKEN_SCOPES


@dataclass
class Identity(IdentityClient):
    server: InProcess


@pytest.fixture(params=[(f, v) for f in ("sync", "async") for v in VERSIONS], ids="-".join)
async def identity(request: pytest.FixtureRequest, api: InProcess) -> AsyncIterator[Identity]:
    flavour, version = request.param
    kind = CommunicationIdentityClient if flavour == "sync" else AsyncCommunicationIdentityClient
    client = kind.from_connection_string(api.connection_string, api_version=version, **api.sdk_options(flavour))
    try:
        yield Identity(client, flavour, version, api)
    finally:
        if isinstance(client, AsyncCommunicationIdentityClient):  # the sync client of SDK 1.5.0 has no close()
            await client.close()


def claims(token: str) -> dict[str, Any]:
    """The payload as the Python SDK reads it (standard base64), so a `-` or `_` in it would break this."""
    decoded: dict[str, Any] = json.loads(base64.b64decode(token.split(".")[1] + "==").decode("ascii"))
    return decoded


def expiry(token: AccessToken) -> int:
    """SDK 1.5.0 hands `expiresOn` over as the string it received (typed int): read it as the instant it is."""
    return int(datetime.fromisoformat(str(token.expires_on)).timestamp())


def error_of(exc: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int | None, str | None, str | None, str | None]:
    error = exc.value.error
    assert error is not None
    return exc.value.status_code, error.code, error.message, error.target


def jwks(server: InProcess) -> dict[str, Any]:
    # Unsigned on purpose: verifiers fetch the keys without an access key.
    response = server.request("GET", "/.well-known/jwks.json", sign=False)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_user_and_token_lifecycle(identity: Identity) -> None:
    resource_id = RESOURCE_ID
    user = await identity.call("create_user")
    assert re.fullmatch(f"8:acs:{resource_id}_{USER_PART}", user.properties["id"])

    other, token = await identity.call("create_user_and_token", scopes=[CommunicationTokenScope.VOIP])
    assert other.raw_id != user.raw_id
    voip = claims(token.token)
    assert voip["skypeid"] == other.raw_id.removeprefix("8:")
    assert (voip["acsScope"], voip["resourceId"], voip["scp"]) == ("voip", resource_id, 1792)
    assert voip["csi"] == str(voip["iat"])
    assert voip["exp"] - voip["iat"] == 24 * 3600  # the default lifetime
    assert expiry(token) == voip["exp"]

    chat = await identity.call("get_token", other, scopes=[CommunicationTokenScope.CHAT, "voip.join"],
                               token_expires_in=timedelta(hours=1))
    issued = claims(chat.token)
    assert (issued["acsScope"], issued["exp"] - issued["iat"], expiry(chat)) == ("chat,voip.join", 3600,
                                                                                  issued["exp"])

    assert await identity.call("revoke_tokens", other) is None
    assert await identity.call("delete_user", other) is None
    for operation in ("revoke_tokens", "delete_user"):
        with pytest.raises(ResourceNotFoundError):
            await identity.call(operation, other)
    with pytest.raises(ResourceNotFoundError):
        await identity.call("get_token", other, scopes=["chat"])
    await identity.call("delete_user", user)


async def test_token_lifetime_bounds(identity: Identity) -> None:
    user = await identity.call("create_user")
    for minutes in (60, 1440):
        token = await identity.call("get_token", user, ["chat"], token_expires_in=timedelta(minutes=minutes))
        assert claims(token.token)["exp"] - claims(token.token)["iat"] == minutes * 60
    for minutes in (59, 1441):
        for call in (
            identity.call("get_token", user, ["chat"], token_expires_in=timedelta(minutes=minutes)),
            identity.call("create_user_and_token", ["chat"], token_expires_in=timedelta(minutes=minutes)),
        ):
            with pytest.raises(HttpResponseError) as exc:
                await call
            assert error_of(exc) == (
                400, "ValidationError",
                f"ExpiresInMinutes value {minutes} is invalid. Value must be within the [60, 1440] interval.",
                "ExpiresInMinutes",
            )


async def test_unknown_scope_and_users(identity: Identity) -> None:
    user = await identity.call("create_user")
    with pytest.raises(HttpResponseError) as exc:
        await identity.call("get_token", user, ["chat", "telepathy"])
    assert error_of(exc) == (400, "ValidationError",
                             f"Scopes: 'telepathy' is not a valid scope. Valid scopes: {SCOPES}.", "Scopes")
    with pytest.raises(HttpResponseError) as exc:
        await identity.call("create_user_and_token", ["telepathy"])
    assert error_of(exc)[3] == "CreateTokenWithScopes"

    stranger = CommunicationUserIdentifier(f"8:acs:{RESOURCE_ID}_{'0' * 8}-0000-0000-0000-"
                                           f"{'0' * 12}")
    for operation, args in (("get_token", (["chat"],)), ("revoke_tokens", ()), ("delete_user", ())):
        with pytest.raises(ResourceNotFoundError) as not_found:
            await identity.call(operation, stranger, *args)
        assert error_of(not_found)[:2] == (404, "IdentityNotFound")
        with pytest.raises(HttpResponseError) as malformed:
            await identity.call(operation, CommunicationUserIdentifier("8:acs:not-a-user"), *args)
        assert error_of(malformed)[0::3] == (400, "id")


async def test_teams_token_exchange_is_refused_clearly(identity: Identity) -> None:
    with pytest.raises(HttpResponseError) as exc:
        await identity.call("get_token_for_teams_user", "entra-token", "app-id", "user-id")
    status, code, message, _ = error_of(exc)
    assert (status, code) == (501, "NotSupported")
    assert message is not None and "Teams token exchange is not available in openrooms" in message


async def test_token_credentials_read_issued_tokens(identity: Identity) -> None:
    _, token = await identity.call("create_user_and_token", ["chat", "voip"])
    # The credentials parse the token's payload themselves (its `exp`): no `-` or `_` may be in it.
    with CommunicationTokenCredential(token.token) as credential:
        assert credential.get_token() == AccessToken(token.token, expiry(token))
    async with AsyncCommunicationTokenCredential(token.token) as async_credential:
        assert await async_credential.get_token() == AccessToken(token.token, expiry(token))


def test_issued_tokens_verify_with_the_published_keys(api: InProcess) -> None:
    client = CommunicationIdentityClient.from_connection_string(api.connection_string, **api.sdk_options("sync"))
    user, token = client.create_user_and_token(["voip"])
    header = jwt.get_unverified_header(token.token)
    keys = jwt.PyJWKSet.from_dict(jwks(api))
    key = next(k for k in keys.keys if k.key_id == header["kid"])
    verified = jwt.decode(token.token, key.key, algorithms=["RS256"])
    assert verified["skypeid"] == user.raw_id.removeprefix("8:")
    assert verified == claims(token.token)
    public = next(k for k in jwks(api)["keys"] if k["kid"] == header["kid"])
    assert (public["x5t"], "d" in public) == (header["x5t"], False)
    forged = token.token[:-8] + ("A" * 8 if not token.token.endswith("A" * 8) else "B" * 8)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key.key, algorithms=["RS256"])


def test_wire_bodies_the_sdk_cannot_send(api: InProcess) -> None:
    created = api.request("POST", "/identities?api-version=2023-10-01", b"{}")
    assert created.status_code == 201
    assert list(created.json()) == ["identity"]
    raw_id = created.json()["identity"]["id"]
    path = "/identities/" + raw_id.replace(":", "%3A") + "/:issueAccessToken?api-version=2023-10-01"

    missing = api.request("POST", path, b"{}")
    assert missing.status_code == 400
    assert missing.json() == {"error": {"code": "ValidationError", "message": "Scopes: The Scopes field is required.",
                                        "target": "Scopes"}}
    assert missing.headers["x-ms-error-code"] == "ValidationError"
    empty = api.request("POST", path, b'{"scopes": []}')
    assert empty.json()["error"]["message"] == "Invalid scopes - Scopes field is required."
    malformed = api.request("POST", path, b'{"scopes": "chat"}')
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "BadRequest")

    issued = api.request("POST", path, b'{"scopes": ["chat.join"], "expiresInMinutes": 120}')
    assert issued.status_code == 200
    assert list(issued.json()) == ["token", "expiresOn"]
    exp = claims(issued.json()["token"])["exp"]
    assert issued.json()["expiresOn"] == datetime.fromtimestamp(exp, UTC).isoformat()  # e.g. ...T10:43:00+00:00

    both = api.request(
        "POST", "/identities?api-version=2025-06-30", b'{"createTokenWithScopes": ["chat"], "expiresInMinutes": 60}'
    )
    assert both.status_code == 201
    assert list(both.json()) == ["identity", "accessToken"]
    assert list(both.json()["accessToken"]) == ["token", "expiresOn"]

    unsupported = api.request("POST", "/identities?api-version=2025-03-13", b"")
    assert (unsupported.status_code, unsupported.json()["error"]["code"]) == (400, "UnsupportedApiVersion")
    unsigned = api.request("POST", "/identities?api-version=2023-10-01", b"", sign=False)
    assert unsigned.status_code == 401


def test_deleting_a_user_removes_it_from_every_room(api: InProcess) -> None:
    identity = CommunicationIdentityClient.from_connection_string(api.connection_string, **api.sdk_options("sync"))
    rooms = RoomsClient.from_connection_string(api.connection_string, **api.sdk_options("sync"))
    leaving, staying = identity.create_user(), identity.create_user()
    room_ids = [
        rooms.create_room(participants=[
            member(leaving, ParticipantRole.PRESENTER),
            member(staying),
        ]).id
        for _ in range(2)
    ]
    identity.delete_user(leaving)
    for room_id in room_ids:
        roster = [(p.communication_identifier.raw_id, p.role) for p in rooms.list_participants(room_id)]
        assert roster == [(staying.raw_id, ParticipantRole.ATTENDEE)]


async def test_rooms_quickstart_with_identity_users(api: InProcess) -> None:
    identity = AsyncCommunicationIdentityClient.from_connection_string(api.connection_string,
                                                                       **api.sdk_options("async"))
    async with identity:
        (presenter, presenter_token), attendee = (
            await identity.create_user_and_token([CommunicationTokenScope.VOIP]),
            await identity.create_user(),
        )
    rooms = RoomsClient.from_connection_string(api.connection_string, **api.sdk_options("sync"))
    room = rooms.create_room(participants=[
        member(presenter, ParticipantRole.PRESENTER),
        member(attendee, ParticipantRole.ATTENDEE),
    ])
    listed = {(p.communication_identifier.raw_id, p.role) for p in rooms.list_participants(room.id)}
    assert listed == {(presenter.raw_id, ParticipantRole.PRESENTER), (attendee.raw_id, ParticipantRole.ATTENDEE)}
    assert claims(presenter_token.token)["skypeid"] == presenter.raw_id.removeprefix("8:")
