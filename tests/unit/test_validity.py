"""The validity window: defaults and rules, with an injected clock."""

from __future__ import annotations

import pytest

from openrooms.service import validity
from openrooms.service.clock import TICKS_PER_DAY, TICKS_PER_SECOND
from openrooms.service.errors import MALFORMED_REQUEST, ServiceError

NOW = 1_800_000_000 * TICKS_PER_SECOND
DAY = TICKS_PER_DAY
MAX = 180 * DAY


def details(exc: ServiceError) -> list[tuple[str, str | None]]:
    return [(d.message, d.target) for d in exc.details]


def test_create_defaults_to_now_and_exactly_180_days() -> None:
    window = validity.window_for_create(None, None, NOW)
    assert (window.valid_from, window.valid_until) == (NOW, NOW + MAX)


def test_create_with_only_a_start_ends_180_days_after_it() -> None:
    start = NOW + 10 * DAY
    assert validity.window_for_create(start, None, NOW).valid_until == start + MAX


def test_create_with_only_an_end_starts_now() -> None:
    assert validity.window_for_create(None, NOW + DAY, NOW).valid_from == NOW


def test_start_in_the_past_is_accepted() -> None:
    window = validity.window_for_create(NOW - 30 * DAY, NOW + DAY, NOW)
    assert window.valid_from == NOW - 30 * DAY


def test_exactly_180_days_is_accepted_one_tick_more_is_not() -> None:
    validity.window_for_create(NOW, NOW + MAX, NOW)
    with pytest.raises(ServiceError) as caught:
        validity.window_for_create(NOW, NOW + MAX + 1, NOW)
    assert details(caught.value) == [("The time range is incorrect, or larger than 180 days.", "ValidUntil")]


def test_end_in_the_past_wins_over_every_other_error() -> None:
    with pytest.raises(ServiceError) as caught:
        validity.window_for_create(NOW + 400 * DAY, NOW - 1, NOW)
    error = caught.value
    assert (error.status, error.code, error.message) == (400, "BadRequest", MALFORMED_REQUEST)
    assert details(error) == [("The time range end is in the past.", "ValidUntil")]
    assert error.details[0].code == "BadArgument"


def test_end_before_start() -> None:
    with pytest.raises(ServiceError) as caught:
        validity.window_for_create(NOW + 2 * DAY, NOW + DAY, NOW)
    assert details(caught.value) == [("The time range is incorrect, or larger than 180 days.", "ValidUntil")]


def test_start_too_far_ahead_and_range_wrong_are_reported_together() -> None:
    with pytest.raises(ServiceError) as caught:
        validity.window_for_create(NOW + 181 * DAY, NOW + 400 * DAY, NOW)
    assert details(caught.value) == [
        ("Value is incorrect or more than 180 days in the future.", "ValidFrom"),
        ("The time range is incorrect, or larger than 180 days.", "ValidUntil"),
    ]


def test_start_too_far_ahead_alone() -> None:
    with pytest.raises(ServiceError) as caught:
        validity.window_for_create(NOW + 181 * DAY, NOW + 182 * DAY, NOW)
    assert details(caught.value) == [("Value is incorrect or more than 180 days in the future.", "ValidFrom")]


def test_update_without_bounds_leaves_the_window() -> None:
    assert validity.window_for_update(None, None, NOW) is None


@pytest.mark.parametrize("bounds", [(NOW, None), (None, NOW + DAY)])
def test_update_needs_both_bounds(bounds: tuple[int | None, int | None]) -> None:
    with pytest.raises(ServiceError) as caught:
        validity.window_for_update(*bounds, NOW)
    assert details(caught.value) == [("validFrom and validUntil should be set together.", "")]


def test_update_applies_the_same_rules() -> None:
    with pytest.raises(ServiceError) as caught:
        validity.window_for_update(NOW - 2 * DAY, NOW - DAY, NOW)
    assert details(caught.value) == [("The time range end is in the past.", "ValidUntil")]
    assert validity.window_for_update(NOW, NOW + DAY, NOW) == validity.Window(NOW, NOW + DAY)
