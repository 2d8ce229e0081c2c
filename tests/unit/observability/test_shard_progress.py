"""The per-shard lag gauges and the worker's maxima, read from a registry as Prometheus scrapes them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumer.observability.metrics import Metrics


def scraped(metrics: Metrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        sample.name + (f"{{{sample.labels['shard_id']}}}" if "shard_id" in sample.labels else ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(("cdc_shard_", "cdc_worker_iterator", "cdc_worker_time_since"))
    }


def test_the_worker_reports_its_worst_shard_and_per_shard_series_can_be_left_out():
    now = [100.0]
    for per_shard in (True, False):
        # GIVEN a worker reading three shards: one behind by 90 s, one read 40 s ago, one current
        metrics = Metrics(CollectorRegistry(), clock=lambda: now[0], per_shard=per_shard)
        now[0] = 100.0
        metrics.shard_progress.record_read("shardId-a", 90.0)
        metrics.shard_progress.record_read("shardId-b", 5.0)
        now[0] = 120.0
        metrics.shard_progress.record_read("shardId-c", 0.0)
        now[0] = 140.0

        # WHEN scraped THEN the maxima say the worst of them, whatever the per-shard setting
        samples = scraped(metrics)
        assert samples["cdc_worker_iterator_age_max_seconds"] == 90.0
        assert samples["cdc_worker_time_since_last_read_max_seconds"] == 40.0
        # AND per-shard series are there only when asked for
        per_shard_series = {name for name in samples if "{shardId-" in name}
        assert bool(per_shard_series) is per_shard
        if per_shard:
            assert samples["cdc_shard_iterator_age_seconds{shardId-a}"] == 90.0

    # AND a worker that reads nothing reports 0, not an absent series
    idle = scraped(Metrics(CollectorRegistry()))
    assert idle["cdc_worker_iterator_age_max_seconds"] == 0.0
