"""Identifiers: room ids this server makes, and the communication identifiers rooms accept."""

from __future__ import annotations

import os
import re
import threading

from openrooms.service import errors

ROOM_ID_DIGITS = 17
# The real service's ids are 16 to 18 digits long; anything of another length is refused as such.
ROOM_ID_LENGTHS = range(16, 19)

_ROOM_ID_LOW = 10 ** (ROOM_ID_DIGITS - 1)
_ROOM_ID_SPAN = 9 * _ROOM_ID_LOW  # the ids run from 10**16 to 10**17 - 1
_ROOM_ID_SHIFT = 64 - _ROOM_ID_SPAN.bit_length()


class _Entropy:
    """Bytes from the OS's CSPRNG, fetched 4 KiB at a time: one system call per 512 room ids, not one each.
    Never shared with a forked worker: each process draws its own."""

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._buffer, self._position = b"", self.SIZE

    def take8(self) -> int:
        with self._lock:
            if self._position == self.SIZE:
                self._buffer, self._position = os.urandom(self.SIZE), 0
            start = self._position
            self._position += 8
            return int.from_bytes(self._buffer[start:start + 8])


_entropy = _Entropy()


def new_room_id() -> str:
    """A 17-digit id from the OS's CSPRNG, uniform over all of them: unguessable. The store guarantees it was
    never issued before."""
    while True:  # rejection sampling: a draw of the span's bit length, kept when it falls inside the span
        draw = _entropy.take8() >> _ROOM_ID_SHIFT
        if draw < _ROOM_ID_SPAN:
            return str(_ROOM_ID_LOW + draw)


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
    """For ids being added or re-roled."""
    if not is_user_id(raw_id):
        raise errors.invalid_identifier_format()


def check_removed_participant_id(raw_id: str) -> None:
    """For ids being removed: the real service words this one differently."""
    if not is_user_id(raw_id):
        raise errors.identifier_not_supported(raw_id)
