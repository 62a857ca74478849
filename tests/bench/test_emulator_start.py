"""bench.emulator_start: its probe runs in a fresh interpreter and reports both starts (no time is asserted)."""

from __future__ import annotations

from bench import emulator_start


def test_one_run_reports_a_cold_and_a_warm_start() -> None:
    result = emulator_start.measure(1)
    assert result["runs"] == 1 and result["target_seconds"] == emulator_start.TARGET_SECONDS
    assert len(result["cold_seconds"]) == len(result["warm_seconds"]) == 1
    assert result["cold_median"] > 0 and result["warm_median"] > 0
