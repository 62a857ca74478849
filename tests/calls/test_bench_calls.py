"""bench/calls.py (which `make bench` runs), small: its report has every field, the room capacity's included; no
time is asserted. It makes a network namespace, a Janus and an openrooms of its own."""

from __future__ import annotations

from bench import calls


def test_the_room_call_benchmark_reports_join_latency_cpu_and_a_rooms_capacity() -> None:
    assert calls.missing() is None
    report = calls.measure(joins=2, steady_seconds=1, capacity_max=2)
    assert report["joins"] == 2
    assert 0 < report["join_to_first_frame_p50_s"] <= report["join_to_first_frame_p99_s"]
    assert report["steady_participants"] == 3 and report["janus_cpu_cores"] > 0
    assert report["openrooms_cpu_cores"] >= 0
    capacity = report["capacity"]
    steps = capacity["steps"]
    assert [step["participants"] for step in steps] == list(range(1, len(steps) + 1))
    assert steps[0]["first_frame_s"] is None  # the first has no one to see
    assert all(step["first_frame_s"] > 0 for step in steps[1:])
    assert 1 <= capacity["participants"] <= 2 and capacity["stopped_because"]
