"""Access tokens: the claims, RS256 signatures, and a payload the Python SDK's base64 parser reads intact."""

from __future__ import annotations

import base64
import functools
import json
import uuid

import jwt
import pytest
from azure.communication.identity._shared.utils import create_access_token
from hypothesis import given, settings
from hypothesis import strategies as st

from openrooms.service import tokens
from openrooms.service.clock import TICKS_PER_SECOND
from openrooms.service.model import SigningKey

NOW = 1_800_000_000 * TICKS_PER_SECOND + 1234567


@functools.cache
def signing_key() -> SigningKey:
    return tokens.generate_signing_key(NOW)


@functools.cache
def other_signing_key() -> SigningKey:
    return tokens.generate_signing_key(NOW)


def payload_segment(token: str) -> str:
    return token.split(".")[1]


def sdk_decoded_payload(token: str) -> dict[str, object]:
    """The payload as the Python SDK reads it: standard base64, which drops `-` and `_` without a word."""
    decoded: dict[str, object] = json.loads(base64.b64decode(payload_segment(token) + "==").decode("ascii"))
    return decoded


user_parts = st.one_of(
    st.uuids().map(str),
    st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), min_size=1, max_size=64),
)
scope_sets = st.lists(st.sampled_from(tokens.SCOPES), min_size=1, max_size=5, unique=True)


@settings(max_examples=300, deadline=None)
@given(
    resource=st.uuids(),
    user_part=user_parts,
    scopes=scope_sets,
    issued_at=st.integers(min_value=0, max_value=4_000_000_000 * TICKS_PER_SECOND),
    minutes=st.integers(min_value=60, max_value=1440),
)
def test_every_token_payload_is_plain_base64_and_reads_back_through_the_sdk(
    resource: uuid.UUID, user_part: str, scopes: list[str], issued_at: int, minutes: int
) -> None:
    expires_at = (issued_at // TICKS_PER_SECOND + minutes * 60) * TICKS_PER_SECOND
    claims = tokens.TokenClaims(f"8:acs:{resource}_{user_part}", str(resource), tuple(scopes), issued_at, expires_at)
    token = tokens.issue(claims, signing_key())

    segment = payload_segment(token)
    assert "-" not in segment and "_" not in segment
    assert sdk_decoded_payload(token) == tokens.claims_of(claims)
    assert create_access_token(token).expires_on == expires_at // TICKS_PER_SECOND
    assert tokens.verified_claims(token, signing_key()) == claims


@settings(max_examples=300)
@given(st.dictionaries(st.text(), st.one_of(st.text(), st.integers(), st.booleans()), max_size=8))
def test_any_claims_encode_to_plain_base64_json(claims: dict[str, object]) -> None:
    encoded = tokens.encode_payload(claims)
    segment = base64.urlsafe_b64encode(encoded).decode().rstrip("=")
    assert "-" not in segment and "_" not in segment
    assert json.loads(encoded) == claims


def test_claims_are_those_of_acs_tokens() -> None:
    raw_id = "8:acs:1b5cc06b-f352-4571-b1e6-d9b259b7c776_00000005-14a2-493b-8a72-5a3a0d000081"
    claims = tokens.TokenClaims(
        raw_id, "1b5cc06b-f352-4571-b1e6-d9b259b7c776", ("chat", "voip"), NOW, (NOW // TICKS_PER_SECOND + 3600) * 10**7
    )
    issued_second = NOW // TICKS_PER_SECOND
    assert tokens.claims_of(claims) == {
        "skypeid": raw_id.removeprefix("8:"),
        "scp": 1792,
        "csi": str(issued_second),
        "exp": issued_second + 3600,
        "acsScope": "chat,voip",
        "resourceId": "1b5cc06b-f352-4571-b1e6-d9b259b7c776",
        "iat": issued_second,
        "issuedAtTicks": NOW,
    }


def test_header_names_the_key_by_thumbprint() -> None:
    key = signing_key()
    token = tokens.issue(tokens.TokenClaims("8:acs:r_u", "r", ("voip",), NOW, NOW + 3600 * TICKS_PER_SECOND), key)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": key.kid, "x5t": tokens.x5t(key), "typ": "JWT"}
    assert base64.urlsafe_b64decode(tokens.x5t(key) + "=") == bytes.fromhex(key.kid)
    assert tokens.key_id_of(token) == key.kid


def test_an_independent_jwt_library_verifies_with_the_published_key() -> None:
    key = signing_key()
    claims = tokens.TokenClaims("8:acs:r_u", "r", ("chat",), NOW, NOW + 3600 * TICKS_PER_SECOND)
    token = tokens.issue(claims, key)
    public = jwt.PyJWK.from_dict(tokens.public_jwk(key))
    decoded = jwt.decode(token, public.key, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False})
    assert decoded == tokens.claims_of(claims)
    assert "d" not in tokens.public_jwk(key)  # no private part is published
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, jwt.PyJWK.from_dict(tokens.public_jwk(other_signing_key())).key, algorithms=["RS256"],
                   options={"verify_exp": False, "verify_iat": False})


def test_a_tampered_token_is_rejected() -> None:
    claims = tokens.TokenClaims("8:acs:r_u", "r", ("chat",), NOW, NOW + 3600 * TICKS_PER_SECOND)
    header, payload, signature = tokens.issue(claims, signing_key()).split(".")
    forged_claims = {**tokens.claims_of(claims), "acsScope": "chat,voip"}
    forged = base64.urlsafe_b64encode(tokens.encode_payload(forged_claims)).decode().rstrip("=")
    with pytest.raises(tokens.TokenRejected, match="signature"):
        tokens.verified_claims(f"{header}.{forged}.{signature}", signing_key())
    with pytest.raises(tokens.TokenRejected, match="signature"):
        tokens.verified_claims(f"{header}.{payload}.{signature}", other_signing_key())


@pytest.mark.parametrize("garbage", ["", "not a token", "e30.e30.e30", "!!!.e30.x"])
def test_garbage_names_no_key(garbage: str) -> None:
    with pytest.raises(tokens.TokenRejected):
        tokens.key_id_of(garbage)


def test_scopes_are_normalised_and_unknown_ones_reported() -> None:
    assert tokens.normalise_scopes(["VoIP", "chat", "voip", "Chat.Join.Limited"]) == (
        ["voip", "chat", "chat.join.limited"],
        [],
    )
    assert tokens.normalise_scopes(["chat", "telepathy", "voip.join", "pstn"]) == (
        ["chat", "voip.join"],
        ["telepathy", "pstn"],
    )
