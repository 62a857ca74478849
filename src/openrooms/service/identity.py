"""ACS users and their access tokens: one method per operation of the ACS Identity API, and `verify_token`.

Users are `8:acs:<resource id>_<user part>`. The resource id is this server's: configured, or generated once and
kept in the store. Tokens are signed with a key kept in the store, so every instance sharing a database issues
and verifies the same tokens. Revoking a user's tokens records an instant; tokens issued before it no longer verify.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from openrooms.service import errors, events, ids, tokens
from openrooms.service.clock import TICKS_PER_SECOND, Clock
from openrooms.service.model import CommunicationUser, SigningKey
from openrooms.service.ports import IdentityStore, UserIdTaken

MIN_TOKEN_MINUTES = 60
MAX_TOKEN_MINUTES = 1440
DEFAULT_TOKEN_MINUTES = 1440  # 24 hours, as ACS
USER_PREFIX = "8:acs:"
TEAMS_USER_PREFIX = "8:orgid:"  # a Teams user's id: its Entra ID object id
TEAMS_USER_SCOPES = ("voip", "chat")
_ID_DRAWS = 8
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_at: int  # ticks


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token that verified: whose it is and what it allows."""

    raw_id: str
    scopes: tuple[str, ...]
    issued_at: int
    expires_at: int


def new_resource_id() -> str:
    return str(uuid.uuid4())


def check_resource_id(resource_id: str) -> str:
    """A resource id is a GUID; returned in lower case, as ACS writes them."""
    if _GUID.fullmatch(resource_id.lower()) is None:
        raise ValueError(f"resource id {resource_id!r} is not a GUID (e.g. {new_resource_id()})")
    return resource_id.lower()


