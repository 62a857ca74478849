"""Access keys: where the server finds them, how they are seeded and rotated.

The keys live in the store (`access_keys` table), so that `openrooms keys rotate` reaches every worker and
every instance sharing the database within `REFRESH_SECONDS`, without a restart. The keys a server was
started with are used until the store has keys of its own (an in-memory store starts with none).
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Mapping, Sequence

from openrooms.events import build as events
from openrooms.service.ports import RoomStore, StoreUnavailable

NAMES = ("primary", "secondary")
REFRESH_SECONDS = 1.0
KEY_BYTES = 32
log = logging.getLogger("openrooms")


def new_key() -> str:
    """A fresh random access key, base64 like an ACS key."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def decode_key(access_key: str) -> bytes:
    """An access key's bytes (keys are base64, as in connection strings); raises `binascii.Error` if not base64."""
    return base64.b64decode(access_key, validate=True)


def ordered(keys: Mapping[str, str]) -> list[str]:
    return [keys[name] for name in NAMES if name in keys]


async def seed(store: RoomStore, defaults: Mapping[str, str], overrides: Mapping[str, str], now: int) -> dict[str, str]:
    """The keys a starting server uses: `overrides` (keys given on the command line or in the environment)
    replace the stored ones; a name with no stored key gets its default; other stored keys are kept."""
    if overrides:
        await store.set_access_keys(overrides, now, replace=True)
    return await store.set_access_keys(defaults, now, replace=False)


async def rotate(store: RoomStore, name: str, now: int) -> str:
    """Replace the key `name` with a new random one and return it; the other key keeps working."""
    if name not in NAMES:
        raise ValueError(f"unknown key {name!r}; keys are {', '.join(NAMES)}")
    key = new_key()
    await store.set_access_keys({name: key}, now, replace=True, events=[events.keys_rotated([name], now)])
    return key


class KeyRing:
    """The keys requests are checked against, re-read from the store at most every `refresh_seconds`."""

    def __init__(self, store: RoomStore, initial: Sequence[str], *, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self._store = store
        self._keys = [base64.b64decode(key) for key in initial]
        self._refresh = refresh_seconds
        self._read_at = float("-inf")

    def current(self) -> list[bytes] | None:
        """The keys, or None once they are due to be re-read (then `keys`): a request's check needs no await
        while they are fresh."""
        return self._keys if time.monotonic() - self._read_at < self._refresh else None

    async def keys(self) -> list[bytes]:
        now = time.monotonic()
        if now - self._read_at >= self._refresh:
            self._read_at = now
            try:
                stored = ordered(await self._store.get_access_keys())
            except StoreUnavailable as exc:
                # Keep checking against the keys last read: a store hiccup must not lock every client out.
                log.warning("could not re-read the access keys, using the ones read before: %s", exc)
                return self._keys
            if stored:
                self._keys = [base64.b64decode(key) for key in stored]
        return self._keys
