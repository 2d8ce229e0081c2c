"""Every metric the worker exports, in one object bound to an injectable registry.

Names follow Prometheus conventions: ``cdc_`` prefix, base units in the name (``_seconds``,
``_bytes``), ``_total`` on counters. Labels are bounded: event names, outcomes, and ``shard_id``
only on per-shard gauges, which are removed when the worker stops holding the shard.

Thread-safe (prometheus-client metrics are).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from consumer.observability.pool import PoolStateCollector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class _ShardProgress:
    iterator_age_seconds: float = 0.0
    last_read_monotonic: float | None = None
    last_checkpoint_monotonic: float | None = None


class ShardProgressCollector(Collector):
    """Per-shard lag gauges computed at scrape time, so a stalled shard's staleness keeps growing.

    * ``cdc_shard_iterator_age_seconds``: at the last successful read, now minus the
      ApproximateCreationDateTime of the newest record read (0 when the read was empty).
    * ``cdc_shard_time_since_last_read_seconds``: seconds since the last successful GetRecords.
    * ``cdc_shard_checkpoint_age_seconds``: seconds since this worker last checkpointed the shard
      (or took it over); an idle shard's checkpoint ages too, so read it with the iterator age.

    And the worker's worst shard, one series per worker whatever it holds (what to alert and scale
    on without PromQL over per-shard series, which ``per_shard=False`` leaves out on large tables):

    * ``cdc_worker_iterator_age_max_seconds``: the largest iterator age of its shards;
    * ``cdc_worker_time_since_last_read_max_seconds``: the longest time since a shard was read.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, per_shard: bool = True) -> None:
        self._clock = clock
        self._per_shard = per_shard
        self._lock = threading.Lock()
        self._shards: dict[str, _ShardProgress] = {}

    def record_read(self, shard_id: str, iterator_age_seconds: float) -> None:
        with self._lock:
            progress = self._shards.setdefault(shard_id, _ShardProgress())
            progress.iterator_age_seconds = max(0.0, iterator_age_seconds)
            progress.last_read_monotonic = self._clock()

    def record_checkpoint(self, shard_id: str) -> None:
        with self._lock:
            self._shards.setdefault(shard_id, _ShardProgress()).last_checkpoint_monotonic = self._clock()

    def forget(self, shard_id: str) -> None:
        with self._lock:
            self._shards.pop(shard_id, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self._clock()
        age = GaugeMetricFamily(
            "cdc_shard_iterator_age_seconds",
            "Age of the newest record of the last read of the shard; 0 when that read was empty.",
            labels=["shard_id"],
        )
        since = GaugeMetricFamily(
            "cdc_shard_time_since_last_read_seconds",
            "Seconds since the last successful GetRecords on the shard.",
            labels=["shard_id"],
        )
        checkpoint = GaugeMetricFamily(
            "cdc_shard_checkpoint_age_seconds",
            "Seconds since this worker last checkpointed the shard (or took it over).",
            labels=["shard_id"],
        )
        oldest, longest = 0.0, 0.0
        with self._lock:
            for shard_id, progress in sorted(self._shards.items()):
                if progress.last_read_monotonic is not None:
                    oldest = max(oldest, progress.iterator_age_seconds)
                    longest = max(longest, now - progress.last_read_monotonic)
                    if self._per_shard:
                        age.add_metric([shard_id], progress.iterator_age_seconds)
                        since.add_metric([shard_id], now - progress.last_read_monotonic)
                if self._per_shard and progress.last_checkpoint_monotonic is not None:
                    checkpoint.add_metric([shard_id], now - progress.last_checkpoint_monotonic)
        if self._per_shard:
            yield age
            yield since
            yield checkpoint
        yield GaugeMetricFamily(
            "cdc_worker_iterator_age_max_seconds",
            "The largest iterator age of the shards this worker reads (0 when it reads none): its lag.",
            value=oldest,
        )
        yield GaugeMetricFamily(
            "cdc_worker_time_since_last_read_max_seconds",
            "The longest time since one of this worker's shards was read (0 when it reads none).",
            value=longest,
        )


class Metrics:
    """The worker's metrics. Build one per registry; tests pass a fresh ``CollectorRegistry()``."""

    def __init__(
        self, registry: CollectorRegistry, clock: Callable[[], float] = time.monotonic, per_shard: bool = True
    ) -> None:
        """``per_shard=False`` (``CDC_SHARD_METRICS=off``): no ``cdc_shard_*`` series, the worker's maxima only."""
        self.registry = registry
        self.shard_progress = ShardProgressCollector(clock, per_shard)
        registry.register(self.shard_progress)
        self.build_info = Info(
            "cdc_build",
            "Version and git commit of the consumer, and its item converter (compiled, or python where the "
            "install had no C compiler).",
            registry=registry,
        )
        self.worker_ready = Gauge(
            "cdc_worker_ready",
            "1 while /readyz answers 200, 0 otherwise (its body says why); evaluated at scrape time.",
            registry=registry,
        )
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, …
        PlatformCollector(registry=registry)  # python_info
        GCCollector(registry=registry)  # python_gc_*
        self.records_read = Counter(
            "cdc_records_read_total", "Stream records returned by GetRecords.", registry=registry
        )
        self.records_processed = Counter(
            "cdc_records_processed_total",
            "Stream records by event name, outcome (applied, stale, filtered, dead_lettered) and route "
            "(CDC_ROUTES; default without routes, none for records that reach no index).",
            ["event", "outcome", "route"],
            registry=registry,
        )
        self.get_records = Counter(
            "cdc_get_records_total",
            "GetRecords calls by outcome (records, empty, throttled, expired_iterator, error).",
            ["outcome"],
            registry=registry,
        )
        self.bulk_requests = Counter(
            "cdc_bulk_requests_total",
            "OpenSearch _bulk requests by outcome (ok, outage, throttled, too_large, rejected).",
            ["outcome"],
            registry=registry,
        )
        self.sink_available = Gauge(
            "cdc_sink_available",
            "1 while OpenSearch takes writes; 0 during an outage (unreachable, 5xx, credentials, write block).",
            registry=registry,
        )
        self.sink_available.set(1)
        self.documents_diverted = Counter(
            "cdc_documents_diverted_total",
            "Documents sent again with attributes diverted to the typed form (_cdc_typed) after a mapping conflict.",
            registry=registry,
        )
        self.bulk_duration = Histogram(
            "cdc_bulk_request_duration_seconds",
            "Latency of OpenSearch _bulk requests.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.bulk_bytes = Counter("cdc_bulk_request_bytes_total", "Bytes sent in _bulk bodies.", registry=registry)
        self.sink_retries = Counter(
            "cdc_sink_retries_total", "Bulk actions sent again after a retriable failure.", registry=registry
        )
        self.batch_duration = Histogram(
            "cdc_batch_duration_seconds",
            "Time to decode, apply and checkpoint one GetRecords batch.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.leases_held = Gauge("cdc_leases_held", "Leases this worker holds.", registry=registry)
        self.lease_events = Counter(
            "cdc_lease_events_total",
            "Lease transitions by event (created, taken, taken_expired, stolen, renew_failed, lost, released, deleted).",
            ["event"],
            registry=registry,
        )
        self.checkpoints = Counter(
            "cdc_checkpoints_total",
            "Checkpoint writes by outcome (ok, lease_lost, error).",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("ok", "lease_lost", "error"):  # at 0 from the start: progress rides on the next renewal
            self.checkpoints.labels(outcome=outcome)
        self.trimmed = Counter(
            "cdc_trimmed_data_events_total",
            "Times a shard position had been trimmed (24 h retention) and reading resumed at TRIM_HORIZON: data was lost.",
            registry=registry,
        )
        self.dead_lettered = Counter(
            "cdc_records_dead_lettered_total",
            "Records written to the dead-letter destination.",
            registry=registry,
        )
        self.dead_letter_writes = Counter(
            "cdc_dead_letter_writes_total",
            "Writes to the dead-letter destination by destination (file, sqs, s3) and outcome (ok, error); "
            "while they fail, the shard waits.",
            ["destination", "outcome"],
            registry=registry,
        )
        self.aws_requests = Counter(
            "cdc_aws_requests_total",
            "AWS API calls by operation and outcome (ok, throttled, conditional_failed, client_error, "
            "server_error, network, credentials, bad_answer).",
            ["operation", "outcome"],
            registry=registry,
        )
        self.aws_request_duration = Histogram(
            "cdc_aws_request_duration_seconds",
            "Duration of AWS API calls by operation (get_records, update_item for checkpoints and renewals, "
            "scan, …), botocore's own retries included.",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.aws_retries = Counter(
            "cdc_aws_retries_total",
            "Retries botocore made inside AWS calls (throttling, 5xx, connection errors), by operation.",
            ["operation"],
            registry=registry,
        )
        self.records_read_bytes = Counter(
            "cdc_records_read_bytes_total", "SizeBytes of the stream records read.", registry=registry
        )
        self.taker_cycles = Counter(
            "cdc_lease_taker_cycles_total", "Completed coordination cycles (read, take or steal).", registry=registry
        )
        self.loop_heartbeat = Gauge(
            "cdc_worker_loop_last_tick_timestamp_seconds",
            "Unix time of the coordinator loop's last completed tick.",
            registry=registry,
        )
        self.tick_duration = Histogram(
            "cdc_coordinator_tick_duration_seconds",
            "One coordination tick: read a page of the lease table, take leases, start tasks (the first also syncs).",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.renew_round_duration = Histogram(
            "cdc_lease_renew_round_duration_seconds",
            "One round renewing every held lease (concurrently).",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.buffered_bytes = Gauge(
            "cdc_buffered_bytes",
            "Bytes of GetRecords pages read and not yet settled (CDC_MAX_BUFFERED_BYTES).",
            registry=registry,
        )
        self.buffered_bytes_peak = Gauge(
            "cdc_buffered_bytes_peak",
            "The most bytes of pages held at once since the worker started.",
            registry=registry,
        )
        self.shard_tasks = Gauge(
            "cdc_shard_tasks", "Shards this worker is reading (tasks on its scheduler).", registry=registry
        )
        self.shards_vanished = Counter(
            "cdc_shards_vanished_total",
            "Shards whose data was gone (ResourceNotFound, confirmed): ended as vanished, records may be missing.",
            registry=registry,
        )
        self.stream_replaced = Counter(
            "cdc_stream_replaced_total",
            "Times the table's stream was found replaced (disabled and re-enabled, or the table recreated).",
            registry=registry,
        )
        self.lineage_anomalies = Counter(
            "cdc_lineage_anomalies_total",
            "Corrupt DescribeStream answers by kind (cycle, bad_id, duplicate, held_by_old_stream).",
            ["kind"],
            registry=registry,
        )
        self.backfill_items = Counter(
            "cdc_backfill_items_total",
            "Items the backfill read, by outcome (applied, stale, filtered, dead_lettered).",
            ["outcome"],
            registry=registry,
        )
        self.backfill_segments = Gauge(
            "cdc_backfill_segments",
            "Backfill segments by state (waiting, running, done).",
            ["state"],
            registry=registry,
        )
        self.index_generation = Gauge(
            "cdc_index_generation",
            "Index generations: the one this worker writes (role=written) and the live one (role=live).",
            ["role"],
            registry=registry,
        )
        self.generation_building = Gauge(
            "cdc_index_generation_building",
            "1 while the generation this worker writes is being built (not yet live), else 0.",
            registry=registry,
        )
        self.reindex_progress = Gauge(
            "cdc_reindex_progress",
            "While a generation of this deployment is being built: its reindex's current step and that "
            "step's count (waiting for workers: 0; fill: items filled; catch-up: shards still behind; proof: "
            "items audited), as the reindex last reported it.",
            ["step"],
            registry=registry,
        )
        self.reindex_moved = Gauge(
            "cdc_reindex_progress_timestamp_seconds",
            "While a generation of this deployment is being built: when its reindex last made progress "
            "(Unix time; its creation before any report; 0 when none is being built). Silent long: the "
            "reindex stalled.",
            registry=registry,
        )
        self.backfill_read_units = Counter(
            "cdc_backfill_read_units_total", "DynamoDB read units the backfill's Scans consumed.", registry=registry
        )
        self.shard_task_failures = Counter(
            "cdc_shard_task_failures_total",
            "Shard tasks ended by a failure nobody anticipated; each is started again from its checkpoint "
            "(shard_task_failed logs).",
            registry=registry,
        )
        self.shards_failing = Gauge(
            "cdc_shards_failing",
            "Shards of this worker whose tasks keep failing and are retried from their checkpoints.",
            registry=registry,
        )
        self.routine_failures = Counter(
            "cdc_routine_failures_total",
            "Rounds of a background routine (renewal, tick, shard_sync, reaper, backfill, backfill_heartbeat) "
            "that failed unexpectedly; the routine goes on (routine_round_failed logs).",
            ["routine"],
            registry=registry,
        )
        self.host_clock_ahead = Gauge(
            "cdc_host_clock_ahead_seconds",
            "How far this host's clock is ahead of AWS's (negative: behind), from the Date headers of AWS answers.",
            registry=registry,
        )
        self.pool = PoolStateCollector()
        registry.register(self.pool)

    def observe_aws(self, operation: str, outcome: str, seconds: float) -> None:
        """Observer for consumer.aws.accounting.observed_call (and the wire calls)."""
        self.aws_requests.labels(operation=operation, outcome=outcome).inc()
        self.aws_request_duration.labels(operation=operation).observe(seconds)

    def count_aws_retries(self, operation: str, retries: int) -> None:
        """Recorder for consumer.aws.accounting.count_retries."""
        self.aws_retries.labels(operation=operation).inc(retries)
