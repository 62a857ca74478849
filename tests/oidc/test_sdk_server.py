"""The official Python SDKs given a TokenCredential, against a real `openrooms serve --oidc-issuer` pointed at the
tests' own issuer on loopback: the process is the point (the flags, the fetch of the issuer's keys over HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.communication.identity import CommunicationIdentityClient
from azure.communication.rooms import RoomsClient
from azure.communication.rooms.aio import RoomsClient as AsyncRoomsClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from tests.oidc.issuer import APP_ID, OBJECT_ID, TEAMS_AUDIENCE, Issuer, new_key
from tests.support import Server, running_server

SCOPE = "https://communication.azure.com//.default"


class IssuerCredential:
    """A TokenCredential handing out the tokens the test chooses, recording the scopes the SDK asks for."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(self.token, 2**31)


class AsyncIssuerCredential:
    """The same, as the async clients take it (an AsyncTokenCredential)."""

    def __init__(self, token: str) -> None:
        self._sync = IssuerCredential(token)
        self.scopes = self._sync.scopes

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return self._sync.get_token(*scopes, **kwargs)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> AsyncIssuerCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        pass


@pytest.fixture
def server(issuer: Issuer, tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path, "--in-memory", "--oidc-issuer", issuer.url) as running:
        yield running


async def test_the_sdks_sign_in_with_a_token_credential(issuer: Issuer, server: Server) -> None:
    credential = AsyncIssuerCredential(issuer.token())
    async with AsyncRoomsClient(server.endpoint, credential, connection_verify=server.ca) as rooms:
        room = await rooms.create_room()
        assert (await rooms.get_room(room.id)).id == room.id
    assert set(credential.scopes) == {SCOPE}

    # the sync clients too, off the event loop that serves the issuer
    sync_credential = IssuerCredential(issuer.token())

    def sync_calls() -> tuple[str, str]:
        with RoomsClient(server.endpoint, sync_credential, connection_verify=server.ca) as sync_rooms:
            room_id = sync_rooms.create_room().id
        identity = CommunicationIdentityClient(server.endpoint, sync_credential, connection_verify=server.ca)
        teams = identity.get_token_for_teams_user(issuer.token(aud=TEAMS_AUDIENCE), APP_ID, OBJECT_ID)
        return room_id, teams.token

    room_id, teams_token = await asyncio.to_thread(sync_calls)
    assert room_id and teams_token
    assert set(sync_credential.scopes) == {SCOPE}


@pytest.mark.parametrize("claims", [{"aud": "https://storage.azure.com"}, {"iss": "https://elsewhere.example/"},
                                    {"lifetime": -600}, {"key": "forged"}],
                         ids=["wrong-audience", "wrong-issuer", "expired", "bad-signature"])
async def test_refused_tokens_are_a_401_the_sdk_reports(issuer: Issuer, server: Server,
                                                        claims: dict[str, Any]) -> None:
    if claims.get("key") == "forged":
        claims = {"key": new_key()}
    credential = AsyncIssuerCredential(issuer.token(**claims))
    async with AsyncRoomsClient(server.endpoint, credential, connection_verify=server.ca) as rooms:
        with pytest.raises((ClientAuthenticationError, HttpResponseError)) as raised:
            await rooms.create_room()
    assert raised.value.status_code == 401
    assert raised.value.error is not None and raised.value.error.code == "Denied"


def test_the_banner_says_loudly_that_signatures_are_not_checked(issuer: Issuer, tmp_path: Path) -> None:
    issuer.url = "http://127.0.0.1:9/tenant"
    with running_server(tmp_path, "--in-memory", "--oidc-issuer", issuer.url,
                        "--oidc-insecure-skip-signature") as running:
        log = running.log()
        response = running.request("POST", "/rooms?api-version=2025-03-13", b"{}", sign=False,
                                   headers={"Authorization": f"Bearer {issuer.token(key=new_key())}"})
    assert "INSECURE" in log and "signatures are NOT checked" in log
    assert response.status_code == 201, response.text
