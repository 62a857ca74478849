"""Console sign-in with the OpenID Connect issuer, its rules in process: the console's ASGI app against an issuer of
the tests' own on loopback (tests/oidc/issuer.py: RSA keys, discovery, JWKS) that also answers the token endpoint
with ID tokens it signs as each test asks. The browser's part (the issuer's login page) is the test's: it reads
the authorization request the console sent the browser to, and grants a code for it.

The whole flow against a certified OpenID Provider in Chromium is test_console_oidc_browser.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import re
import secrets
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from openrooms.console import oidc
from openrooms.console import session as sessions
from openrooms.service.console_sessions import FAILURE_WINDOW_SECONDS, MAX_FAILURES
from tests.api.conftest import in_process
from tests.api.inprocess import InProcess
from tests.console.client import ConsoleClient, csrf_of
from tests.console.test_console_rules import console_of, guarded_routes
from tests.oidc.issuer import Issuer
from tests.support import free_port, refusing_port

CLIENT_ID = "openrooms-console"
CLIENT_SECRET = "a secret: with spaces & symbols"
ROLE = "Console.Admin"
LISTED = "5d7c1e2a-listed-person"
CALLBACK = "https://openrooms.test/console/sign-in/oidc/callback"


class CodeIssuer(Issuer):
    """The tests' issuer with an authorization code grant: `grant()` is the person signing in at the issuer."""

    def __init__(self) -> None:
        super().__init__()
        self.codes: dict[str, tuple[dict[str, str], dict[str, Any], str | None]] = {}
        self.token_requests: list[tuple[dict[str, str], str | None]] = []  # form, Authorization header
        self.token_status: int | None = None  # the token endpoint's failure, when a test wants one

    def grant(self, authorization: dict[str, str], *, id_token: str | None = None, **claims: Any) -> str:
        """A code for this authorization request (its nonce and the client as audience, unless `claims` say
        otherwise), or one that answers `id_token` as it is."""
        code = secrets.token_urlsafe(12)
        self.codes[code] = (authorization, {"aud": CLIENT_ID, "nonce": authorization["nonce"], **claims}, id_token)
        return code

    async def _token(self, request: web.Request) -> web.Response:
        form = {name: str(value) for name, value in (await request.post()).items()}
        self.token_requests.append((form, request.headers.get("Authorization")))
        if self.token_status is not None:
            return web.Response(status=self.token_status, text="down for maintenance")
        grant = self.codes.pop(form.get("code", ""), None)  # a code serves once
        if grant is None or form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "invalid_grant", "error_description": "unknown code"}, status=400)
        authorization, claims, id_token = grant
        verifier = form.get("code_verifier", "").encode()
        computed = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
        if computed != authorization["code_challenge"] or form.get("redirect_uri") != authorization["redirect_uri"]:
            return web.json_response({"error": "invalid_grant", "error_description": "PKCE or redirect"}, status=400)
        return web.json_response({"access_token": "opaque", "token_type": "Bearer",
                                  "id_token": id_token or self.token(**claims)})

    async def _discovery(self, request: web.Request) -> web.Response:
        self.fetches.append(request.path)
        return web.json_response({
            "issuer": self.url, "jwks_uri": self.url + "/discovery/keys",
            "authorization_endpoint": self.url + "/authorize", "token_endpoint": self.url + "/token",
            "end_session_endpoint": self.url + "/logout",
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": ["RS256"]})

    @contextlib.asynccontextmanager
    async def serving_on(self, port: int) -> Any:
        app = web.Application()
        app.router.add_get("/tenant/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/tenant/discovery/keys", self._jwks)
        app.router.add_post("/tenant/token", self._token)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/tenant"
        try:
            yield self
        finally:
            await runner.cleanup()


@pytest.fixture(scope="module")
def issuer() -> Iterator[CodeIssuer]:
    """The issuer on a loop of its own (its URL is a setting of the app, known before the app starts)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    served = CodeIssuer()
    serving = served.serving_on(free_port())
    try:
        asyncio.run_coroutine_threadsafe(serving.__aenter__(), loop).result()
        yield served
        asyncio.run_coroutine_threadsafe(serving.__aexit__(None, None, None), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@pytest.fixture(scope="module")
def target(issuer: CodeIssuer) -> Iterator[InProcess]:
    with in_process("sqlite", oidc_issuer=issuer.url, console_oidc_client_id=CLIENT_ID,
                    console_oidc_client_secret=CLIENT_SECRET, console_oidc_required_role=ROLE,
                    console_oidc_allowed_subjects=f"someone-else,{LISTED}") as app:
        yield app


ADDRESSES = (f"198.51.100.{n}" for n in itertools.count(1))


@pytest.fixture
def browser(target: InProcess) -> Iterator[ConsoleClient]:
    client = ConsoleClient(target.emulator, address=next(ADDRESSES))  # each test's failures only
    try:
        yield client
    finally:
        client.close()


def authorization_of(browser: ConsoleClient, issuer: CodeIssuer, path: str = "/console/sign-in/oidc",
                     ) -> dict[str, str]:
    """Leave for the issuer: the authorization request the console sends the browser to."""
    response = browser.get(path)
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == issuer.url + "/authorize"
    return {name: values[0] for name, values in parse_qs(location.query).items()}


def come_back(browser: ConsoleClient, **query: str) -> httpx.Response:
    return browser.get("/console/sign-in/oidc/callback", params=query)


def sign_in(browser: ConsoleClient, issuer: CodeIssuer, **claims: Any) -> httpx.Response:
    authorization = authorization_of(browser, issuer)
    return come_back(browser, code=issuer.grant(authorization, **claims), state=authorization["state"])


def set_cookie(response: httpx.Response, name: str) -> set[str]:
    value = next(value for key, value in response.headers.multi_items()
                 if key == "set-cookie" and value.startswith(name + "="))
    return {part.strip() for part in value.split(";")}


def refused(response: httpx.Response, browser: ConsoleClient, status: int, words: str) -> None:
    """The sign-in page again, with the reason, and no session."""
    assert response.status_code == status, response.text
    assert words in re.sub(r"\s+", " ", response.text.replace("&#39;", "'"))
    assert 'action="/console/sign-in"' in response.text
    assert sessions.COOKIE not in browser.client.cookies
    assert browser.get("/console/").status_code == 303


def test_the_sign_in_page_offers_the_issuer(browser: ConsoleClient) -> None:
    page = browser.get("/console/sign-in?next=/console/rooms")
    assert 'href="/console/sign-in/oidc?next=/console/rooms"' in page.text
    assert "Sign in with 127.0.0.1" in page.text
    assert "Access key" in page.text  # beside the access key


def test_a_person_with_the_role_signs_in(browser: ConsoleClient, issuer: CodeIssuer) -> None:
    authorization = authorization_of(browser, issuer, "/console/sign-in/oidc?next=/console/rooms")
    assert {name: authorization[name] for name in ("response_type", "client_id", "redirect_uri", "scope",
                                                  "code_challenge_method")} == {
        "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": CALLBACK, "scope": "openid profile email",
        "code_challenge_method": "S256"}
    assert len({authorization["state"], authorization["nonce"], authorization["code_challenge"]}) == 3
    code = issuer.grant(authorization, roles=["Other", ROLE], name="Ada Lovelace", email="ada@example.com")
    landed = come_back(browser, code=code, state=authorization["state"])
    assert landed.status_code == 200
    assert 'http-equiv="refresh" content="0; url=/console/rooms"' in landed.text
    assert "Ada Lovelace (ada@example.com)" in landed.text
    assert {"HttpOnly", "Secure", "SameSite=strict", "Path=/console"} <= set_cookie(landed, sessions.COOKIE)
    assert browser.get("/console/rooms").status_code == 200
    assert "Signed in as Ada Lovelace (ada@example.com)" in browser.get("/console/").text

    form, authorization_header = issuer.token_requests[-1]
    assert form["code"] == code and form["redirect_uri"] == CALLBACK and "client_secret" not in form
    assert authorization_header is not None
    client_id, _, secret = base64.b64decode(authorization_header.removeprefix("Basic ")).decode().partition(":")
    assert (client_id, secret) == (CLIENT_ID, "a+secret%3A+with+spaces+%26+symbols")  # form-encoded (RFC 6749)


def test_the_flow_cookie_is_lax_short_lived_and_for_the_callback_only(browser: ConsoleClient,
                                                                    issuer: CodeIssuer) -> None:
    response = browser.get("/console/sign-in/oidc")
    attributes = set_cookie(response, oidc.FLOW_COOKIE)
    assert {"HttpOnly", "Secure", "SameSite=lax", "Path=/console/sign-in/oidc",
            f"Max-Age={oidc.FLOW_SECONDS}"} <= attributes


def test_a_listed_subject_signs_in_without_the_role(browser: ConsoleClient, issuer: CodeIssuer) -> None:
    assert sign_in(browser, issuer, oid=LISTED, name=None).status_code == 200
    assert browser.get("/console/").status_code == 200


def test_a_person_neither_listed_nor_with_the_role_is_refused(browser: ConsoleClient, issuer: CodeIssuer) -> None:
    response = sign_in(browser, issuer, roles=["Other"], name="Mallory")
    refused(response, browser, 403, "Mallory may not sign in to this console")


def test_a_state_that_is_not_this_sign_ins_is_refused(browser: ConsoleClient, issuer: CodeIssuer) -> None:
    authorization = authorization_of(browser, issuer)
    code = issuer.grant(authorization, roles=[ROLE])
    refused(come_back(browser, code=code, state="forged"), browser, 401, "its state does not match")
    assert code in issuer.codes  # never exchanged


def test_a_callback_without_the_flow_cookie_is_refused(target: InProcess, browser: ConsoleClient,
                                                       issuer: CodeIssuer) -> None:
    authorization = authorization_of(browser, issuer)
    other = ConsoleClient(target.emulator, address=next(ADDRESSES))  # another browser: the victim of a forged callback
    try:
        response = come_back(other, code=issuer.grant(authorization, roles=[ROLE]), state=authorization["state"])
        refused(response, other, 401, "not started here")
    finally:
        other.close()


@pytest.mark.parametrize(("claims", "words"), [
    ({"nonce": None}, "its nonce is not this sign-in's"),
    ({"nonce": "another-sign-ins-nonce"}, "its nonce is not this sign-in's"),
    ({"aud": "another-client"}, "its audience 'another-client' is not 'openrooms-console'"),
    ({"aud": [CLIENT_ID, "another-client"], "azp": "another-client"}, "issued to another client"),
    ({"iss": "https://elsewhere.example/"}, "its issuer 'https://elsewhere.example/' is not the configured one"),
    ({"exp": 1_000_000_000}, "it has expired"),
    ({"nbf": 4_000_000_000}, "it is not valid yet"),
])
def test_an_id_token_that_does_not_check_out_is_refused(browser: ConsoleClient, issuer: CodeIssuer,
                                                        claims: dict[str, Any], words: str) -> None:
    refused(sign_in(browser, issuer, roles=[ROLE], **claims), browser, 401, words)


def test_an_id_token_signed_otherwise_is_refused(browser: ConsoleClient, issuer: CodeIssuer) -> None:
    authorization = authorization_of(browser, issuer)
    claims = {"iss": issuer.url, "aud": CLIENT_ID, "nonce": authorization["nonce"], "sub": LISTED,
              "exp": 4_000_000_000}
    hs256 = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(CLIENT_SECRET.encode() * 2))
    code = issuer.grant(authorization, id_token=hs256)
    refused(come_back(browser, code=code, state=authorization["state"]), browser, 401,
            "its algorithm 'HS256' is not one of")
    authorization = authorization_of(browser, issuer)
    kid = issuer.key.kid
    assert kid is not None
    impostor = RSAKey.generate_key(2048, parameters={"kid": kid})  # the issuer's key id, not its key
    unknown = issuer.token(key=impostor, aud=CLIENT_ID, nonce=authorization["nonce"], oid=LISTED)
    code = issuer.grant(authorization, id_token=unknown)
    refused(come_back(browser, code=code, state=authorization["state"]), browser, 401, "its signature is not valid")


def test_the_issuers_refusal_is_shown(browser: ConsoleClient, issuer: CodeIssuer) -> None:
    authorization = authorization_of(browser, issuer)
    response = come_back(browser, state=authorization["state"], error="access_denied",
                         error_description="The user cancelled")
    refused(response, browser, 401, "The issuer did not sign you in: access_denied (The user cancelled).")


def test_a_code_that_the_issuer_refuses_is_shown(browser: ConsoleClient, issuer: CodeIssuer) -> None:
    authorization = authorization_of(browser, issuer)
    response = come_back(browser, code="made-up", state=authorization["state"])
    refused(response, browser, 401, "The issuer refused the authorization code: invalid_grant (unknown code).")


def test_failures_count_toward_the_limit(browser: ConsoleClient, issuer: CodeIssuer) -> None:
    for _ in range(MAX_FAILURES):
        authorization = authorization_of(browser, issuer)
        assert come_back(browser, code="made-up", state=authorization["state"]).status_code == 401
    limited = browser.get("/console/sign-in/oidc")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= FAILURE_WINDOW_SECONDS + 1
    # The access key is limited too, the same way.
    assert browser.sign_in("d3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmc=").status_code == 429


def test_an_unreachable_issuer_is_shown_on_the_sign_in_page() -> None:
    with refusing_port() as port, in_process("sqlite", oidc_issuer=f"http://127.0.0.1:{port}/tenant",
                                             console_oidc_client_id=CLIENT_ID, console_oidc_allow_any_user=True) as app:
        client = ConsoleClient(app.emulator, address=next(ADDRESSES))
        try:
            response = client.get("/console/sign-in/oidc")
            refused(response, client, 502, "openid-configuration")
            assert "ClientConnectorError" in response.text or "Cannot connect" in response.text
        finally:
            client.close()


def test_issuer_keys_unreachable_at_the_callback_is_shown(target: InProcess, browser: ConsoleClient,
                                                          issuer: CodeIssuer) -> None:
    console = console_of(target.emulator)
    assert console.oidc is not None
    real = console.oidc._verify

    async def keys_unavailable(token: str, audience: str) -> dict[str, Any]:
        raise oidc.IssuerUnreachable("The issuer's keys are unavailable; try again later.")

    console.oidc._verify = keys_unavailable
    try:
        refused(sign_in(browser, issuer, roles=[ROLE]), browser, 502, "The issuer's keys are unavailable")
    finally:
        console.oidc._verify = real


def test_a_public_client_sends_its_id_and_no_secret(issuer: CodeIssuer) -> None:
    with in_process("sqlite", oidc_issuer=issuer.url, console_oidc_client_id=CLIENT_ID,
                    console_oidc_allow_any_user=True) as app:
        client = ConsoleClient(app.emulator, address=next(ADDRESSES))
        try:
            assert sign_in(client, issuer, name="Anyone").status_code == 200
            form, authorization_header = issuer.token_requests[-1]
            assert form["client_id"] == CLIENT_ID and "client_secret" not in form and authorization_header is None
            assert client.get("/console/").status_code == 200
        finally:
            client.close()


def test_an_answer_of_another_issuer_is_refused(browser: ConsoleClient, issuer: CodeIssuer) -> None:
    authorization = authorization_of(browser, issuer)
    code = issuer.grant(authorization, roles=[ROLE])
    response = come_back(browser, code=code, state=authorization["state"], iss="https://mix-up.example/")
    refused(response, browser, 401, "The answer came from another issuer (https://mix-up.example/)")


def test_a_token_endpoint_that_is_down_is_shown(browser: ConsoleClient, issuer: CodeIssuer) -> None:
    issuer.token_status = 503
    try:
        refused(sign_in(browser, issuer, roles=[ROLE]), browser, 502, "The issuer's token endpoint answered 503")
    finally:
        issuer.token_status = None


def test_nothing_else_answers_without_a_session(target: InProcess, browser: ConsoleClient) -> None:
    routes = [(method, path) for method, path in guarded_routes(console_of(target.emulator))
              if not path.startswith("/console/sign-in/oidc")]
    assert len(routes) >= 19
    for method, path in routes:
        response = browser.request(method, path, data={"csrf": "x"} if method == "POST" else None)
        assert response.status_code == (303 if method == "GET" else 401), (method, path)


def test_sign_out_offers_to_sign_out_at_the_issuer_too(target: InProcess, browser: ConsoleClient,
                                                       issuer: CodeIssuer) -> None:
    assert sign_in(browser, issuer, roles=[ROLE]).status_code == 200
    browser.csrf = csrf_of(browser.get("/console/"))
    out = browser.post("/console/sign-out", {})
    assert (out.status_code, out.headers["location"]) == (303, "/console/sign-in?signed-out=issuer")
    assert browser.get("/console/").status_code == 303
    page = browser.get(out.headers["location"])
    assert f'href="{issuer.url}/logout?client_id={CLIENT_ID}"' in page.text
    # Signed in with an access key, sign-out says nothing of the issuer.
    other = ConsoleClient(target.emulator, address=next(ADDRESSES))
    try:
        assert other.sign_in(target.emulator.access_key).status_code == 303
        other.csrf = csrf_of(other.get("/console/"))
        assert other.post("/console/sign-out", {}).headers["location"] == "/console/sign-in"
    finally:
        other.close()


def test_the_console_says_who_is_signed_in_and_keeps_it_when_the_keys_rotate(
        browser: ConsoleClient, issuer: CodeIssuer, target: InProcess) -> None:
    other = ConsoleClient(target.emulator, address=next(ADDRESSES))
    try:
        assert other.sign_in(target.emulator.access_key).status_code == 303
        assert "Signed in with the primary access key" in other.get("/console/").text
    finally:
        other.close()
    assert sign_in(browser, issuer, oid=LISTED, name="Grace Hopper", email=None).status_code == 200
    browser.csrf = csrf_of(browser.get("/console/"))
    rotated = browser.post("/console/keys/rotate", {"name": "secondary", "confirm": "yes"})
    assert rotated.status_code == 200, rotated.text
    assert "Signed in as Grace Hopper" in browser.get("/console/").text
