"""Identifiers: room ids this server makes, and the communication identifiers rooms accept."""

from __future__ import annotations

import os
import re
import threading
import time

from openrooms.service import errors

ROOM_ID_DIGITS = 17
# The real service's ids are 16 to 18 digits long; anything of another length is refused as such.
ROOM_ID_LENGTHS = range(16, 19)

# An id is 10**16 + window * 10**5 + suffix: the 10 ms window of the wall clock it was made in, then five random
# digits. Ids made close together sort together, so a burst of creates writes to one end of the store's id
# indexes instead of to a random page of them each (with uniformly random ids, SQLite's share of a create was
# about three times as large, measured on a growing table). The windows run out in the year 2255.
_ROOM_ID_LOW = 10 ** (ROOM_ID_DIGITS - 1)
_WINDOW_NS = 10_000_000
_SUFFIXES = 10**5


class _RoomIds:
    """Each process draws its own suffixes from the OS's CSPRNG, fetched 4 KiB at a time (one system call per
    512 ids), and never repeats one within a window. A window that is half used moves the ids on to the next
    one, so drawing never slows down; a clock that goes back leaves them in the window they are in. Ids from
    different processes may still meet: the store refuses an id issued before, and the service draws again."""

    ENTROPY = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._buffer, self._position = b"", self.ENTROPY
        self._window = 0
        self._used: set[int] = set()

    def _take8(self) -> int:
        if self._position == self.ENTROPY:
            self._buffer, self._position = os.urandom(self.ENTROPY), 0
        start = self._position
        self._position += 8
        return int.from_bytes(self._buffer[start:start + 8])

    def next(self) -> str:
        window = time.time_ns() // _WINDOW_NS
        with self._lock:
            if window > self._window:
                self._window, self._used = window, set()
            elif len(self._used) >= _SUFFIXES // 2:
                self._window, self._used = self._window + 1, set()
            while True:
                # 8 random bytes modulo 10**5: a bias below 10**-14
                suffix = self._take8() % _SUFFIXES
                if suffix not in self._used:
                    self._used.add(suffix)
                    return _room_id(self._window, suffix)


def _room_id(window: int, suffix: int) -> str:
    return str(_ROOM_ID_LOW + window * _SUFFIXES + suffix)


def room_id_made_at(time_ns: int, suffix: int) -> str:
    """The id of a room made at `time_ns` (wall clock, ns since the epoch) with the suffix `suffix` (0 to 99,999),
    as `new_room_id` would make it. For tools that fill a database without the API."""
    if not 0 <= suffix < _SUFFIXES:
        raise ValueError(f"a room id's suffix is 0 to {_SUFFIXES - 1}, not {suffix}")
    return _room_id(time_ns // _WINDOW_NS, suffix)


_room_ids = _RoomIds()


def new_room_id() -> str:
    """A 17-digit id: the time it was made, to 10 ms, and five random digits. The store guarantees it was never
    issued before."""
    return _room_ids.next()


def check_room_id(room_id: str) -> None:
    if len(room_id) not in ROOM_ID_LENGTHS:
        raise errors.invalid_room_id_length()
    if not room_id.isascii() or not room_id.isdigit():
        raise errors.invalid_room_id()


# ACS user identifiers: `<prefix><resource GUID>_<user part>`, the prefix naming the cloud.
USER_PREFIXES = ("8:acs:", "8:spool:", "8:dod-acs:", "8:gcch-acs:")
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
USER_ID_PATTERN = r"8:(?:acs|spool|dod-acs|gcch-acs):" + _GUID + r"_[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_USER_ID = re.compile(USER_ID_PATTERN)


def is_user_id(raw_id: str) -> bool:
    return _USER_ID.fullmatch(raw_id) is not None


def check_participant_id(raw_id: str) -> None:
    """For the roster of a room being created. The real service words its refusal by what the id claims to be:
    one with a user prefix (`8:acs:123456c`) is a user id of a form it does not support; anything else
    (`wrong_mri`, a phone number, a Teams user) has no format it knows."""
    if not is_user_id(raw_id):
        if raw_id.startswith(USER_PREFIXES):
            raise errors.identifier_not_supported(raw_id)
        raise errors.invalid_identifier_format()


def check_roster_change_id(raw_id: str) -> None:
    """For ids being added, re-roled or removed by a roster update: there the real service says of any id that
    is no user id that it is not supported (`wrong_mri` and `8:acs:123456c` alike)."""
    if not is_user_id(raw_id):
        raise errors.identifier_not_supported(raw_id)
