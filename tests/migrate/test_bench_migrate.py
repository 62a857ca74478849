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


def test_the_benchmark_report_has_a_migration_section() -> None:
    from bench import report
    from tests.bench.test_report import _doc

    run = {"seconds": 10.0, "rooms_per_second": 1000.0, "participants_per_second": 5000.0,
           "source_requests_per_second": 1001.0}
    doc = _doc({}) | {"migration": {"rooms": 10_000, "participants": 50_000, "concurrency": 16, "copy": run,
                                    "unchanged_rerun": run, "verify": run}}
    markdown = report.markdown(doc)
    assert "## `openrooms migrate from-acs`: 10,000 rooms, 50,000 participants" in markdown
    assert "| copy | 10.00 | 1,000 | 5,000 | 1,001 |" in markdown
