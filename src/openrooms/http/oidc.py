"""Entra ID (OpenID Connect) sign-in: `Authorization: Bearer <JWT>` from a configured issuer, beside HMAC.

An application given a `TokenCredential` (DefaultAzureCredential, a managed identity, ...) sends a token for the
scope `https://communication.azure.com//.default`. The issuer's keys come from its discovery document
(`<issuer>/.well-known/openid-configuration`) and the `jwks_uri` it names: fetched on the first token, cached,
and fetched again when a token names a key id the cache lacks (the issuer rotated its keys), at most once per
`refetch_interval_seconds` so that a flood of made-up key ids does not hammer the issuer.

A token is accepted when its signature (RS/PS/ES), `iss`, `aud`, `exp` and `nbf` (with the clock skew) check out
and, when configured, its application id (`appid`, or `azp`), object id (`oid`) or a role (`roles`) is allowed.
The development mode (`skip_signature`) checks everything but the signature.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError, MissingClaimError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from openrooms.service.clock import TICKS_PER_SECOND, Clock
from openrooms.service.errors import bearer_denied as denied

log = logging.getLogger("openrooms")

DEFAULT_AUDIENCE = "https://communication.azure.com"
# The audience of a Teams user's Entra ID token for ACS (scope https://auth.msft.communication.azure.com/...).
DEFAULT_TEAMS_AUDIENCE = "https://auth.msft.communication.azure.com"
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
DEFAULT_REFETCH_INTERVAL_SECONDS = 60

# Fetches a URL and answers its JSON body: the only I/O the verifier does (tests pass their own).
JsonFetcher = Callable[[str], Awaitable[Any]]


class TokenInvalid(Exception):
    """The bearer token is refused; the message says which check failed (logged, never answered in detail)."""


class IssuerUnavailable(Exception):
    """The issuer's discovery document or key set could not be fetched or read."""


@dataclass(frozen=True)
class OidcPolicy:
    issuer: str
    audience: str = DEFAULT_AUDIENCE
    allowed_app_ids: tuple[str, ...] = ()
    allowed_object_ids: tuple[str, ...] = ()
    required_role: str | None = None
    skip_signature: bool = False
    skew_seconds: int = 300
    teams_audience: str = DEFAULT_TEAMS_AUDIENCE


def app_id_of(claims: dict[str, Any]) -> str | None:
    """The client application of a token: `appid` (Entra ID v1 tokens) or `azp` (v2, Keycloak)."""
    value = claims.get("appid", claims.get("azp"))
    return value if isinstance(value, str) else None


