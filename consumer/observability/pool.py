"""Pool-level gauges that survive losing every lease: the lease table as this worker last saw it
(counted by ``consumer.leases.pool``).

Per-shard series disappear with the leases a worker holds; these do not. Each worker exports the
table as seen at its last scan, so every worker reports the same pool: aggregate with ``max`` (or
pick one worker), never ``sum``. Computed at scrape time from the last observation. Thread-safe.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class PoolStateCollector(Collector):
    """``cdc_pool_leases{state}`` and ``cdc_pool_workers`` from the last scan this worker made."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: Counter[str] = Counter()
        self._workers = 0
        self._observed = False

    def observe(self, states: Mapping[str, int], workers: int) -> None:
        """The counts of one scan: leases by state (``consumer.leases.pool``) and live workers."""
        with self._lock:
            self._states, self._workers, self._observed = Counter(states), workers, True

    def collect(self) -> Iterator[GaugeMetricFamily]:
        leases = GaugeMetricFamily(
            "cdc_pool_leases",
            "Leases of the pool by state, as this worker last saw the table (aggregate with max, not sum).",
            labels=["state"],
        )
        workers = GaugeMetricFamily(
            "cdc_pool_workers", "Live workers (owners of unexpired leases, and this one) at this worker's last scan."
        )
        with self._lock:
            if self._observed:
                for state, count in self._states.items():
                    leases.add_metric([state], count)
                workers.add_metric([], self._workers)
        yield leases
        yield workers
