"""The benchmark harness runs end to end: a couple of seconds of one workload against a real server and the
baseline, and a report with every field and no failed request. No timing is asserted: that is the report's job."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import inprocess, report
from tests.store import postgres_schema

REPO = Path(__file__).resolve().parents[2]
FIELDS = ("requests_per_second", "p50_ms", "p99_ms", "errors", "server_cpu_cores", "server_peak_rss_mb",
          "generator_cpu_cores", "baseline_rps", "ratio_to_baseline")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (`make bench` installs it)")
def test_one_workload_for_two_rounds_reports_every_field_and_no_errors(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "bench", "--seconds", "2", "--warmup", "0", "--workload", "get_room",
         "--workers", "1", "--rounds", "2", "--seed-rooms", "20", "--scan-seconds", "2", "--no-store-limit",
         "--no-webhooks", "--query-rooms", "300", "--no-event-log", "--output", str(tmp_path)],
        cwd=REPO, check=True, capture_output=True, timeout=180,
    )
    report = json.loads((tmp_path / "report.json").read_text())
    row = report["throughput"]["1-worker"]["get_room"]
    for field in FIELDS:
        assert field in row, field
    assert row["errors"] == 0
    assert row["requests_per_second"] > 0 and row["baseline_rps"] > 0
    assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert row["server_cpu_cores"] > 0 and row["server_peak_rss_mb"] > 0
    # Two rounds, openrooms then the baseline each time; the row is the lower of the two rounds' ratios
    runs = [(r["target"], r["round"]) for r in report["runs"] if r["workload"] == "get_room"]
    assert runs == [("openrooms", 1), ("baseline", 1), ("openrooms", 2), ("baseline", 2)]
    assert all(r["errors"] == 0 for r in report["runs"])
    ours = [r["requests_per_second"] for r in report["runs"] if r["target"] == "openrooms"]
    theirs = [r["requests_per_second"] for r in report["runs"] if r["target"] == "baseline"]
    ratios = [round(a / b, 3) for a, b in zip(ours, theirs, strict=True)]
    assert row["ratio_to_baseline_rounds"] == ratios
    assert row["ratio_to_baseline"] == min(ratios) and row["baseline_rps"] == theirs[ratios.index(min(ratios))]
    assert report["paged_scan"]["rooms"] >= 21  # the seeded rooms and the 1,000-participant room
    assert {t["target"] for t in report["targets"]} >= {"get_room vs baseline (1 worker)",
                                                         "get_room p99 at 32 connections"}
    markdown = (tmp_path / "report.md").read_text()
    assert "| get_room |" in markdown and "## Targets" in markdown
    assert "## Performance: what each optimisation changed" in markdown  # docs/performance.md, appended
    assert "| change | before | after |" in markdown
    # The room queries' run, on SQLite alone without --postgres-url (tests/bench/test_room_queries_bench.py: both)
    assert set(report["room_queries"]["stores"]) == {"sqlite"} and report["room_queries"]["postgresql_skipped"]
    assert "## Room queries: 300 rooms, 3,000 roster entries" in markdown


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (`make bench` installs it)")
def test_postgresql_runs_with_each_worker_count_and_is_compared_to_that_counts_baseline(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--seconds", "1", "--warmup", "0", "--workload", "get_room",
         "--workers", "1,2", "--rounds", "1", "--seed-rooms", "5", "--scan-seconds", "1", "--no-store-limit",
         "--no-webhooks", "--query-rooms", "0", "--no-event-log", "--postgres-url", postgres_schema.base_url(),
         "--output", str(tmp_path)],
        cwd=REPO, check=True, capture_output=True, text=True, timeout=180,
    )
    report = json.loads((tmp_path / "report.json").read_text())
    # Each run's log line counts it against the runs planned: the count it ends with is every run made.
    made = len(report["runs"])
    assert made == 6  # SQLite, baseline and PostgreSQL, with 1 and with 2 workers
    assert f"[run {made}/{made}, about 0 s left]" in " ".join(done.stderr.split()), done.stderr
    assert set(report["postgresql"]) == {"1-worker", "2-worker"}, report["postgresql"]
    for workers in ("1-worker", "2-worker"):
        row = report["postgresql"][workers]["get_room"]
        assert row["errors"] == 0 and row["requests_per_second"] > 0
        assert row["baseline_rps"] == report["throughput"][workers]["get_room"]["baseline_rps"]
        assert row["ratio_to_baseline"] == round(row["requests_per_second"] / row["baseline_rps"], 3)
    runs = [(r["section"], r["store"], r["workers"]) for r in report["runs"] if r["target"] == "openrooms"]
    assert ("postgresql-2-worker", "postgresql", 2) in runs
    markdown = (tmp_path / "report.md").read_text()
    assert "## Throughput: PostgreSQL (`--database-url`), 2-worker" in markdown
    assert "| PostgreSQL | get_room |" in markdown and "| SQLite | get_room |" in markdown  # 1 vs 2 workers


def test_the_in_process_measurement_answers_every_operation(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.inprocess"], cwd=REPO, check=True, capture_output=True,
                          text=True, timeout=180)
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "get_room", "list_rooms", "list_participants", "create_room", "update_room"]
    assert all(line.endswith("(status 200)") for line in lines if not line.startswith("create_room"))
    assert next(line for line in lines if line.startswith("create_room")).endswith("(status 201)")


def test_the_event_log_measurement_compares_both_stores_and_times_the_window_events() -> None:
    section = inprocess.on_serving_loop(inprocess.event_log_report(rounds=1, creates=32, gets=64, window_rooms=4))
    assert set(section["in_process_ab"]) == {"create_room", "create_room_opening_ahead", "get_room"}
    assert all(row["ratio"] > 0 and row["wall_ratio"] > 0 for row in section["in_process_ab"].values())
    assert section["window_events"]["events"] == 8
    assert [row["target"] for row in report.targets({"event_log": section})][-1].startswith("window events")
