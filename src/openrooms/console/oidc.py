"""Console sign-in with the OpenID Connect issuer (`--oidc-issuer`): the authorization code flow with PKCE.

The sign-in page links to `/console/sign-in/oidc`, which sends the browser to the issuer's `authorization_endpoint`
(from its discovery document) with a fresh `state`, `nonce` and PKCE challenge (S256); the three secrets and the
page to land on travel in a short-lived cookie of their own. The issuer sends the browser back to
`/console/sign-in/oidc/callback?code=...&state=...`: the state must match the cookie's, the code is exchanged at the
`token_endpoint` (with the PKCE verifier, and the client secret of a confidential client), and the ID token must
be signed by one of the issuer's keys with an allowed algorithm, name the issuer and this client (`aud`), be
within its validity window (with the clock skew) and carry the cookie's nonce. Then the person must be allowed:
their `roles` carry the required role, or their `oid` or `sub` is listed, or any person of the issuer is allowed
(an explicit setting).

The ID token's signature and claims are checked by the issuer's key set that the API's bearer tokens use too
(`openrooms.http.oidc`, handed in by `http.app` as `verify`): the console itself fetches only the discovery
document and posts to the token endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

log = logging.getLogger("openrooms")

START_PATH = "/sign-in/oidc"  # under the console's prefix
CALLBACK_PATH = "/sign-in/oidc/callback"
FLOW_COOKIE = "openrooms_console_oidc"
FLOW_SECONDS = 600  # from leaving for the issuer to coming back
SCOPES = "openid profile email"
DISCOVERY_SECONDS = 3600  # how long the discovery document is kept
TIMEOUT_SECONDS = 10

# GET a URL and answer its JSON; POST a form (with headers) and answer the status and JSON. Tests pass their own.
FetchJson = Callable[[str], Awaitable[Any]]
PostForm = Callable[[str, Mapping[str, str], Mapping[str, str]], Awaitable[tuple[int, Any]]]
# The claims of an ID token for an audience (signature, iss, aud, exp and nbf checked), or SignInRefused /
# IssuerUnreachable.
Verify = Callable[[str, str], Awaitable[dict[str, Any]]]


class SignInFailed(Exception):
    """A sign-in with the issuer that did not succeed; `str()` is what the sign-in page shows, `status` its code."""

    status = 401


class SignInRefused(SignInFailed):
    """The issuer's answer or the person is refused (a bad state, a token that does not check out, not allowed)."""


class NotAllowed(SignInRefused):
    """The ID token checks out, but its person may not sign in to this console."""

    status = 403


class IssuerUnreachable(SignInFailed):
    """The issuer's discovery document, keys or token endpoint could not be reached or read."""

    status = 502


@dataclass(frozen=True)
class OidcClient:
    """The console's client at the issuer, and who may sign in through it."""

    issuer: str
    client_id: str
    client_secret: str | None = None  # a confidential client; None: a public client (PKCE alone)
    redirect_uri: str | None = None  # fixed (behind a proxy); None: from each request's own origin
    required_role: str | None = None
    allowed_subjects: tuple[str, ...] = ()  # `oid` or `sub` values
    allow_any_user: bool = False

    @property
    def label(self) -> str:
        """The issuer as the sign-in button names it: its host."""
        return urlsplit(self.issuer).hostname or self.issuer


@dataclass(frozen=True)
class Principal:
    """Who signed in: the issuer's subject and what the console shows of them."""

    subject: str  # `oid` when the issuer gives one (Entra ID), else `sub`
    name: str
    email: str | None

    @property
    def shown(self) -> str:
        return f"{self.name} ({self.email})" if self.email and self.email != self.name else self.name


