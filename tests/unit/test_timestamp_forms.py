"""Which timestamp forms a request may use: those of the real service's JSON reader (ISO 8601's extended profile,
as System.Text.Json reads it): a date alone, a time to the minute, the second or a fraction of up to 16 digits,
with `Z`, with an offset or without one (UTC). Everything else is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openrooms.service import timestamps
from openrooms.service.clock import TICKS_PER_SECOND

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ticks_of(moment: datetime, fraction_ticks: int = 0) -> int:
    """An aware datetime (whole seconds) plus 100 ns ticks, counted independently of the parser."""
    return (moment - EPOCH) // timedelta(seconds=1) * TICKS_PER_SECOND + fraction_ticks


PRECISIONS = ("date", "minute", "second", "fraction")


@st.composite
def wire_timestamps(draw: st.DrawFn) -> tuple[str, int]:
    """A timestamp in one of the accepted forms, and the instant it names."""
    local = draw(st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(9998, 12, 30)))
    precision = draw(st.sampled_from(PRECISIONS))
    if precision == "date":
        # A date alone has no zone: it is that day's midnight, UTC.
        day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=UTC)
        return local.strftime("%Y-%m-%d"), ticks_of(day)
    text = local.strftime("%Y-%m-%dT%H:%M")
    moment = local.replace(second=0 if precision == "minute" else local.second, microsecond=0)
    if precision != "minute":
        text += local.strftime(":%S")
    fraction_ticks = 0
    if precision == "fraction":
        digits = draw(st.text("0123456789", min_size=1, max_size=timestamps.MAX_FRACTION_DIGITS))
        text += "." + digits
        fraction_ticks = int(digits[:7].ljust(7, "0"))  # 100 ns: the digits after the seventh count for nothing
    zone = draw(st.sampled_from(("none", "Z", "z", "offset", "offset without colon")))
    if zone == "none":
        return text, ticks_of(moment.replace(tzinfo=UTC), fraction_ticks)
    if zone in ("Z", "z"):
        return text + zone, ticks_of(moment.replace(tzinfo=UTC), fraction_ticks)
    minutes = draw(st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))
    sign, magnitude = ("-" if minutes < 0 else "+"), abs(minutes)
    separator = ":" if zone == "offset" else ""
    text += f"{sign}{magnitude // 60:02d}{separator}{magnitude % 60:02d}"
    return text, ticks_of(moment.replace(tzinfo=timezone(timedelta(minutes=minutes))), fraction_ticks)


@given(wire_timestamps())
def test_every_accepted_form_reads_as_the_instant_it_names(case: tuple[str, int]) -> None:
    text, expected = case
    assert timestamps.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "formatted"),
    [
        # What az sends as typed (its extension's own test), and az's help example: minutes, no zone.
        ("2022-11-23", "2022-11-23T00:00:00+00:00"),
        ("2023-03-31T10:21", "2023-03-31T10:21:00+00:00"),
        ("2023-03-31T10:21Z", "2023-03-31T10:21:00+00:00"),
        ("2023-03-31T10:21+02:00", "2023-03-31T08:21:00+00:00"),
        ("2023-03-31T10:21:05", "2023-03-31T10:21:05+00:00"),
        ("2023-03-31T10:21:05.1234567890123456-01:00", "2023-03-31T11:21:05.1234567+00:00"),  # 16 digits
    ],
)
def test_the_forms_az_sends(text: str, formatted: str) -> None:
    ticks = timestamps.parse(text)
    assert ticks is not None
    assert timestamps.format(ticks) == formatted


@pytest.mark.parametrize(
    "text",
    [
        "2023-03-31Z",  # a date has no zone
        "2023-03-31+01:00",
        "2023-03-31T10",  # hours alone
        "2023-03-31T10Z",
        "2023-03-31T10:21:05.",  # a fraction has at least one digit
        "2023-03-31T10:21:05.12345678901234567",  # and at most 16
        "2023-03-31T10:21:05+24:00",
        "2023-03-31T10:21:05+01",
        "2023-03-31T24:00",
        "2023-03-31T10:60",
        "2023-02-29",
        "20230331",  # the basic format
        "20230331T102105Z",
        "2023-W13-5",  # week and ordinal dates
        "2023-090",
        "2023-3-31",
        "+2023-03-31",
        "31/03/2023",
        "2023-03-31T10:21:05 UTC",
        "\uff12\uff10\uff12\uff13-03-31",  # digits are ASCII digits (these are full-width)
        "tomorrow",
        "",
    ],
)
def test_other_forms_are_refused(text: str) -> None:
    assert timestamps.parse(text) is None


@given(st.text(max_size=48))
def test_any_text_is_read_or_refused(text: str) -> None:
    ticks = timestamps.parse(text)
    assert ticks is None or isinstance(ticks, int)
