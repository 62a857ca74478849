"""Bearer tokens of an OpenID Connect issuer on the access-key operations, driven in process (the ASGI app through
httpx) against the tests' own issuer on loopback: what is accepted, what gets 401, key rotation, development mode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from openrooms.config import Settings
from openrooms.http.app import create_app
from openrooms.http.oidc import DEFAULT_REFETCH_INTERVAL_SECONDS
from openrooms.http.pipeline import Pipeline
from openrooms.service.clock import TICKS_PER_SECOND, FixedClock
from openrooms.store.sqlite import SqliteStore
from tests.oidc.issuer import APP_ID, Issuer, new_key
from tests.support import sign_headers

HOST = "test"
NOW = 1_900_000_000  # seconds: the server's clock and the tokens' issue time
ROOMS = "/rooms?api-version=2025-03-13"
IDENTITIES = "/identities?api-version=2025-06-30"

App = Callable[..., Pipeline]


@pytest.fixture
async def make_app(issuer: Issuer) -> AsyncIterator[App]:
    stores: list[SqliteStore] = []

    def make(clock: FixedClock | None = None, **settings: Any) -> Pipeline:
        store = SqliteStore.open(None)
        stores.append(store)
        return create_app(Settings(**{"in_memory": True, "oidc_issuer": issuer.url, **settings}), store=store,
                          clock=clock or FixedClock(NOW * TICKS_PER_SECOND))

    yield make
    for store in stores:
        await store.close()


async def call(app: Pipeline, path: str, token: str | None = None, body: bytes = b"{}",
               headers: dict[str, str] | None = None) -> httpx.Response:
    sent = {"Authorization": f"Bearer {token}"} if token is not None else {}
    sent.update(headers or {})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}") as client:
        return await client.post(path, content=body, headers=sent)


def assert_denied(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "Denied"
    assert reason in error["message"]
    assert response.headers["x-ms-error-code"] == "Denied"
    assert "Bearer" in response.headers["www-authenticate"]


async def test_a_token_of_the_issuer_calls_rooms_and_identity(issuer: Issuer, make_app: App) -> None:
    app = make_app()
    token = issuer.token(now=NOW)
    room = await call(app, ROOMS, token)
    user = await call(app, IDENTITIES, token)
    assert room.status_code == 201, room.text
    assert user.status_code == 201, user.text
    # the keys were fetched once, lazily, and then cached
    assert issuer.fetches == ["/tenant/.well-known/openid-configuration", "/tenant/discovery/keys"]


async def test_hmac_keeps_working_beside_the_issuer(issuer: Issuer) -> None:
    store = SqliteStore.open(None)
    app = create_app(Settings(in_memory=True, oidc_issuer=issuer.url), store=store)  # HMAC: the system clock
    try:
        response = await call(app, ROOMS, headers=sign_headers("POST", ROOMS, HOST, b"{}"))
    finally:
        await store.close()
    assert response.status_code == 201, response.text
    assert issuer.fetches == []  # the issuer is not asked


@pytest.mark.parametrize(("claims", "reason"), [
    ({"aud": "https://storage.azure.com"}, "its audience 'https://storage.azure.com' is not"),
    ({"aud": None}, "it lacks the claim aud"),
    ({"iss": "https://elsewhere.example/tenant"}, "its issuer 'https://elsewhere.example/tenant' is not"),
    ({"exp": NOW - 301}, "it has expired"),
    ({"nbf": NOW + 301}, "it is not valid yet"),
], ids=["wrong-audience", "no-audience", "wrong-issuer", "expired", "not-yet-valid"])
async def test_a_token_with_the_wrong_claims_is_a_401(issuer: Issuer, make_app: App, claims: dict[str, Any],
                                                      reason: str) -> None:
    response = await call(make_app(), ROOMS, issuer.token(now=NOW, **claims))
    assert_denied(response, reason)


async def test_the_clock_skew_is_allowed_either_side(issuer: Issuer, make_app: App) -> None:
    app = make_app()
    assert (await call(app, ROOMS, issuer.token(now=NOW, exp=NOW - 299))).status_code == 201
    assert (await call(app, ROOMS, issuer.token(now=NOW, nbf=NOW + 299))).status_code == 201


async def test_a_token_signed_by_another_key_under_the_issuers_kid_is_a_401(issuer: Issuer, make_app: App) -> None:
    forger = new_key()
    forged = issuer.token(now=NOW, key=forger)
    _, payload, signature = forged.split(".")
    genuine_header = issuer.token(now=NOW).split(".")[0]  # names the issuer's kid
    response = await call(make_app(), ROOMS, f"{genuine_header}.{payload}.{signature}")
    assert_denied(response, "its signature is not valid")


async def test_a_token_naming_an_unknown_key_is_a_401(issuer: Issuer, make_app: App) -> None:
    response = await call(make_app(), ROOMS, issuer.token(now=NOW, key=new_key()))
    assert_denied(response, "is not among the issuer's keys")


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", ""])
async def test_a_malformed_bearer_token_is_a_401(make_app: App, token: str) -> None:
    assert_denied(await call(make_app(), ROOMS, token), "it is not a JWT")


async def test_an_unsigned_token_is_a_401(issuer: Issuer, make_app: App) -> None:
    _, payload, _ = issuer.token(now=NOW).split(".")
    none_header = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
    assert_denied(await call(make_app(), ROOMS, f"{none_header}.{payload}."), "its algorithm 'none'")


async def test_rotated_keys_are_fetched_again_when_a_token_names_the_new_kid(issuer: Issuer, make_app: App) -> None:
    clock = FixedClock(NOW * TICKS_PER_SECOND)
    app = make_app(clock=clock)
    assert (await call(app, ROOMS, issuer.token(now=NOW))).status_code == 201
    issuer.rotate()
    clock.advance(DEFAULT_REFETCH_INTERVAL_SECONDS * TICKS_PER_SECOND)
    later = NOW + DEFAULT_REFETCH_INTERVAL_SECONDS
    assert (await call(app, ROOMS, issuer.token(now=later))).status_code == 201
    assert len(issuer.fetches) == 4  # discovery and keys, twice


async def test_a_flood_of_unknown_kids_fetches_the_keys_at_most_once_per_interval(issuer: Issuer,
                                                                                   make_app: App) -> None:
    clock = FixedClock(NOW * TICKS_PER_SECOND)
    app = make_app(clock=clock)
    assert (await call(app, ROOMS, issuer.token(now=NOW))).status_code == 201
    for _ in range(20):
        response = await call(app, ROOMS, issuer.token(now=NOW, key=new_key()))
        assert response.status_code == 401
    assert len(issuer.fetches) == 2  # only the first fetch: each later unknown kid waits for the interval
    clock.advance(DEFAULT_REFETCH_INTERVAL_SECONDS * TICKS_PER_SECOND)
    await call(app, ROOMS, issuer.token(now=NOW, key=new_key()))
    assert len(issuer.fetches) == 4


async def test_an_unreachable_issuer_is_a_401_not_a_500(issuer: Issuer, make_app: App) -> None:
    token = issuer.token(now=NOW)
    app = make_app(oidc_issuer=issuer.url + "/missing")  # its discovery document: 404
    assert_denied(await call(app, ROOMS, token), "the issuer's keys are unavailable")


async def test_allowed_application_and_object_ids(issuer: Issuer, make_app: App) -> None:
    app = make_app(oidc_allowed_app_ids=f"{APP_ID},other-app", oidc_allowed_object_ids="allowed-oid")
    assert (await call(app, ROOMS, issuer.token(now=NOW))).status_code == 201  # appid allowed
    v2 = issuer.token(now=NOW, appid=None, azp="other-app", oid="someone")  # v2 and Keycloak: azp
    assert (await call(app, ROOMS, v2)).status_code == 201
    by_oid = issuer.token(now=NOW, appid="stranger", oid="allowed-oid")
    assert (await call(app, ROOMS, by_oid)).status_code == 201
    assert_denied(await call(app, ROOMS, issuer.token(now=NOW, appid="stranger", oid="someone")),
                  "neither its application id (stranger) nor its object id (someone) is allowed")


async def test_a_required_role(issuer: Issuer, make_app: App) -> None:
    app = make_app(oidc_required_role="Rooms.Admin")
    ok = await call(app, ROOMS, issuer.token(now=NOW, roles=["Reader", "Rooms.Admin"]))
    assert ok.status_code == 201
    assert_denied(await call(app, ROOMS, issuer.token(now=NOW, roles=["Reader"])), "it lacks the role Rooms.Admin")
    assert_denied(await call(app, ROOMS, issuer.token(now=NOW)), "it lacks the role Rooms.Admin")


async def test_a_configured_audience(issuer: Issuer, make_app: App) -> None:
    app = make_app(oidc_audience="api://openrooms")
    assert (await call(app, ROOMS, issuer.token(now=NOW, aud="api://openrooms"))).status_code == 201
    assert_denied(await call(app, ROOMS, issuer.token(now=NOW)), "is not 'api://openrooms'")


async def test_development_mode_skips_only_the_signature(issuer: Issuer, make_app: App) -> None:
    app = make_app(oidc_insecure_skip_signature=True)
    assert (await call(app, ROOMS, issuer.token(now=NOW, key=new_key()))).status_code == 201
    assert issuer.fetches == []  # no keys needed
    assert_denied(await call(app, ROOMS, issuer.token(now=NOW, key=new_key(), aud="x")), "its audience")
    assert_denied(await call(app, ROOMS, issuer.token(now=NOW, key=new_key(), exp=NOW - 400)), "it has expired")
    assert_denied(await call(app, ROOMS, "not-a-jwt"), "it is not a JWT")


async def test_without_an_issuer_a_bearer_token_gets_the_hmac_refusal(issuer: Issuer) -> None:
    store = SqliteStore.open(None)
    app = create_app(Settings(in_memory=True), store=store)
    response = await call(app, ROOMS, issuer.token(now=NOW))
    await store.close()
    assert response.status_code == 401
    assert "Unsupported authorization scheme 'Bearer'" in json.loads(response.text)["error"]["message"]
