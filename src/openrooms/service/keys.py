"""Access keys: the one owner of them. Which keys are in force, how they are decoded, seeded and rotated.

The keys live in the store (`access_keys` table), so that `openrooms keys rotate` reaches every worker and
every instance sharing the database within `REFRESH_SECONDS`, without a restart. The keys a server was
started with are used until the store has keys of its own (an in-memory store starts with none).

The rule of which keys are in force (`resolve`): the two well-known development keys, published like
Azurite's, serve only while no key was ever chosen. As soon as one key is given (flag or variable) or
rotated, neither well-known key is accepted unless it is itself given: a key neither given nor stored (or
stored but well-known) becomes a new random key, stored like any other.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from openrooms.service import events
from openrooms.service.ports import RoomStore, StoreUnavailable

NAMES = ("primary", "secondary")
REFRESH_SECONDS = 1.0
KEY_BYTES = 32
MIN_KEY_BYTES = 16
# Well-known development keys: anyone can read them (they are in the README), so they protect nothing.
DEV_ACCESS_KEY = base64.b64encode(b"openrooms-development-access-key").decode()
DEV_SECONDARY_KEY = base64.b64encode(b"openrooms-development-second-key").decode()
DEVELOPMENT_KEYS = {"primary": DEV_ACCESS_KEY, "secondary": DEV_SECONDARY_KEY}
log = logging.getLogger("openrooms")

# Where a key in force comes from: given at this start (flag or variable), kept in the store (an earlier
# start or a rotation), new (random, stored now), or the well-known development key.
Origin = Literal["given", "stored", "new", "development"]


def decode_key(access_key: str) -> bytes:
    """An access key's bytes (keys are base64, as in connection strings); raises `binascii.Error` if not base64."""
    return base64.b64decode(access_key, validate=True)


def decode(key: str) -> bytes:
    """The secret an access key (base64, as in a connection string) stands for; ValueError if it is not
    base64 or too short to be a key."""
    try:
        secret = decode_key(key)
    except binascii.Error:
        raise ValueError("is not valid base64") from None
    if len(secret) < MIN_KEY_BYTES:
        raise ValueError(f"must decode to at least {MIN_KEY_BYTES} bytes")
    return secret


def new_key() -> str:
    """A fresh random access key, base64 like an ACS key."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def is_well_known(key: str) -> bool:
    return key in DEVELOPMENT_KEYS.values()


def ordered(keys: Mapping[str, str]) -> list[str]:
    return [keys[name] for name in NAMES if name in keys]


@dataclass(frozen=True)
class KeyInForce:
    key: str
    origin: Origin


def resolve(
    given: Mapping[str, str], stored: Mapping[str, str], generate: Callable[[], str] = new_key
) -> dict[str, KeyInForce]:
    """The keys in force for the keys `given` at start and those `stored` (see the module's rule)."""
    if not given and all(stored.get(name, key) == key for name, key in DEVELOPMENT_KEYS.items()):
        return {name: KeyInForce(key, "development") for name, key in DEVELOPMENT_KEYS.items()}
    resolved = {}
    for name in NAMES:
        if name in given:
            resolved[name] = KeyInForce(given[name], "given")
        elif name in stored and not is_well_known(stored[name]):
            resolved[name] = KeyInForce(stored[name], "stored")
        else:
            resolved[name] = KeyInForce(generate(), "new")
    return resolved


def well_known_in_force(keys: Mapping[str, KeyInForce]) -> list[str]:
    """The names of the keys in force that are well-known development keys (given or not)."""
    return [name for name, key in keys.items() if is_well_known(key.key)]


async def seed(store: RoomStore, keys: Mapping[str, KeyInForce], now: int) -> dict[str, KeyInForce]:
    """Store the keys a starting server resolved, and return the keys in force afterwards.

    Given and replacing keys overwrite; a key for a name with none stored is only inserted, so that instances
    starting together on one database agree on whichever was stored first."""
    stored = await store.get_access_keys()
    replacing = {name: k.key for name, k in keys.items()
                 if k.origin == "given" or (name in stored and is_well_known(stored[name]) and stored[name] != k.key)}
    if replacing:
        await store.set_access_keys(replacing, now, replace=True)
    final = await store.set_access_keys({name: k.key for name, k in keys.items()}, now, replace=False)
    return {name: k if final.get(name) == k.key else KeyInForce(final[name], "stored") for name, k in keys.items()}


async def rotate(store: RoomStore, name: str, now: int) -> dict[str, str]:
    """Replace the key `name` with a new random one; the other key keeps working, unless it is a well-known
    development key (or none is stored): that is replaced with a new random one too. Returns the new keys."""
    if name not in NAMES:
        raise ValueError(f"unknown key {name!r}; keys are {', '.join(NAMES)}")
    stored = await store.get_access_keys()
    new = {name: new_key()}
    for other in NAMES:
        if other != name and (other not in stored or is_well_known(stored[other])):
            new[other] = new_key()
    await store.set_access_keys(new, now, replace=True, events=[events.keys_rotated(sorted(new), now)])
    return new


class KeyRing:
    """The keys requests are checked against, decoded, re-read from the store at most every `refresh_seconds`
    (never without a store)."""

    def __init__(self, store: RoomStore | None, initial: Sequence[str], *,
                 refresh_seconds: float = REFRESH_SECONDS) -> None:
        self._store = store
        self._keys = [decode(key) for key in initial]
        self._refresh = refresh_seconds
        self._read_at = float("-inf") if store is not None else float("inf")

    @property
    def held(self) -> list[bytes]:
        """The keys last read (the same list object until they change)."""
        return self._keys

    @property
    def due(self) -> bool:
        """Whether the keys are to be re-read (`refresh`) before the next check: a request's check needs no
        await while they are fresh."""
        return time.monotonic() - self._read_at >= self._refresh

    async def refresh(self, *, force: bool = False) -> list[bytes]:
        """The keys in force: re-read from the store if they are due (or with `force`)."""
        now = time.monotonic()
        if self._store is not None and (force or now - self._read_at >= self._refresh):
            self._read_at = now
            try:
                stored = ordered(await self._store.get_access_keys())
            except StoreUnavailable as exc:
                # Keep checking against the keys last read: a store hiccup must not lock every client out.
                log.warning("could not re-read the access keys, using the ones read before: %s", exc)
                return self._keys
            decoded = [decode(key) for key in stored]
            if decoded and decoded != self._keys:
                self._keys = decoded
        return self._keys