async def aiohttp_fetch(url: str) -> Any:
    """GET `url` and answer its JSON, with a short timeout."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        if response.status != 200:
            raise IssuerUnavailable(f"GET {url} answered {response.status}")
        return await response.json(content_type=None)


class OidcVerifier:
    def __init__(
        self, policy: OidcPolicy, *, clock: Clock, fetch: JsonFetcher = aiohttp_fetch,
        refetch_interval_seconds: int = DEFAULT_REFETCH_INTERVAL_SECONDS,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._fetch = fetch
        self._refetch_interval = refetch_interval_seconds * TICKS_PER_SECOND
        self._keys: KeySet | None = None
        self._kids: frozenset[str] = frozenset()
        self._fetched_at: int | None = None
        self._lock = asyncio.Lock()

    # The access-key operations -------------------------------------------------------------------------------
    async def authenticate(self, authorization: str) -> dict[str, Any]:
        """The claims of the request's bearer token if it may call the access-key operations; else a 401."""
        token = authorization[len("Bearer "):].strip()
        try:
            claims = await self.verified_claims(token, self.policy.audience)
            self._check_allowed(claims)
        except TokenInvalid as exc:
            log.info("bearer token refused: %s", exc)
            raise denied(f"The bearer token is not valid: {exc}.") from None
        except IssuerUnavailable as exc:
            log.warning("bearer token not checked: the issuer's keys are unavailable: %s", exc)
            raise denied("The bearer token could not be checked: the issuer's keys are unavailable.") from None
        return claims

    def _check_allowed(self, claims: dict[str, Any]) -> None:
        policy = self.policy
        if policy.allowed_app_ids or policy.allowed_object_ids:
            app_id, object_id = app_id_of(claims), claims.get("oid")
            if app_id not in policy.allowed_app_ids and object_id not in policy.allowed_object_ids:
                raise TokenInvalid(f"neither its application id ({app_id}) nor its object id ({object_id}) "
                                   "is allowed")
        if policy.required_role is not None:
            roles = claims.get("roles")
            if not isinstance(roles, list) or policy.required_role not in roles:
                raise TokenInvalid(f"it lacks the role {policy.required_role}")

    # Any token of the issuer -------------------------------------------------------------------------------
    async def verified_claims(self, token: str, audience: str) -> dict[str, Any]:
        """The claims of `token` if its signature, issuer, audience and validity window check out."""
        try:
            compact = jws.extract_compact(token.encode("ascii"))
            header = compact.headers()
            claims = json.loads(compact.payload)
        except (JoseError, ValueError, UnicodeError):
            raise TokenInvalid("it is not a JWT") from None
        if not isinstance(claims, dict):
            raise TokenInvalid("it is not a JWT")
        if header.get("alg") not in ALGORITHMS:
            raise TokenInvalid(f"its algorithm {header.get('alg')!r} is not one of {', '.join(ALGORITHMS)}")
        if not self.policy.skip_signature:
            keys = await self._keys_for(header.get("kid"))
            try:
                valid = jws.validate_compact(compact, keys, list(ALGORITHMS))
            except JoseError:
                valid = False
            if not valid:
                raise TokenInvalid("its signature is not valid")
        registry = JWTClaimsRegistry(
            now=self._clock.now() // TICKS_PER_SECOND, leeway=self.policy.skew_seconds,
            iss={"essential": True, "value": self.policy.issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise TokenInvalid(_claim_problem(exc, claims, audience)) from None
        return claims

    # Keys ---------------------------------------------------------------------------------------------------
    async def _keys_for(self, kid: object) -> KeySet:
        """The issuer's keys, fetched when none are cached or `kid` is unknown (at most once per interval)."""
        if self._keys is None or (isinstance(kid, str) and kid not in self._kids):
            async with self._lock:
                if self._keys is None or (isinstance(kid, str) and kid not in self._kids):
                    now = self._clock.now()
                    if self._fetched_at is None or now - self._fetched_at >= self._refetch_interval:
                        self._fetched_at = now
                        await self._refetch()
        if self._keys is None:
            raise IssuerUnavailable("no key set fetched yet")
        if isinstance(kid, str) and kid not in self._kids:
            raise TokenInvalid(f"its key id {kid!r} is not among the issuer's keys")
        return self._keys

    async def _refetch(self) -> None:
        issuer = self.policy.issuer
        discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            discovery = await self._fetch(discovery_url)
            jwks_uri = discovery.get("jwks_uri") if isinstance(discovery, dict) else None
            if not isinstance(jwks_uri, str):
                raise IssuerUnavailable(f"{discovery_url} names no jwks_uri")
            document = await self._fetch(jwks_uri)
            keys = [key for key in document.get("keys", ()) if key.get("use", "sig") == "sig"]
            key_set = KeySet.import_key_set({"keys": keys})
        except IssuerUnavailable:
            raise
        except Exception as exc:  # network errors, bad JSON, keys joserfc cannot read
            raise IssuerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self._keys = key_set
        self._kids = frozenset(key.kid for key in key_set.keys if key.kid)
        log.info("fetched %d signing keys of %s", len(self._kids), issuer)


def _claim_problem(exc: JoseError, claims: dict[str, Any], audience: str) -> str:
    claim = getattr(exc, "claim", None)
    if isinstance(exc, MissingClaimError):
        return f"it lacks the claim {claim}"
    if claim == "iss":
        return f"its issuer {claims.get('iss')!r} is not the configured one"
    if claim == "aud":
        return f"its audience {claims.get('aud')!r} is not {audience!r}"
    if claim == "exp":
        return "it has expired"
    if claim == "nbf":
        return "it is not valid yet"
    return f"its claims are not valid ({exc.description})"


def parse_ids(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Ids from a comma-separated setting (or a list of flags, each possibly comma-separated)."""
    parts = [] if value is None else [value] if isinstance(value, str) else list(value)
    return tuple(item.strip() for part in parts for item in part.split(",") if item.strip())

