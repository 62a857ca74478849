"""Web console sessions and the limit on failed sign-ins, kept in the store: every worker and every instance on one
database shares them.

A session is a random token, the console's cookie; the store keeps the token's SHA-256 hash, never the token, so
that reading the database gives no session away. Every console request reads its session by that hash (one read by
primary key). Nothing of a session is kept in a worker: signing out (which deletes the row) ends the session on
every worker and every instance at once, and so does its expiry. The CSRF token of a session is an HMAC keyed with
the session's token: a form carries it; a cookie alone (which another site's page cannot read) is not enough, and a
page's CSRF token gives neither the session's token nor its hash away.

Who signed in is a `Principal`. A session of an access key keeps the key's fingerprint and ends as soon as that key
is no longer in force (rotated away: seen within `keys.REFRESH_SECONDS`, as API requests see it; a fingerprint
not among the keys last read makes them read again at once); a session of an OpenID Connect subject does not
depend on the access keys. `ConsoleSessions.start` is the one way a session begins,
whatever signed it in.

Failed sign-ins are counted per client address in a window that starts at the first failure: `MAX_FAILURES` within
`FAILURE_WINDOW_SECONDS` refuse further attempts (even with the right key) until that window has passed. Expired
sessions and passed windows are deleted by the next sign-in (and by failed ones, at most once a window per worker).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from openrooms.service import keys
from openrooms.service.keys import KeyRing
from openrooms.service.ports import ConsoleSessionRecord, ConsoleSessionStore

ACCESS_KEY = "access-key"  # signed in with an access key of the server
OIDC = "oidc"  # signed in through an OpenID Connect issuer
KINDS = (ACCESS_KEY, OIDC)
MAX_FAILURES = 5
FAILURE_WINDOW_SECONDS = 60
TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 64  # a cookie longer than any token this issues is not looked up


def token_hash(token: str) -> str:
    """What the store keeps of a session's token."""
    return hashlib.sha256(token.encode()).hexdigest()


def key_id(key: bytes) -> str:
    """The fingerprint of an access key, by which a session names the key it signed in with."""
    return hashlib.sha256(b"openrooms console key " + key).hexdigest()


def _mac(secret: str, purpose: str) -> str:
    digest = hmac.new(secret.encode(), b"openrooms console " + purpose.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Principal:
    """Who signs in: how (`kind`, one of `KINDS`), the name the console shows, and for an access key the key."""

    kind: str
    name: str
    key: bytes | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind of principal {self.kind!r}; kinds are {', '.join(KINDS)}")
        if (self.key is not None) != (self.kind == ACCESS_KEY):
            raise ValueError("an access-key principal has its key, and no other kind has one")


@dataclass(frozen=True)
class Session:
    token: str  # the cookie's value
    record: ConsoleSessionRecord

    @property
    def csrf(self) -> str:
        return _mac(self.token, "csrf")

    @property
    def expires_at(self) -> int:
        return self.record.expires_at

    @property
    def principal(self) -> str:
        return self.record.principal


class ConsoleSessions:
    def __init__(self, store: ConsoleSessionStore, ring: KeyRing, minutes: int, *,
                 clock: Callable[[], float] = time.time, max_failures: int = MAX_FAILURES,
                 failure_window: int = FAILURE_WINDOW_SECONDS) -> None:
        self._store = store
        self.ring = ring  # the access keys in force (replaced by the console right after it rotates one)
        self.lifetime = minutes * 60
        self._clock = clock
        self.max_failures = max_failures
        self.failure_window = failure_window
        self._swept_at = float("-inf")

    async def key_principal(self, submitted: str) -> Principal | None:
        """The principal of an access key in force (compared in constant time), or None."""
        try:
            candidate = keys.decode(submitted.strip())
        except ValueError:
            return None
        found = None
        for name, key in zip(keys.NAMES, await self.ring.refresh(), strict=False):
            if hmac.compare_digest(candidate, key):
                found = Principal(ACCESS_KEY, f"the {name} access key", key)
        return found

    async def start(self, principal: Principal, *, until: int | None = None) -> Session:
        """Begin a session for a principal that has just signed in (its cookie's value is `.token`), for the
        session's lifetime (or `until` then)."""
        now = int(self._clock())
        token = secrets.token_urlsafe(TOKEN_BYTES)
        record = ConsoleSessionRecord(token_hash(token), principal.kind, principal.name,
                                      None if principal.key is None else key_id(principal.key), now,
                                      now + self.lifetime if until is None else until)
        await self._sweep(now)
        await self._store.insert_console_session(record)
        return Session(token, record)

    async def check(self, token: str | None) -> Session | None:
        """The session of a cookie's value: None if there is none by that token, or it has expired, or it was
        signed in with an access key no longer in force."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        record = await self._store.get_console_session(token_hash(token))
        if record is None or record.expires_at <= self._clock():
            return None
        if record.key_id is not None and not await self._key_in_force(record.key_id):
            return None
        return Session(token, record)

    async def _key_in_force(self, wanted: str) -> bool:
        """Whether the key of that fingerprint is in force. Not among the keys last read, they are read again at
        once: a key another worker has just rotated in (its session renewed) is in force here too."""
        if wanted in [key_id(key) for key in await self.ring.refresh()]:
            return True
        return wanted in [key_id(key) for key in await self.ring.refresh(force=True)]

    def seconds_left(self, session: Session) -> int:
        """What the session's cookie is to last."""
        return max(0, session.expires_at - int(self._clock()))

    async def end(self, session: Session) -> None:
        """Sign out: the session ends on every worker and instance."""
        await self._store.delete_console_session(session.record.token_hash)

    async def renew(self, session: Session, principal: Principal) -> Session:
        """End `session` and start another for `principal` that ends when it would have (after the session's key
        was rotated)."""
        await self.end(session)
        return await self.start(principal, until=session.expires_at)

    async def retry_after(self, client: str) -> int:
        """Seconds until `client` may try to sign in again (0: now)."""
        found = await self._store.get_sign_in_failures(client)
        if found is None:
            return 0
        failures, window_start = found
        left = window_start + self.failure_window - self._clock()
        if failures < self.max_failures or left <= 0:
            return 0
        return max(1, math.ceil(left))

    async def failed(self, client: str) -> None:
        """Count a failed sign-in of `client`."""
        now = int(self._clock())
        await self._store.add_sign_in_failure(client, now, self.failure_window)
        if now - self._swept_at >= self.failure_window:
            await self._sweep(now)

    async def _sweep(self, now: int) -> None:
        self._swept_at = now
        await self._store.sweep_console(now, self.failure_window)
