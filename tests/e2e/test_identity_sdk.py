"""The Identity SDK (sync and async, both api-versions) against a real `openrooms serve`: the quickstart flow and
error shapes per client variant, users as room participants, and the resource id across restarts (the banner, the
store on disk, the flag and the variable). Every other identity rule is checked in process (tests/api)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.communication.identity import (
    CommunicationIdentityClient,
    CommunicationTokenScope,
)
from azure.communication.identity.aio import CommunicationIdentityClient as AsyncCommunicationIdentityClient
from azure.communication.rooms import ParticipantRole, RoomsClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests.e2e.rooms_support import IDENTITY_VERSIONS, TOKEN_SCOPES, USER_PART, IdentityClient, member
from tests.support import Server, running_server

VERSIONS = IDENTITY_VERSIONS
SCOPES = TOKEN_SCOPES


@dataclass
class Identity(IdentityClient):
    server: Server


@pytest.fixture(params=[(f, v) for f in ("sync", "async") for v in VERSIONS], ids="-".join)
async def identity(request: pytest.FixtureRequest, https_server: Server) -> AsyncIterator[Identity]:
    flavour, version = request.param
    kind = CommunicationIdentityClient if flavour == "sync" else AsyncCommunicationIdentityClient
    client = kind.from_connection_string(https_server.connection_string, connection_verify=https_server.ca,
                                         api_version=version)
    try:
        yield Identity(client, flavour, version, https_server)
    finally:
        if isinstance(client, AsyncCommunicationIdentityClient):  # the sync client of SDK 1.5.0 has no close()
            await client.close()


def banner_resource_id(server: Server) -> str:
    match = re.search(r"resource id +([0-9a-f-]{36})", server.log())
    assert match, server.log()
    return match[1]


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


def jwks(server: Server) -> dict[str, Any]:
    # Unsigned on purpose: verifiers fetch the keys without an access key.
    response = httpx.get(server.endpoint + ".well-known/jwks.json", verify=server.verify)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_quickstart_flow_and_error_shapes(identity: Identity) -> None:
    resource_id = banner_resource_id(identity.server)
    user, token = await identity.call("create_user_and_token", scopes=[CommunicationTokenScope.VOIP])
    assert re.fullmatch(f"8:acs:{resource_id}_{USER_PART}", user.properties["id"])
    assert claims(token.token)["skypeid"] == user.raw_id.removeprefix("8:")
    chat = await identity.call("get_token", user, scopes=["chat"], token_expires_in=timedelta(hours=1))
    assert (claims(chat.token)["exp"] - claims(chat.token)["iat"], expiry(chat)) == (3600, claims(chat.token)["exp"])

    with pytest.raises(HttpResponseError) as exc:
        await identity.call("get_token", user, ["chat", "telepathy"])
    assert error_of(exc) == (400, "ValidationError",
                             f"Scopes: 'telepathy' is not a valid scope. Valid scopes: {SCOPES}.", "Scopes")
    assert await identity.call("revoke_tokens", user) is None
    assert await identity.call("delete_user", user) is None
    with pytest.raises(ResourceNotFoundError) as not_found:
        await identity.call("delete_user", user)
    assert error_of(not_found)[:2] == (404, "IdentityNotFound")


async def test_rooms_quickstart_with_identity_users(https_server: Server) -> None:
    identity = AsyncCommunicationIdentityClient.from_connection_string(https_server.connection_string,
                                                                       connection_verify=https_server.ca)
    async with identity:
        (presenter, presenter_token), attendee = (
            await identity.create_user_and_token([CommunicationTokenScope.VOIP]),
            await identity.create_user(),
        )
    rooms = RoomsClient.from_connection_string(https_server.connection_string, connection_verify=https_server.ca)
    room = rooms.create_room(participants=[
        member(presenter, ParticipantRole.PRESENTER),
        member(attendee, ParticipantRole.ATTENDEE),
    ])
    listed = {(p.communication_identifier.raw_id, p.role) for p in rooms.list_participants(room.id)}
    assert listed == {(presenter.raw_id, ParticipantRole.PRESENTER), (attendee.raw_id, ParticipantRole.ATTENDEE)}
    assert claims(presenter_token.token)["skypeid"] == presenter.raw_id.removeprefix("8:")


def test_resource_id_is_kept_across_restarts_and_can_be_set(tmp_path: Path) -> None:
    def first_user(server: Server) -> str:
        created = server.request("POST", "/identities?api-version=2023-10-01", b"")
        assert created.status_code == 201
        raw_id: str = created.json()["identity"]["id"]
        return raw_id

    with running_server(tmp_path / "kept") as server:
        resource_id = banner_resource_id(server)
        assert first_user(server).startswith(f"8:acs:{resource_id}_")
        key_ids = [k["kid"] for k in jwks(server)["keys"]]
    with running_server(tmp_path / "kept") as restarted:
        assert banner_resource_id(restarted) == resource_id
        assert first_user(restarted).startswith(f"8:acs:{resource_id}_")
        assert [k["kid"] for k in jwks(restarted)["keys"]] == key_ids

    chosen = "2dee53b4-368b-45b4-ab52-8493fb117652"
    with running_server(tmp_path / "kept", "--resource-id", chosen.upper()) as overridden:
        assert banner_resource_id(overridden) == chosen
        assert first_user(overridden).startswith(f"8:acs:{chosen}_")
    with running_server(tmp_path / "memory", "--in-memory", env={"OPENROOMS_RESOURCE_ID": chosen}) as in_memory:
        assert first_user(in_memory).startswith(f"8:acs:{chosen}_")


def test_a_resource_id_that_is_no_guid_is_refused(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "openrooms", "serve", "--location", str(tmp_path), "--resource-id", "contoso"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "--resource-id: resource id 'contoso' is not a GUID" in finished.stderr
