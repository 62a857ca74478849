"""HMAC-SHA256 authentication: published test vectors and each SDK's signing variant."""

from __future__ import annotations

import base64
import hashlib
import hmac
from email.utils import formatdate, parsedate_to_datetime

import pytest

from openrooms.http import auth
from openrooms.service import keys
from openrooms.service.clock import TICKS_PER_SECOND
from openrooms.service.errors import ServiceError
from openrooms.store.sqlite import SqliteStore

KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
OTHER_KEY = base64.b64encode(b"another-key-another-key-another!!").decode()
DATE = "Sat, 21 Nov 2026 09:52:51 GMT"
DATE_TICKS = int(parsedate_to_datetime(DATE).timestamp()) * TICKS_PER_SECOND
EMPTY_HASH = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def test_vectors() -> None:
    key = keys.decode(KEY)
    assert auth.content_hash(b"") == EMPTY_HASH
    assert auth.sign(key, f"GET\n/rooms/r1?api-version=2025-03-13\n{DATE};127.0.0.1:18765;{EMPTY_HASH}") == (
        "/gju7rbG3Uu0cG/2XJvQ7xQTNo0hd5rF6lwADqeeFPQ="
    )
    body = b'{"participants": {"8:acs:res_u1": null}}'
    assert auth.content_hash(body) == "dul9a5FkTlq/AT5upvzixrYko+/J0MHNCPbhhXdB5vY="
    assert auth.sign(
        key, f"PATCH\n/rooms/r1/participants?api-version=2025-03-13\n{DATE};127.0.0.1:18765;{auth.content_hash(body)}"
    ) == "HH/oFcFxY9Il0MhmrLTujxQlbNKTvND5QTe7GhFuFPU="
    assert auth.sign(base64.b64decode("pw=="), "banana") == "88EC05aAS9iXnaimtNO78JLjiPtfWryQB/5QYEzEsu8="


@pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 200])
def test_prehashed_key_signs_as_the_standard_hmac(key_length: int) -> None:
    """The key's padded blocks are hashed ahead of time; what it signs is the standard library's HMAC-SHA256,
    for keys shorter than, as long as and longer than SHA-256's block (which RFC 2104 hashes first)."""
    secret = bytes(range(256))[:key_length]
    key = auth.HmacKey(secret)
    for message in (b"", b"GET\n/rooms?api-version=2025-03-13\n" + DATE.encode(), b"x" * 1000):
        expected = base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()
        assert key.sign(message) == expected
        assert key.sign(message) == expected  # the kept state is copied, never consumed


async def test_rotated_keys_take_over(store: SqliteStore) -> None:
    """The authenticator checks against its key ring, which re-reads the stored keys when they are due."""
    authenticator = auth.HmacAuthenticator(keys.KeyRing(store, [OTHER_KEY], refresh_seconds=0), skew_seconds=300)
    headers = signed("/rooms?api-version=2025-03-13", "127.0.0.1:18765")

    async def check_now() -> int:
        if authenticator.keys_due:
            await authenticator.refresh_keys()
        return authenticator.authenticate(method="POST", raw_path="/rooms", query="api-version=2025-03-13",
                                          headers=headers, body=b"", now=DATE_TICKS)

    with pytest.raises(ServiceError):
        await check_now()
    await store.set_access_keys({"primary": OTHER_KEY, "secondary": KEY}, 0)
    assert await check_now() == 1
    await store.set_access_keys({"primary": KEY, "secondary": OTHER_KEY}, 0)
    assert await check_now() == 0


def test_a_key_ring_without_a_store_keeps_its_keys() -> None:
    ring = keys.KeyRing(None, [KEY, OTHER_KEY])
    assert not ring.due
    assert ring.held == [keys.decode(KEY), keys.decode(OTHER_KEY)]


