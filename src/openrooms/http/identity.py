"""The ACS Identity API on the wire: request bodies -> service calls, service results -> response bodies.

One handler per operationId of the published spec (CommunicationIdentity_Create, _Delete, _RevokeAccessTokens,
_IssueAccessToken, and the Teams token exchange), plus the JWKS document that verifies issued tokens.
"""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openrooms.http.context import context_of
from openrooms.http.oidc import IssuerUnavailable, OidcVerifier, TokenInvalid, app_id_of
from openrooms.http.wire import decode, json_response
from openrooms.service import errors, timestamps, tokens
from openrooms.service.clock import TICKS_PER_SECOND
from openrooms.service.identity import MAX_TOKEN_MINUTES, MIN_TOKEN_MINUTES, AccessToken, IdentityService

log = logging.getLogger("openrooms")
JWKS_PATH = "/.well-known/jwks.json"
# Keys are only ever added, so a verifier may cache the set for a while.
JWKS_CACHE_CONTROL = "public, max-age=300"
# As documented (the published enum, the token lifetimes allowed); decoded as any string or whole number, so
# that other values get the service's own answers.
Scope = Annotated[str, msgspec.Meta(extra_json_schema={"enum": list(tokens.SCOPES)})]
TokenMinutes = Annotated[int, msgspec.Meta(extra_json_schema={"minimum": MIN_TOKEN_MINUTES,
                                                               "maximum": MAX_TOKEN_MINUTES})]


class CreateIdentityRequest(msgspec.Struct):
    createTokenWithScopes: list[Scope] | None = None
    expiresInMinutes: TokenMinutes | None = None


class IssueAccessTokenRequest(msgspec.Struct):
    scopes: list[Scope] | None = None
    expiresInMinutes: TokenMinutes | None = None


class TeamsUserExchangeRequest(msgspec.Struct):
    token: str
    appId: str
    userId: str


class AccessTokenBody(msgspec.Struct):
    token: str
    expiresOn: str


class IdentityBody(msgspec.Struct):
    id: str


class CreateIdentityResponse(msgspec.Struct, omit_defaults=True):
    identity: IdentityBody
    accessToken: AccessTokenBody | None = None


def access_token_body(token: AccessToken) -> AccessTokenBody:
    return AccessTokenBody(token.token, timestamps.format(token.expires_at))


class IdentityApi:
    def __init__(self, service: IdentityService, oidc: OidcVerifier | None = None) -> None:
        self._service = service
        self._oidc = oidc  # verifies the Entra ID tokens of Teams users; None: the exchange is unavailable

    def routes(self) -> list[Route]:
        return [
            Route("/identities", self.communication_identity_create, methods=["POST"]),
            Route("/identities/{id}", self.communication_identity_delete, methods=["DELETE"]),
            Route("/identities/{id}/:revokeAccessTokens", self.communication_identity_revoke_access_tokens,
                  methods=["POST"]),
            Route("/identities/{id}/:issueAccessToken", self.communication_identity_issue_access_token,
                  methods=["POST"]),
            Route("/teamsUser/:exchangeAccessToken", self.teams_user_exchange_access_token, methods=["POST"]),
            Route(JWKS_PATH, self.jwks, methods=["GET"]),
        ]

    async def communication_identity_create(self, request: Request) -> Response:
        wire = decode(context_of(request).body, CreateIdentityRequest)
        user, token = await self._service.create_user(wire.createTokenWithScopes, wire.expiresInMinutes)
        body = CreateIdentityResponse(
            IdentityBody(user.raw_id), None if token is None else access_token_body(token)
        )
        return json_response(body, 201)

    async def communication_identity_delete(self, request: Request) -> Response:
        await self._service.delete_user(request.path_params["id"])
        return Response(status_code=204)

    async def communication_identity_revoke_access_tokens(self, request: Request) -> Response:
        await self._service.revoke_tokens(request.path_params["id"])
        return Response(status_code=204)

    async def communication_identity_issue_access_token(self, request: Request) -> Response:
        wire = decode(context_of(request).body, IssueAccessTokenRequest)
        token = await self._service.issue_token(request.path_params["id"], wire.scopes, wire.expiresInMinutes)
        return json_response(access_token_body(token))

    async def teams_user_exchange_access_token(self, request: Request) -> Response:
        if self._oidc is None:
            self._service.exchange_teams_token()  # refuses: no Entra ID issuer configured
        wire = decode(context_of(request).body, TeamsUserExchangeRequest)
        try:
            claims = await self._oidc.verified_claims(wire.token, self._oidc.policy.teams_audience)
        except TokenInvalid as exc:
            log.info("Teams user token refused: %s", exc)
            raise errors.teams_user_token_invalid() from None
        except IssuerUnavailable as exc:
            log.warning("Teams user token not checked: the issuer's keys are unavailable: %s", exc)
            raise errors.teams_user_token_invalid() from None
        if app_id_of(claims) != wire.appId or claims.get("oid") != wire.userId:
            log.info("Teams user token refused: it is not of the application and user the request names")
            raise errors.teams_user_token_invalid()
        token = await self._service.issue_teams_user_token(wire.userId, int(claims["exp"]) * TICKS_PER_SECOND)
        return json_response(access_token_body(token))

    async def jwks(self, request: Request) -> Response:
        return json_response(await self._service.jwks(), headers={"Cache-Control": JWKS_CACHE_CONTROL})