def new_user_part() -> str:
    """128 random bits from the OS's CSPRNG, shaped like the real service's user parts (8-4-4-4-12 hex)."""
    digits = secrets.token_hex(16)
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class IdentityService:
    def __init__(self, store: IdentityStore, clock: Clock, *, resource_id: str | None = None) -> None:
        self._store = store
        self._clock = clock
        self._resource_id = None if resource_id is None else check_resource_id(resource_id)
        self._signing_key: SigningKey | None = None
        self._keys_by_kid: dict[str, SigningKey] = {}
        self._key_lock = asyncio.Lock()

    async def resource_id(self) -> str:
        if self._resource_id is None:
            self._resource_id = await self._store.ensure_resource_id(new_resource_id())
        return self._resource_id

    # Operations ---------------------------------------------------------------------------------------------
    async def create_user(
        self, scopes: Sequence[str] | None = None, expires_in_minutes: int | None = None
    ) -> tuple[CommunicationUser, AccessToken | None]:
        """A new user, and with `scopes` a token for it (checked before the user is created)."""
        lifetime = self._token_minutes(expires_in_minutes)
        token_scopes = None if scopes is None else self._scopes(scopes, "CreateTokenWithScopes")
        prefix = USER_PREFIX + await self.resource_id() + "_"
        for _ in range(_ID_DRAWS):
            user = CommunicationUser(prefix + new_user_part(), self._clock.now())
            try:
                await self._store.insert_user(user, [events.user_created(user.raw_id, user.created_at)])
            except UserIdTaken:
                continue
            break
        else:
            raise RuntimeError("could not draw an unused user id")  # a broken random source
        if token_scopes is None:
            return user, None
        return user, await self._issue(user, token_scopes, lifetime)

    async def delete_user(self, raw_id: str) -> None:
        """Delete the user: its tokens stop verifying and it leaves every room's roster."""
        await self._check_user_id(raw_id)
        if not await self._store.delete_user(raw_id, events.UserDeletion(raw_id, self._clock.now())):
            raise errors.identity_not_found(raw_id)

    async def revoke_tokens(self, raw_id: str) -> None:
        await self._check_user_id(raw_id)
        now = self._clock.now()
        if not await self._store.revoke_tokens(raw_id, now, [events.tokens_revoked(raw_id, now)]):
            raise errors.identity_not_found(raw_id)

    async def issue_token(
        self, raw_id: str, scopes: Sequence[str] | None, expires_in_minutes: int | None = None
    ) -> AccessToken:
        lifetime = self._token_minutes(expires_in_minutes)
        if scopes is None:
            raise errors.scopes_required("Scopes")
        if not scopes:
            raise errors.issue_scopes_empty()
        token_scopes = self._scopes(scopes, "Scopes")
        await self._check_user_id(raw_id)
        user = await self._store.get_user(raw_id)
        if user is None:
            raise errors.identity_not_found(raw_id)
        return await self._issue(user, token_scopes, lifetime)

    def exchange_teams_token(self) -> NoReturn:
        """Without an Entra ID (OpenID Connect) issuer configured, there is nothing to exchange against."""
        raise errors.teams_token_exchange_unavailable()

    async def issue_teams_user_token(self, object_id: str, expires_at: int) -> AccessToken:
        """An ACS token of the Teams user `8:orgid:<object id>`, expiring with the Entra ID token it was
        exchanged for (`expires_at`, ticks), as ACS does; the Entra ID token is the caller's to verify."""
        if not object_id:
            raise errors.teams_user_token_invalid()
        expires_at = expires_at // TICKS_PER_SECOND * TICKS_PER_SECOND
        now = self._clock.now()
        if expires_at <= now:
            raise errors.teams_user_token_invalid()
        key = await self._active_key()
        claims = tokens.TokenClaims(TEAMS_USER_PREFIX + object_id, await self.resource_id(), TEAMS_USER_SCOPES,
                                    now, expires_at)
        return AccessToken(tokens.issue(claims, key), expires_at)

    # Verification (for services that admit token holders) -------------------------------------------------
    async def verify_token(self, token: str) -> VerifiedToken:
        """Check signature, expiry, revocation and that the user still exists; raise 401 InvalidAccessToken."""
        try:
            key = await self._key(tokens.key_id_of(token))
            claims = tokens.verified_claims(token, key)
        except tokens.TokenRejected as exc:
            raise errors.invalid_access_token(str(exc)) from None
        now = self._clock.now()
        if now >= claims.expires_at:
            raise errors.invalid_access_token("it has expired")
        user = await self._store.get_user(claims.raw_id)
        if user is None:
            raise errors.invalid_access_token("its user was deleted")
        # A token issued at the very tick of a revoke counts as revoked: when in doubt, refuse.
        if user.tokens_revoked_before is not None and claims.issued_at <= user.tokens_revoked_before:
            raise errors.invalid_access_token("it was revoked")
        return VerifiedToken(claims.raw_id, claims.scopes, claims.issued_at, claims.expires_at)

    async def jwks(self) -> dict[str, Any]:
        """The public keys that verify this server's tokens, as a JSON Web Key Set."""
        await self._active_key()  # a JWKS is never empty: make the key if no token was issued yet
        return {"keys": [tokens.public_jwk(key) for key in await self._store.get_signing_keys()]}

    # Internals ---------------------------------------------------------------------------------------------
    async def _issue(self, user: CommunicationUser, scopes: list[str], minutes: int) -> AccessToken:
        key = await self._active_key()
        now = self._clock.now()
        expires_at = (now // TICKS_PER_SECOND + minutes * 60) * TICKS_PER_SECOND
        claims = tokens.TokenClaims(user.raw_id, await self.resource_id(), tuple(scopes), now, expires_at)
        return AccessToken(tokens.issue(claims, key), expires_at)

    async def _active_key(self) -> SigningKey:
        if self._signing_key is None:
            async with self._key_lock:
                if self._signing_key is None:
                    stored = await self._store.get_signing_keys()
                    if stored:
                        key = stored[0]
                    else:
                        candidate = await asyncio.to_thread(tokens.generate_signing_key, self._clock.now())
                        # Another instance may have stored one meanwhile: everyone uses the stored one.
                        key = await self._store.ensure_signing_key(candidate)
                    self._keys_by_kid[key.kid] = key
                    self._signing_key = key
        return self._signing_key

    async def _key(self, kid: str) -> SigningKey:
        key = self._keys_by_kid.get(kid)
        if key is None:
            self._keys_by_kid.update({k.kid: k for k in await self._store.get_signing_keys()})
            key = self._keys_by_kid.get(kid)
        if key is None:
            raise tokens.TokenRejected("it was not signed by this server")
        return key

    @staticmethod
    def _token_minutes(requested: int | None) -> int:
        if requested is None:
            return DEFAULT_TOKEN_MINUTES
        if not MIN_TOKEN_MINUTES <= requested <= MAX_TOKEN_MINUTES:
            raise errors.expires_in_minutes_out_of_range(requested, MIN_TOKEN_MINUTES, MAX_TOKEN_MINUTES)
        return requested

    @staticmethod
    def _scopes(requested: Sequence[str], field_name: str) -> list[str]:
        if not requested:
            raise errors.scopes_empty(field_name)
        known, unknown = tokens.normalise_scopes(requested)
        if unknown:
            raise errors.unknown_scopes(field_name, unknown, tokens.SCOPES)
        return known

    async def _check_user_id(self, raw_id: str) -> None:
        """A user id of this resource: 400 if it is no user id at all, 401 if it is another resource's (or
        another cloud's), as the real service answers. The store then answers whether this one exists (404)."""
        if not ids.is_user_id(raw_id):
            raise errors.invalid_user_id(raw_id)
        own = USER_PREFIX + await self.resource_id() + "_"
        # A GUID compares case-insensitively; the user part after it is left as sent.
        if raw_id[:len(own)].lower() != own:
            raise errors.identity_not_owned()
