"""The worker's key metrics in CloudWatch's embedded metric format (EMF), for teams without a
Prometheus (``CDC_METRICS_EMF=on``): once a ``CDC_METRICS_EMF_INTERVAL_SECONDS`` a JSON line on stderr
that CloudWatch Logs (the ECS ``awslogs`` driver, the CloudWatch agent) turns into metrics, with no
API call and no extra permission.

``emf_document`` is pure: the samples read from the worker's registry now and at the last line make
one document (gauges as they are, counters as what they grew by since). ``EmfEmitter`` is the thread
that writes them, through structlog's per-file lock so that a line never interleaves with a log line.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson
import structlog
from prometheus_client import CollectorRegistry

log = structlog.get_logger(__name__)

Kind = Literal["gauge", "counter"]
# (EMF name, Prometheus sample, CloudWatch unit, kind): what to alarm on without a Prometheus.
KEY_METRICS: tuple[tuple[str, str, str, Kind], ...] = (
    ("IteratorAgeMax", "cdc_worker_iterator_age_max_seconds", "Seconds", "gauge"),
    ("TimeSinceLastReadMax", "cdc_worker_time_since_last_read_max_seconds", "Seconds", "gauge"),
    ("LeasesHeld", "cdc_leases_held", "Count", "gauge"),
    ("Ready", "cdc_worker_ready", "None", "gauge"),
    ("RecordsProcessed", "cdc_records_processed_total", "Count", "counter"),
    ("RecordsDeadLettered", "cdc_records_dead_lettered_total", "Count", "counter"),
    ("BulkRequests", "cdc_bulk_requests_total", "Count", "counter"),
)


def read_samples(registry: CollectorRegistry) -> dict[str, float]:
    """The sum of every sample of each key metric (a counter's ``_total`` sample), 0 when absent."""
    wanted = {sample for _, sample, _, _ in KEY_METRICS}
    sums = dict.fromkeys(wanted, 0.0)
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in wanted:
                sums[sample.name] += sample.value
    return sums


def emf_document(
    namespace: str,
    dimensions: Mapping[str, str],
    current: Mapping[str, float],
    previous: Mapping[str, float],
    timestamp_ms: int,
) -> dict[str, Any]:
    """One EMF document: gauges as read, counters as their growth since ``previous`` (never negative: a
    counter only restarts with the process). Published per ``dimensions`` as a whole and per their first
    key alone (the table: the pool's worst shard across workers)."""
    values = {
        name: current.get(sample, 0.0)
        if kind == "gauge"
        else max(0.0, current.get(sample, 0.0) - previous.get(sample, 0.0))
        for name, sample, _, kind in KEY_METRICS
    }
    keys = list(dimensions)
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [keys[:1], keys],
                    "Metrics": [{"Name": name, "Unit": unit} for name, _, unit, _ in KEY_METRICS],
                }
            ],
        },
        **dimensions,
        **values,
    }


class EmfEmitter:
    """Writes one EMF line every ``interval`` seconds until ``stop``; a failed line is logged and the
    next one tried (the metrics are a view: nothing waits on them)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        namespace: str,
        dimensions: Mapping[str, str],
        interval: float,
        stop: threading.Event,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._namespace = namespace
        self._dimensions = dict(dimensions)
        self._interval = interval
        self._stop = stop
        self._write = write or structlog.PrintLogger(sys.stderr).msg  # the log lines' lock: whole lines
        self._clock = clock
        self._previous = read_samples(registry)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="emf-metrics", daemon=True)
        thread.start()
        return thread

    def emit(self) -> None:
        current = read_samples(self._registry)
        document = emf_document(self._namespace, self._dimensions, current, self._previous, int(self._clock() * 1000))
        self._write(orjson.dumps(document).decode())
        self._previous = current

    def _run(self) -> None:
        stopped = False
        while not stopped:
            stopped = self._stop.wait(self._interval)  # a stop still writes the last interval's counts
            try:
                self.emit()
            except (OSError, ValueError, TypeError) as exc:  # a closed or full stream: said, next line tried
                log.warning("emf_line_failed", error=str(exc))
