"""POST /teamsUser/:exchangeAccessToken with an Entra ID issuer configured, in process: a Teams user's token of the
issuer becomes an ACS token of 8:orgid:<oid>; anything else gets the real service's 401."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt as pyjwt
import pytest

from openrooms.config import Settings
from openrooms.http.app import create_app
from openrooms.http.pipeline import Pipeline
from openrooms.service.clock import TICKS_PER_SECOND, FixedClock
from openrooms.store.sqlite import SqliteStore
from tests.oidc.issuer import APP_ID, OBJECT_ID, TEAMS_AUDIENCE, Issuer, new_key
from tests.oidc.test_bearer import HOST, NOW
from tests.support import sign_headers

EXCHANGE = "/teamsUser/:exchangeAccessToken?api-version=2025-06-30"
INVALID = {"error": {"code": "InvalidAccessToken", "message": "Provided access token is not valid."}}


@pytest.fixture
async def app(issuer: Issuer) -> AsyncIterator[Pipeline]:
    store = SqliteStore.open(None)
    yield create_app(Settings(in_memory=True, oidc_issuer=issuer.url), store=store,
                     clock=FixedClock(NOW * TICKS_PER_SECOND))
    await store.close()


async def exchange(app: Pipeline, issuer: Issuer, token: str, app_id: str = APP_ID,
                   user_id: str = OBJECT_ID) -> httpx.Response:
    """Exchanged by an application signed in with the issuer (as ACS, the call needs the app's credential)."""
    body = json.dumps({"token": token, "appId": app_id, "userId": user_id}).encode()
    headers = {"Authorization": f"Bearer {issuer.token(now=NOW)}", "content-type": "application/json"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}") as client:
        return await client.post(EXCHANGE, content=body, headers=headers)


def teams_token(issuer: Issuer, **claims: Any) -> str:
    return issuer.token(now=NOW, lifetime=3900, **{"aud": TEAMS_AUDIENCE, **claims})


async def test_a_teams_users_token_becomes_an_acs_token_of_that_user(app: Pipeline, issuer: Issuer) -> None:
    response = await exchange(app, issuer, teams_token(issuer))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expiresOn"] == "2030-03-17T18:51:40+00:00"  # the Entra ID token's exp (NOW + 3900 s)
    claims = pyjwt.decode(body["token"], options={"verify_signature": False})
    assert claims["skypeid"] == f"orgid:{OBJECT_ID}"
    assert claims["exp"] == NOW + 3900


async def test_a_v2_token_names_the_application_in_azp(app: Pipeline, issuer: Issuer) -> None:
    response = await exchange(app, issuer, teams_token(issuer, appid=None, azp=APP_ID))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("claims", "app_id", "user_id"), [
    ({"aud": "https://communication.azure.com"}, APP_ID, OBJECT_ID),  # an application's token, not a Teams user's
    ({"exp": NOW - 400}, APP_ID, OBJECT_ID),
    ({"iss": "https://elsewhere.example/"}, APP_ID, OBJECT_ID),
    ({}, "another-app", OBJECT_ID),
    ({}, APP_ID, "another-user"),
], ids=["wrong-audience", "expired", "wrong-issuer", "other-app", "other-user"])
async def test_anything_else_is_the_real_services_401(app: Pipeline, issuer: Issuer, claims: dict[str, Any],
                                                     app_id: str, user_id: str) -> None:
    response = await exchange(app, issuer, teams_token(issuer, **claims), app_id, user_id)
    assert response.status_code == 401
    assert response.json() == INVALID


async def test_a_forged_or_malformed_token_is_the_real_services_401(app: Pipeline, issuer: Issuer) -> None:
    for token in (issuer.token(now=NOW, aud=TEAMS_AUDIENCE, key=new_key()), "sanitized"):
        response = await exchange(app, issuer, token)
        assert response.status_code == 401
        assert response.json() == INVALID


async def test_a_body_without_the_user_is_a_400(app: Pipeline, issuer: Issuer) -> None:
    headers = {"Authorization": f"Bearer {issuer.token(now=NOW)}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}") as client:
        response = await client.post(EXCHANGE, content=b'{"token": "x", "appId": "y"}', headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["target"] == "$"


async def test_without_an_issuer_the_exchange_stays_unavailable(issuer: Issuer) -> None:
    store = SqliteStore.open(None)
    app = create_app(Settings(in_memory=True, oidc_issuer=None), store=store)
    body = json.dumps({"token": "t", "appId": APP_ID, "userId": OBJECT_ID}).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}") as client:
        response = await client.post(EXCHANGE, content=body, headers=sign_headers("POST", EXCHANGE, HOST, body))
    await store.close()
    assert response.status_code == 501