@pytest.mark.parametrize("header", ["authorization", "x-ms-content-sha256"])
def test_non_ascii_signature_or_hash_is_denied(header: str) -> None:
    """A header decoded as latin-1 may carry any character; the constant-time comparison must still answer 401."""
    headers = signed(ENCODED, "127.0.0.1:18765")
    headers[header] = headers[header][:-4] + "\u00e9\u00e9=="
    with pytest.raises(ServiceError) as denied:
        check(headers)
    assert denied.value.status == 401


def signed(path: str, host: str, body: bytes = b"", key: str = KEY, date: str = DATE) -> dict[str, str]:
    digest = auth.content_hash(body)
    signature = auth.sign(keys.decode(key), f"POST\n{path}\n{date};{host};{digest}")
    return {
        "authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
        "x-ms-date": date,
        "x-ms-content-sha256": digest,
        "host": "127.0.0.1:18765",
    }


def check(headers: dict[str, str], *, raw_path: str = "/identities/8%3Aacs%3Ax/:issueAccessToken",
          body: bytes = b"", now: int = DATE_TICKS, public_hosts: tuple[str, ...] = ()) -> None:
    authenticator = auth.HmacAuthenticator(
        keys.KeyRing(None, [KEY, OTHER_KEY]), skew_seconds=300, public_hosts=public_hosts
    )
    authenticator.authenticate(method="POST", raw_path=raw_path, query="api-version=2023-10-01",
                               headers=headers, body=body, now=now)


ENCODED = "/identities/8%3Aacs%3Ax/:issueAccessToken?api-version=2023-10-01"
DECODED = "/identities/8:acs:x/:issueAccessToken?api-version=2023-10-01"


@pytest.mark.parametrize(
    ("path", "signed_host"),
    [
        (ENCODED, "127.0.0.1:18765"),  # as received
        (DECODED, "127.0.0.1:18765"),  # percent-decoded path (Python Rooms)
        (ENCODED, "127.0.0.1"),  # host without port (Java)
        (ENCODED, "127.0.0.1:18765/"),  # trailing slash (Python Identity)
        (ENCODED, "127.0.0.1:18765:18765"),  # doubled port (older JS)
    ],
)
def test_each_sdk_variant_is_accepted(path: str, signed_host: str) -> None:
    check(signed(path, signed_host))


def test_secondary_key_and_public_host() -> None:
    check(signed(ENCODED, "127.0.0.1:18765", key=OTHER_KEY))
    check(signed(ENCODED, "rooms.example.com"), public_hosts=("rooms.example.com",))


def denial(headers: dict[str, str], **kwargs: object) -> str:
    with pytest.raises(ServiceError) as caught:
        check(headers, **kwargs)  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.code) == (401, "Denied")
    return caught.value.message


def test_denials_say_why() -> None:
    good = signed(ENCODED, "127.0.0.1:18765")
    assert "no Authorization header" in denial({k: v for k, v in good.items() if k != "authorization"})
    assert "Unsupported authorization scheme 'Bearer'" in denial({**good, "authorization": "Bearer abc"})
    assert denial(good, body=b"tampered") == "Request 'x-ms-content-sha256' differs from generated content hash."
    assert "300 seconds" in denial(good, now=DATE_TICKS + 301 * TICKS_PER_SECOND)
    assert "not an RFC 1123 date" in denial(signed(ENCODED, "127.0.0.1:18765", date="yesterday"))
    assert denial(signed(ENCODED, "evil.example.com")) == "Denied by the resource provider."
    wrong_key = base64.b64encode(b"x" * 32).decode()
    assert denial(signed(ENCODED, "127.0.0.1:18765", key=wrong_key)) == "Denied by the resource provider."


def test_date_header_is_used_without_x_ms_date() -> None:
    headers = signed(ENCODED, "127.0.0.1:18765", date=formatdate(DATE_TICKS / TICKS_PER_SECOND, usegmt=True))
    headers["date"] = headers.pop("x-ms-date")
    check(headers)
