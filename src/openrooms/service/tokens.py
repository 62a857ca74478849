"""ACS access tokens: RS256 JWTs with the claims the real service puts in them. Pure functions, no I/O.

A token's payload segment never contains `-` or `_`: the Python `CommunicationTokenCredential` decodes it with
standard base64, which silently drops those two characters. In base64 of ASCII text, only a byte whose low six
bits are 62 or 63 (`>`, `?`, `~`, DEL) can yield `-` or `_`, so the payload is JSON made of ASCII without those
four characters (they are written as `\\u00XX` escapes, which every JSON reader understands).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from openrooms.service.clock import TICKS_PER_SECOND
from openrooms.service.model import SigningKey

ALGORITHM = "RS256"
# The scopes of the spec's CommunicationIdentityTokenScope enum, in its order.
SCOPES = ("chat", "voip", "chat.join", "chat.join.limited", "voip.join")
# The `scp` claim of ACS tokens: the same number whatever the scopes (they are in `acsScope`).
SCP = 1792
KEY_BITS = 2048
CERTIFICATE_YEARS = 10
# Not an ACS claim: the issue instant in ticks, so that a revocation separates tokens issued in the same second.
ISSUED_AT_TICKS_CLAIM = "issuedAtTicks"

_UNSAFE_IN_BASE64 = re.compile("[>?~\x7f]")


def x5t(key: SigningKey) -> str:
    """The key's certificate thumbprint, base64url (the `x5t` of token headers and the JWKS)."""
    return _b64url(bytes.fromhex(key.kid))


def certificate_der(key: SigningKey) -> bytes:
    return x509.load_pem_x509_certificate(key.certificate_pem.encode()).public_bytes(serialization.Encoding.DER)


def private_jwk(key: SigningKey) -> RSAKey:
    return _load_key(key.private_key_pem)


def public_jwk(key: SigningKey) -> dict[str, Any]:
    """The key as a JWKS entry: RSA public numbers, and the certificate with its thumbprint."""
    public = private_jwk(key).as_dict(private=False)
    return {
        "kty": "RSA",
        "use": "sig",
        "alg": ALGORITHM,
        "kid": key.kid,
        "x5t": x5t(key),
        "n": public["n"],
        "e": public["e"],
        "x5c": [base64.b64encode(certificate_der(key)).decode()],
    }


def generate_signing_key(now: int) -> SigningKey:
    """A new RSA key pair and a self-signed certificate for it (CPU-bound: tens of milliseconds)."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openrooms access token signing")])
    not_before = datetime.fromtimestamp(now // TICKS_PER_SECOND, UTC) - timedelta(days=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=365 * CERTIFICATE_YEARS))
        .sign(private_key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    return SigningKey(
        kid=hashlib.sha1(der).hexdigest().upper(),
        private_key_pem=private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        created_at=now,
    )


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a token says: whose it is, what it allows, and when it was issued and expires."""

    raw_id: str  # the user's raw id, `8:acs:<resource id>_<user part>`
    resource_id: str
    scopes: tuple[str, ...]
    issued_at: int  # ticks
    expires_at: int  # ticks, a whole second (the `exp` claim)


def claims_of(token: TokenClaims) -> dict[str, Any]:
    """The JWT claims, named and ordered as in tokens of the real service."""
    issued_second = token.issued_at // TICKS_PER_SECOND
    return {
        "skypeid": token.raw_id.removeprefix("8:"),
        "scp": SCP,
        "csi": str(issued_second),
        "exp": token.expires_at // TICKS_PER_SECOND,
        "acsScope": ",".join(token.scopes),
        "resourceId": token.resource_id,
        "iat": issued_second,
        ISSUED_AT_TICKS_CLAIM: token.issued_at,
    }


def encode_payload(claims: dict[str, Any]) -> bytes:
    """JSON whose base64url form has no `-` or `_` (see the module docstring for why this suffices)."""
    text = json.dumps(claims, ensure_ascii=True, separators=(",", ":"))
    return _UNSAFE_IN_BASE64.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("ascii")


def issue(token: TokenClaims, key: SigningKey) -> str:
    header = {"alg": ALGORITHM, "kid": key.kid, "x5t": x5t(key), "typ": "JWT"}
    compact = jws.serialize_compact(header, encode_payload(claims_of(token)), private_jwk(key), [ALGORITHM])
    payload_segment = compact.split(".")[1]
    if "-" in payload_segment or "_" in payload_segment:  # unreachable by construction; never hand one out
        raise AssertionError("token payload segment is not plain base64")
    return compact


class TokenRejected(Exception):
    """The token is not one of ours, or not intact: the reason says which check failed."""


def key_id_of(token: str) -> str:
    """The `kid` of a compact JWS, read before the signature is checked (to pick the key)."""
    try:
        header = json.loads(_b64url_decode(token.split(".")[0]))
        kid = header.get("kid") if isinstance(header, dict) else None
    except (ValueError, UnicodeDecodeError):
        raise TokenRejected("the token is not a JWT") from None
    if not isinstance(kid, str):
        raise TokenRejected("the token names no signing key (kid)")
    return kid


def verified_claims(token: str, key: SigningKey) -> TokenClaims:
    """The claims of a token whose RS256 signature by `key` checks out. Expiry is the caller's to check."""
    try:
        signed = jws.deserialize_compact(token, private_jwk(key), [ALGORITHM])
        claims = json.loads(signed.payload)
    except (JoseError, ValueError, UnicodeDecodeError):
        raise TokenRejected("the token signature is not valid") from None
    try:
        skype_id = claims["skypeid"]
        scopes = claims["acsScope"]
        issued_at = claims[ISSUED_AT_TICKS_CLAIM]
        expires = claims["exp"]
        resource_id = claims["resourceId"]
        if not all(isinstance(v, str) for v in (skype_id, scopes, resource_id)):
            raise TypeError
        if not all(isinstance(v, int) for v in (issued_at, expires)):
            raise TypeError
    except (KeyError, TypeError):
        raise TokenRejected("the token lacks the claims of an access token") from None
    return TokenClaims(
        raw_id="8:" + skype_id,
        resource_id=resource_id,
        scopes=tuple(s for s in scopes.split(",") if s),
        issued_at=issued_at,
        expires_at=expires * TICKS_PER_SECOND,
    )


def normalise_scopes(requested: Sequence[str]) -> tuple[list[str], list[str]]:
    """(known scopes in canonical spelling, first-seen order, no repeats; names that are no scope)."""
    canonical = {s.casefold(): s for s in SCOPES}
    known: list[str] = []
    unknown: list[str] = []
    for name in requested:
        scope = canonical.get(name.casefold())
        if scope is None:
            unknown.append(name)
        elif scope not in known:
            known.append(scope)
    return known, unknown


@functools.lru_cache(maxsize=16)
def _load_key(private_key_pem: str) -> RSAKey:
    # Parsing a PEM costs about a millisecond; every token issued or verified needs its key.
    return RSAKey.import_key(private_key_pem)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
