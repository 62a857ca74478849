"""The report's PostgreSQL sections and its 1 vs 2 workers table, from a report.json of known numbers."""

from __future__ import annotations

from typing import Any

from bench import report


def _row(rps: float, baseline: float | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"requests_per_second": rps, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0,
                           "server_cpu_cores": 1.0, "server_peak_rss_mb": 150.0, "generator_cpu_cores": 0.2}
    if baseline is None:
        return {**row, "requests_per_second_rounds": [rps]}
    return {**row, "baseline_rps": baseline, "ratio_to_baseline": round(rps / baseline, 3),
            "ratio_to_baseline_rounds": [round(rps / baseline, 3)]}


def _doc(postgresql: dict[str, Any]) -> dict[str, Any]:
    return {
        "generated_at": "2026-11-22T00:00:00Z", "total_seconds": 1.0,
        "machine": {"cpus": 2, "platform": "Linux", "python": "3.11", "sqlite": "3.40", "granian": "granian 2",
                    "wrk": "wrk 4", "commit": "abc1234"},
        "settings": {"seconds_per_run": 4, "rounds": 1, "warmup_seconds": 1, "connections": 32},
        "workloads": {"get_room": "GET /rooms/{id}"},
        "throughput": {"1-worker": {"get_room": _row(20_000.0, 40_000.0)},
                       "2-worker": {"get_room": _row(30_000.0, 60_000.0)}},
        "postgresql": postgresql,
        "targets": [],
    }


def test_postgresql_sections_per_worker_count_and_what_the_second_worker_adds_on_each_store() -> None:
    markdown = report.markdown(_doc({"1-worker": {"get_room": _row(4_000.0)}, "2-worker": {"get_room": _row(6_000.0)}}))
    assert "## Throughput: PostgreSQL (`--database-url`), 1-worker" in markdown
    assert "| get_room | 4,000 |" in markdown and "| get_room | 6,000 |" in markdown
    assert "| SQLite | get_room | 20,000 | 30,000 | 1.50x |" in markdown
    assert "| PostgreSQL | get_room | 4,000 | 6,000 | 1.50x |" in markdown


def test_a_skipped_postgresql_worker_count_says_why_and_leaves_the_other_in_the_report() -> None:
    markdown = report.markdown(_doc({"1-worker": {"get_room": _row(4_000.0)},
                                     "2-worker": {"skipped": "the run failed: no server"}}))
    assert "## Throughput: PostgreSQL (`--database-url`), 2-worker\n\nSkipped: the run failed: no server" in markdown
    assert "| get_room | 4,000 |" in markdown
    assert "| SQLite | get_room |" in markdown and "| PostgreSQL |" not in markdown


def test_the_event_log_section_checks_each_ratio_and_the_window_events_lateness() -> None:
    ab = {name: {"with_event_log_per_second": 90.0, "without_event_log_per_second": 100.0, "ratio": ratio}
          for name, ratio in (("create_room", 0.95), ("create_room_opening_ahead", 0.85), ("get_room", 0.99))}
    checked = report.targets({"event_log": {"in_process_ab": ab,
                                            "window_events": {"events": 40, "median_ms": 5.0, "max_ms": 1200.0}}})
    assert [(row["target"].split(" ")[0], row["met"]) for row in checked] == [
        ("create_room", True), ("create_room_opening_ahead", False), ("get_room", True), ("window", False)]
    assert report.targets({}) == []


def test_room_calls_section_with_capacity_and_when_not_run() -> None:
    calls = {"joins": 20, "join_to_first_frame_p50_s": 0.5, "join_to_first_frame_p99_s": 0.9,
             "steady_participants": 4, "janus_cpu_cores": 0.06, "openrooms_cpu_cores": 0.003,
             "openrooms_to_janus_cpu": 0.05,
             "capacity": {"participants": 6, "stopped_because": "with 7 participants, participant(s) [2] stopped "
                          "decoding video", "first_frame_bound_s": 5.0, "cpus": 2,
                          "steps": [{"participants": 1, "first_frame_s": None, "machine_cpu_busy": 0.4},
                                    {"participants": 2, "first_frame_s": 0.61, "machine_cpu_busy": 0.5}]}}
    markdown = report.markdown({**_doc({}), "calls": calls})
    assert "| join → first remote frame, p50 / p99 (20 joins) | 0.5 s / 0.9 s |" in markdown
    assert "**6 participants** all sending; stopped because with 7 participants" in markdown
    assert "| 2 | 0.61 | 0.50 |" in markdown
    skipped = report.markdown({**_doc({}), "calls": {"skipped": "janus is not installed"}})
    assert "## Room calls: NOT RUN" in skipped and "janus is not installed" in skipped
