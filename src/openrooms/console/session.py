"""Console sign-in: sessions in a signed cookie, their CSRF tokens, sign-out, and the limit on sign-in attempts.

A session is `<expiry>.<nonce>.<signature>`: the signature is an HMAC with a secret derived from the primary access
key in force, so every worker (and every instance on one database) accepts the sessions of the others without
storing them, and rotating the keys ends every session signed with a key that is no longer in force. The CSRF
token of a session is another HMAC of its nonce: a form carries it, a cookie alone (which another site cannot
read) is not enough. Sign-out forgets the cookie in the browser and remembers the nonce as ended in this worker
until its expiry.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from openrooms.service import keys
from openrooms.service.keys import KeyRing

COOKIE = "openrooms_console"
SIGN_IN_COOKIE = "openrooms_console_sign_in"  # the sign-in form's CSRF token (double submit: no session yet)
COOKIE_PATH = "/console"
# Failed sign-ins allowed per client address within the window; then refused until the oldest failure ages out.
MAX_FAILURES = 5
FAILURE_WINDOW_SECONDS = 60


def _mac(key: bytes, purpose: str, text: str) -> str:
    secret = hmac.new(key, b"openrooms console " + purpose.encode(), hashlib.sha256).digest()
    digest = hmac.new(secret, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Session:
    nonce: str
    expires_at: int  # seconds since the epoch
    key: bytes  # the access key whose secret signed it

    @property
    def csrf(self) -> str:
        return _mac(self.key, "csrf", self.nonce)


class Sessions:
    def __init__(self, ring: KeyRing, minutes: int, *, clock: Callable[[], float] = time.time) -> None:
        self.ring = ring
        self.lifetime = minutes * 60
        self._clock = clock
        self._ended: dict[str, int] = {}  # nonce -> expiry, of sessions signed out in this worker

    async def key_matches(self, submitted: str) -> bool:
        """Whether `submitted` is one of the access keys in force (compared in constant time)."""
        try:
            candidate = keys.decode(submitted.strip())
        except ValueError:
            return False
        held = await self.ring.refresh()
        return any(hmac.compare_digest(candidate, key) for key in held)

    async def issue(self) -> tuple[str, Session]:
        key = (await self.ring.refresh())[0]
        session = Session(secrets.token_urlsafe(18), int(self._clock()) + self.lifetime, key)
        payload = f"{session.expires_at}.{session.nonce}"
        return f"{payload}.{_mac(key, 'session', payload)}", session

    async def check(self, cookie: str | None) -> Session | None:
        if not cookie or cookie.count(".") != 2:
            return None
        expiry, nonce, signature = cookie.split(".")
        if not (expiry.isascii() and expiry.isdigit() and len(expiry) <= 12) or nonce in self._ended:
            return None
        if int(expiry) <= self._clock():
            return None
        payload = f"{expiry}.{nonce}"
        for key in await self.ring.refresh():
            if hmac.compare_digest(_mac(key, "session", payload), signature):
                return Session(nonce, int(expiry), key)
        return None

    def end(self, session: Session) -> None:
        now = self._clock()
        self._ended = {nonce: expiry for nonce, expiry in self._ended.items() if expiry > now}
        self._ended[session.nonce] = session.expires_at


class Attempts:
    """Failed sign-ins per client address in a sliding window."""

    def __init__(self, *, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: dict[str, collections.deque[float]] = {}

    def _recent(self, client: str) -> collections.deque[float]:
        now = self._clock()
        failures = self._failures.setdefault(client, collections.deque())
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try again (0: now)."""
        failures = self._recent(client)
        if len(failures) < self._limit:
            return 0
        return max(1, int(failures[0] + self._window - self._clock()) + 1)

    def failed(self, client: str) -> None:
        self._recent(client)
        self._failures.setdefault(client, collections.deque()).append(self._clock())
