"""bench/migrate.py measures a copy, an unchanged rerun and a verify (tiny here: the benchmark runs 10,000)."""

from __future__ import annotations

from pathlib import Path

from bench.migrate import measure_migration


def test_the_migration_benchmark_reports_rates(tmp_path: Path) -> None:
    result = measure_migration(tmp_path, rooms=20, participants=100, concurrency=4)
    assert result["copy"]["created"] == 20
    assert result["unchanged_rerun"]["created"] == 0
    assert result["verify"]["differences"] == 0
    for run in ("copy", "unchanged_rerun", "verify"):
        assert result[run]["rooms_per_second"] > 0 and result[run]["participants_per_second"] > 0
