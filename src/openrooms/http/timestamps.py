"""ACS timestamps on the wire <-> service ticks (100 ns since the Unix epoch, UTC).

In: RFC 3339 with `Z` or an offset (no zone: UTC), up to nine fractional digits (kept to seven).
Out: `+00:00`, up to seven fractional digits with trailing zeros trimmed, none for whole seconds; so a
client reads back exactly the instant it sent.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta

from openrooms.service.clock import TICKS_PER_SECOND

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse(text: str) -> int | None:
    """Ticks of an RFC 3339 timestamp, or None if it is not one."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    except ValueError:
        return None
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:  # RFC 3339 offsets run from -23:59 to +23:59
            return None
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        moment -= offset if sign == "+" else -offset
    delta = moment - _EPOCH
    ticks = (delta.days * 86_400 + delta.seconds) * TICKS_PER_SECOND
    if fraction:
        ticks += int(fraction[:7].ljust(7, "0"))
    return ticks


def format(ticks: int) -> str:
    seconds, fraction = divmod(ticks, TICKS_PER_SECOND)
    if fraction:
        return f"{_whole_seconds(seconds)}.{fraction:07d}".rstrip("0") + "+00:00"
    return _whole_seconds(seconds) + "+00:00"


@functools.lru_cache(maxsize=1 << 14)
def _whole_seconds(seconds: int) -> str:
    # Cached by the second: the rooms created in one second share it, as do their validFrom and their default
    # validUntil (180 days on), and the calendar arithmetic costs more than the rest of a room's body.
    t = _EPOCH + timedelta(seconds=seconds)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
