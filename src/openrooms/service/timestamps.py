"""ACS timestamps as text <-> service ticks (100 ns since the Unix epoch, UTC): the one formatter of instants,
for bodies on the wire and for instants named in error messages alike.

In: the ISO 8601 forms the real service's JSON reader takes (the extended profile of System.Text.Json):
  - a date alone, `2022-11-23` (midnight UTC): `az communication rooms update --valid-until 2022-11-23` sends
    that as typed;
  - a date and a time to the minute (`2023-03-31T10:21`, az's own example), the second, or a fraction of up to
    16 digits (the first seven are kept: 100 ns);
  - a time with `Z` or an offset `+hh:mm` (also `+hhmm`), or without one: then it is UTC.
  `T` may also be `t` or a space, and `Z` may be `z`, as RFC 3339 allows. Anything else is not a timestamp.
Out: `+00:00`, up to seven fractional digits with trailing zeros trimmed, none for whole seconds; so a
client reads back exactly the instant it sent.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta

from openrooms.service.clock import TICKS_PER_SECOND

# More fractional digits than this are refused, as by the real service's reader; digits past the seventh count
# for nothing.
MAX_FRACTION_DIGITS = 16
_ISO8601 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"  # the date, then optionally:
    r"(?:[Tt ](\d{2}):(\d{2})"  # hours and minutes,
    rf"(?::(\d{{2}})(?:\.(\d{{1,{MAX_FRACTION_DIGITS}}}))?)?"  # seconds and their fraction,
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?)?",  # a zone
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse(text: str) -> int | None:
    """Ticks of a timestamp in one of the forms above, or None if it is not one."""
    match = _ISO8601.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                          tzinfo=UTC)
    except ValueError:
        return None
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:  # offsets run from -23:59 to +23:59
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
    hours, second_of_hour = divmod(seconds, 3600)
    if fraction:
        return f"{_hour(hours)}{_MINUTES_SECONDS[second_of_hour]}.{fraction:07d}".rstrip("0") + "+00:00"
    return f"{_hour(hours)}{_MINUTES_SECONDS[second_of_hour]}+00:00"


# The calendar arithmetic costs more than the rest of a room's body, so it is done once per hour of the clock,
# and minutes and seconds come from a table. Rooms made over months (a page deep in the list) format as fast
# as rooms made in the same second: with a cache by the second, each of those took a calendar computation.
@functools.lru_cache(maxsize=1 << 14)
def _hour(hours: int) -> str:
    t = _EPOCH + timedelta(hours=hours)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:"


_MINUTES_SECONDS = [f"{minute:02d}:{second:02d}" for minute in range(60) for second in range(60)]
