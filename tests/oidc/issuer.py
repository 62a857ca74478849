"""An OpenID Connect issuer of the tests' own: RSA keys, a discovery document and a JWKS, served on loopback by
aiohttp, and the tokens it signs (as Entra ID or Keycloak would)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.support import loopback_site

AUDIENCE = "https://communication.azure.com"
TEAMS_AUDIENCE = "https://auth.msft.communication.azure.com"
APP_ID = "2c3e1e83-8fd7-4615-ad2b-b8c1229845ac"
OBJECT_ID = "32c0a5db-05ec-78ea-51ab-3f06b329397e"


def new_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex, "use": "sig", "alg": "RS256"})


class Issuer:
    def __init__(self) -> None:
        self.key = new_key()
        self.url = ""  # set once serving
        self.fetches: list[str] = []  # the paths fetched from it, in order

    def rotate(self) -> None:
        """A new signing key; the old one leaves the JWKS, as an issuer's rollover ends."""
        self.key = new_key()

    def token(self, *, key: RSAKey | None = None, now: float | None = None, lifetime: int = 3600,
              **claims: Any) -> str:
        issued = int(time.time() if now is None else now)
        body: dict[str, Any] = {"iss": self.url, "aud": AUDIENCE, "iat": issued, "nbf": issued,
                                "exp": issued + lifetime, "appid": APP_ID, "oid": OBJECT_ID, "sub": OBJECT_ID}
        body.update(claims)
        body = {name: value for name, value in body.items() if value is not None}
        signer = key or self.key
        return jwt.encode({"alg": "RS256", "kid": signer.kid, "typ": "JWT"}, body, signer)

    async def _discovery(self, request: web.Request) -> web.Response:
        self.fetches.append(request.path)
        return web.json_response({"issuer": self.url, "jwks_uri": self.url + "/discovery/keys",
                                  "id_token_signing_alg_values_supported": ["RS256"]})

    async def _jwks(self, request: web.Request) -> web.Response:
        self.fetches.append(request.path)
        return web.json_response({"keys": [self.key.as_dict(private=False)]})

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Issuer]:
        app = web.Application()
        app.router.add_get("/tenant/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/tenant/discovery/keys", self._jwks)
        async with loopback_site(app) as origin:
            self.url = f"{origin}/tenant"
            yield self
