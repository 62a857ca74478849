from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openrooms.service import timestamps


@pytest.mark.parametrize(
    ("text", "formatted"),
    [
        ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00+00:00"),
        ("2030-01-01T00:00:00.000Z", "2030-01-01T00:00:00+00:00"),
        ("2030-01-01T00:00:00.120000Z", "2030-01-01T00:00:00.12+00:00"),
        ("2030-01-01T00:00:00.123456+00:00", "2030-01-01T00:00:00.123456+00:00"),
        ("2030-01-01T00:00:00.1234567Z", "2030-01-01T00:00:00.1234567+00:00"),
        ("2030-01-01T00:00:00.123456789Z", "2030-01-01T00:00:00.1234567+00:00"),  # nine digits kept to seven
        ("2030-01-01T02:30:00+02:30", "2030-01-01T00:00:00+00:00"),
        ("2029-12-31T19:00:00-05:00", "2030-01-01T00:00:00+00:00"),
        ("2030-01-01T00:00:00", "2030-01-01T00:00:00+00:00"),  # no zone: UTC
        ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.5+00:00"),
    ],
)
def test_parse_then_format(text: str, formatted: str) -> None:
    ticks = timestamps.parse(text)
    assert ticks is not None
    assert timestamps.format(ticks) == formatted


@pytest.mark.parametrize("text", ["", "tomorrow", "2030-13-01T00:00:00Z", "2030-02-30T00:00:00Z", "2030-01-01Z",
                                  "2030-01-01T00:00:00.Z", "2030-01-01T00:00:00.12345678901234567Z"])
def test_rejects_what_is_not_rfc3339(text: str) -> None:
    assert timestamps.parse(text) is None


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)))
def test_python_datetimes_round_trip_exactly(moment: datetime) -> None:
    """What the Python SDK sends (isoformat, microseconds) reads back equal."""
    text = timestamps.format(timestamps.parse(moment.isoformat()) or 0)
    assert datetime.fromisoformat(text) == moment
