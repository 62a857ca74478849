"""Request metrics are counted per process and written out in batches; what a scrape reads is what observing
each request one by one would have given."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from openrooms.http import metrics


def requests_total(operation: str, status: int) -> float:
    return REGISTRY.get_sample_value("openrooms_requests_total", {"operation": operation, "status": str(status)}) or 0.0


def latency_samples(histogram: Histogram, operation: str) -> dict[tuple[str, str], float]:
    return {
        (sample.name.rsplit("_", 1)[-1], sample.labels.get("le", "")): sample.value
        for family in histogram.collect()
        for sample in family.samples
        if sample.labels.get("operation") == operation and not sample.name.endswith("_created")
    }


def test_a_flush_writes_the_counts_sums_and_buckets_of_every_observation() -> None:
    seconds = [0.0004, 0.001, 0.0011, 0.003, 0.003, 0.07, 2.0, 11.0, 99.0]
    reference = Histogram("reference_seconds", "", ["operation"], buckets=metrics._BUCKETS,
                          registry=CollectorRegistry())
    for value in seconds:
        reference.labels("batched_op").observe(value)
    before = requests_total("batched_op", 200)
    for value in seconds:
        metrics.observe("batched_op", 200, value)
    metrics.flush()
    assert requests_total("batched_op", 200) - before == len(seconds)
    assert latency_samples(metrics.LATENCY, "batched_op") == latency_samples(reference, "batched_op")


async def test_observations_are_written_out_within_the_flush_interval() -> None:
    metrics.flush()
    counted = requests_total("timed_op", 204)
    metrics.observe("timed_op", 204, 0.002)
    assert requests_total("timed_op", 204) == counted  # not yet
    await asyncio.sleep(metrics.FLUSH_SECONDS + 0.2)
    assert requests_total("timed_op", 204) == counted + 1


def test_counts_are_written_out_from_a_later_event_loop_too() -> None:
    async def count_and_leave() -> None:  # the loop closes before its flush timer fires
        metrics.observe("loop_op", 200, 0.002)

    metrics.flush()
    asyncio.run(count_and_leave())
    counted = requests_total("loop_op", 200)

    async def count_and_wait() -> None:
        metrics.observe("loop_op", 200, 0.002)
        await asyncio.sleep(metrics.FLUSH_SECONDS + 0.2)

    asyncio.run(count_and_wait())
    assert requests_total("loop_op", 200) == counted + 2
