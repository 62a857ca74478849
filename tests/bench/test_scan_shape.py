"""The paged scan's linearity is judged on the whole scan, not on its two ends alone."""

from __future__ import annotations

import pytest

from bench import report, run


def _scale_section(scan: dict[str, object]) -> dict[str, object]:
    return {"scale": {"large_rooms": 1_000_000, "workloads": {}, "large_server_peak_rss_mb": 100.0,
                      "paged_scan": {"rooms": 1_000_000, **scan}}}


def _scan_target(scan: dict[str, object]) -> dict[str, object]:
    (row,) = [row for row in report.targets(_scale_section(scan)) if "paged scan" in row["target"]]
    return row


def test_a_flat_scan_with_one_cheap_first_tenth_is_linear_by_its_fitted_line() -> None:
    # The first pages hold the rooms just made, warm in every cache: cheaper than the rest, which are flat.
    times = [0.005] + [0.0010] * 100 + [0.0015] * 900
    shape = run.scan_shape(times)
    assert shape["last_to_first_ratio"] == pytest.approx(1.5, abs=0.01)  # the two ends alone say "not linear"
    assert shape["fitted_end_to_start_ratio"] < 1.3
    assert shape["ms_per_page_by_tenth"] == [1.0] + [1.5] * 9
    assert _scan_target(shape)["met"] is True


def test_a_scan_that_slows_down_page_by_page_is_not_linear() -> None:
    times = [0.001 * (1 + page / 1000) for page in range(2001)]  # twice as slow at the end
    shape = run.scan_shape(times)
    assert shape["ms_per_page_fitted_start"] == pytest.approx(1.001, abs=0.001)
    assert shape["ms_per_page_fitted_end"] == pytest.approx(3.0, abs=0.001)
    assert shape["fitted_end_to_start_ratio"] == pytest.approx(3.0, abs=0.01)
    assert _scan_target(shape)["met"] is False


def test_a_line_that_starts_at_or_below_zero_fails_the_target() -> None:
    times = [0.001] + [0.00001] * 50 + [0.01] * 50  # a step so steep that the line starts below zero
    shape = run.scan_shape(times)
    assert shape["fitted_end_to_start_ratio"] is None
    row = _scan_target(shape)
    assert (row["measured"], row["met"]) == ("n/a", False)


def test_a_scan_of_one_or_two_pages_has_a_flat_line() -> None:
    assert run.scan_shape([0.002])["fitted_end_to_start_ratio"] == 1.0
    assert run.scan_shape([0.01, 0.002])["fitted_end_to_start_ratio"] == 1.0