@dataclass(frozen=True)
class Flow:
    """What the browser keeps between leaving for the issuer and coming back (the flow cookie)."""

    state: str
    nonce: str
    verifier: str
    next_path: str
    expires_at: int

    def cookie(self) -> str:
        payload = json.dumps([self.state, self.nonce, self.verifier, self.next_path, self.expires_at])
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    @classmethod
    def of_cookie(cls, value: str | None, now: float) -> Flow | None:
        """The flow in a cookie; None when it is missing, malformed or expired."""
        if not value:
            return None
        try:
            state, nonce, verifier, next_path, expires_at = json.loads(base64.urlsafe_b64decode(value + "=" * (
                -len(value) % 4)))
        except (ValueError, TypeError):
            return None
        if not all(isinstance(part, str) for part in (state, nonce, verifier, next_path)):
            return None
        if not isinstance(expires_at, int) or expires_at <= now:
            return None
        return cls(state, nonce, verifier, next_path, expires_at)


def challenge(verifier: str) -> str:
    """PKCE's S256 code challenge of a verifier."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")


async def aiohttp_fetch_json(url: str) -> Any:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as session, \
            session.get(url) as response:
        if response.status != 200:
            raise IssuerUnreachable(f"The issuer could not be reached ({url} answered {response.status}); try "
                                    "again later.")
        return await response.json(content_type=None)


async def aiohttp_post_form(url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> tuple[int, Any]:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as session, \
            session.post(url, data=dict(form), headers={"Accept": "application/json", **headers}) as response:
        try:
            body = await response.json(content_type=None)
        except ValueError:
            body = None
        return response.status, body


class OidcSignIn:
    def __init__(self, client: OidcClient, verify: Verify, *, fetch_json: FetchJson = aiohttp_fetch_json,
                 post_form: PostForm = aiohttp_post_form, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self._verify = verify
        self._fetch_json = fetch_json
        self._post_form = post_form
        self._clock = clock
        self._discovery: dict[str, Any] | None = None
        self._discovered_at = 0.0

    async def discovery(self) -> dict[str, Any]:
        """The issuer's discovery document (kept for an hour)."""
        now = self._clock()
        if self._discovery is None or now - self._discovered_at >= DISCOVERY_SECONDS:
            url = self.client.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                document = await self._fetch_json(url)
            except IssuerUnreachable:
                raise
            except Exception as exc:  # connection refused, timeouts, bad JSON
                raise IssuerUnreachable(f"The issuer could not be reached ({url}: {type(exc).__name__}: {exc}); "
                                        "try again later.") from exc
            if not isinstance(document, dict) or not all(
                    isinstance(document.get(name), str) for name in ("authorization_endpoint", "token_endpoint")):
                raise IssuerUnreachable(f"The issuer's discovery document ({url}) names no authorization_endpoint "
                                        "and token_endpoint.")
            self._discovery, self._discovered_at = document, now
        return self._discovery

    async def end_session_url(self) -> str | None:
        """Where a person signs out at the issuer too (RP-initiated logout: its `end_session_endpoint` with this
        client's id), if the issuer names one and can be reached."""
        try:
            endpoint = (await self.discovery()).get("end_session_endpoint")
        except IssuerUnreachable:
            return None
        if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("https", "http"):
            return None
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode({'client_id': self.client.client_id})}"

    async def start(self, redirect_uri: str, next_path: str) -> tuple[str, Flow]:
        """Where to send the browser at the issuer, and the flow its cookie keeps."""
        endpoint = (await self.discovery())["authorization_endpoint"]
        flow = Flow(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48), next_path,
                    int(self._clock()) + FLOW_SECONDS)
        query = urlencode({
            "response_type": "code", "client_id": self.client.client_id, "redirect_uri": redirect_uri,
            "scope": SCOPES, "state": flow.state, "nonce": flow.nonce,
            "code_challenge": challenge(flow.verifier), "code_challenge_method": "S256",
        })
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", flow

    async def finish(self, query: Mapping[str, str], flow: Flow | None, redirect_uri: str) -> Principal:
        """The person the issuer's answer (the callback's query) signs in; SignInFailed otherwise."""
        if flow is None:
            raise SignInRefused("The sign-in with the issuer took too long or was not started here; try again.")
        if not hmac.compare_digest(query.get("state", "").encode(), flow.state.encode()):
            raise SignInRefused("The issuer's answer does not belong to this sign-in (its state does not match); "
                                "try again.")
        if "iss" in query and query["iss"] != self.client.issuer:  # RFC 9207, where the issuer sends it
            raise SignInRefused(f"The answer came from another issuer ({query['iss']}) than this console's.")
        if "error" in query:
            described = query.get("error_description")
            raise SignInRefused(f"The issuer did not sign you in: {query['error']}"
                                + (f" ({described})." if described else "."))
        code = query.get("code")
        if not code:
            raise SignInRefused("The issuer's answer carries no authorization code; try again.")
        id_token = await self._exchange(code, flow, redirect_uri)
        claims = await self._verify(id_token, self.client.client_id)
        return self._principal(claims, flow)

    async def _exchange(self, code: str, flow: Flow, redirect_uri: str) -> str:
        document = await self.discovery()
        endpoint = document["token_endpoint"]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": flow.verifier}
        headers: dict[str, str] = {}
        secret = self.client.client_secret
        if secret is None:
            form["client_id"] = self.client.client_id
        elif "client_secret_basic" in document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"]):
            # RFC 6749 2.3.1: the id and the secret form-encoded, then joined by a colon.
            pair = f"{urlencode({'': self.client.client_id})[1:]}:{urlencode({'': secret})[1:]}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form.update(client_id=self.client.client_id, client_secret=secret)
        try:
            status, body = await self._post_form(endpoint, form, headers)
        except Exception as exc:  # connection refused, timeouts
            raise IssuerUnreachable(f"The issuer's token endpoint could not be reached ({endpoint}: "
                                    f"{type(exc).__name__}: {exc}); try again later.") from exc
        if status != 200:
            error = body.get("error") if isinstance(body, dict) else None
            if status >= 500 or error is None:
                raise IssuerUnreachable(f"The issuer's token endpoint answered {status}; try again later.")
            described = body.get("error_description") if isinstance(body, dict) else None
            raise SignInRefused(f"The issuer refused the authorization code: {error}"
                                + (f" ({described})." if described else "."))
        id_token = body.get("id_token") if isinstance(body, dict) else None
        if not isinstance(id_token, str):
            raise SignInRefused("The issuer's token endpoint answered no ID token.")
        return id_token

    def _principal(self, claims: dict[str, Any], flow: Flow) -> Principal:
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), flow.nonce.encode()):
            raise SignInRefused("The ID token is not valid: its nonce is not this sign-in's.")
        audience = claims.get("aud")
        azp = claims.get("azp")
        if ((isinstance(audience, list) and len(audience) > 1) or azp is not None) and azp != self.client.client_id:
            raise SignInRefused("The ID token is not valid: it was issued to another client (azp).")
        subject = claims.get("oid") if isinstance(claims.get("oid"), str) else claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise SignInRefused("The ID token is not valid: it names no subject (sub).")
        client = self.client
        roles = claims.get("roles")
        allowed = (client.allow_any_user
                   or (client.required_role is not None and isinstance(roles, list) and client.required_role in roles)
                   or subject in client.allowed_subjects or claims.get("sub") in client.allowed_subjects)
        name = next((claims[key] for key in ("name", "preferred_username", "email", "upn")
                     if isinstance(claims.get(key), str) and claims[key]), subject)
        if not allowed:
            log.info("console sign-in refused: %s (%s) is not allowed", name, subject)
            raise NotAllowed(f"{name} may not sign in to this console: ask its administrator for the role or "
                                "to be listed.")
        email = claims.get("email") if isinstance(claims.get("email"), str) else None
        log.info("console sign-in: %s (%s) with %s", name, subject, client.issuer)
        return Principal(subject, name, email)
