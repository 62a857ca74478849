"""The webhook benchmark runs end to end within `python -m bench`: every field of its section, no failed request,
every event delivered, and its table in the report. No timing is asserted: that is the report's job."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (`make bench` installs it)")
def test_the_webhook_section_reports_latency_throughput_and_the_create_ratio(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "bench", "--seconds", "1", "--warmup", "0", "--workload", "get_room", "--workers", "1",
         "--rounds", "1", "--seed-rooms", "5", "--scan-seconds", "1", "--no-store-limit", "--no-baseline",
         "--connections", "4", "--query-rooms", "0", "--no-event-log", "--output", str(tmp_path)],
        cwd=REPO, check=True, capture_output=True, timeout=180,
    )
    runs = json.loads((tmp_path / "report.json").read_text())["webhooks"]["runs"]
    assert set(runs) == {"maxEventsPerBatch=1", "maxEventsPerBatch=100"}  # one event a request, and batches
    for section in runs.values():
        assert section["errors"] == 0
        assert section["backlog_events"] > 0 and section["delivery_per_second"] > 0
        assert section["latency_events"] > 0 and 0 < section["latency_p50_ms"] <= section["latency_p99_ms"]
        assert section["create_rps_not_dispatching"] > 0 and section["create_rps_dispatching"] > 0
        assert section["create_ratio_dispatching_to_not"] > 0
    assert runs["maxEventsPerBatch=1"]["events_per_request"] == 1
    assert runs["maxEventsPerBatch=100"]["events_per_request"] > 1
    assert "## Webhook delivery" in (tmp_path / "report.md").read_text()
