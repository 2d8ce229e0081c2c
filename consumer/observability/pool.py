"""Pool-level gauges that survive losing every lease: the lease table as this worker last saw it.

Per-shard series disappear with the leases a worker holds; these do not. Each worker exports the
table as seen at its last scan, so every worker reports the same pool: aggregate with ``max`` (or
pick one worker), never ``sum``. Computed at scrape time from the last observation. Thread-safe.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from consumer.leases.model import Lease

LEASE_STATES = ("owned", "expired", "unowned", "waiting", "ended", "vanished")


def lease_states(leases: Sequence[Lease], expired: Mapping[str, bool]) -> Counter[str]:
    """How many leases are in each state: ``waiting`` (unfinished, its parent lease not ended),
    ``vanished`` and ``ended`` (finished), ``expired`` (owned, not renewed for the failover time),
    ``owned`` and ``unowned``."""
    by_key = {lease.lease_key: lease for lease in leases}
    counts: Counter[str] = Counter({state: 0 for state in LEASE_STATES})
    for lease in leases:
        if lease.is_ended:
            counts["vanished" if lease.is_vanished else "ended"] += 1
        elif any(key in by_key and not by_key[key].is_ended for key in lease.parent_shard_ids):
            counts["waiting"] += 1
        elif lease.owner is None:
            counts["unowned"] += 1
        else:
            counts["expired" if expired.get(lease.lease_key) else "owned"] += 1
    return counts


class PoolStateCollector(Collector):
    """``cdc_pool_leases{state}`` and ``cdc_pool_workers`` from the last scan this worker made."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: Counter[str] = Counter()
        self._workers = 0
        self._observed = False

    def observe(self, leases: Sequence[Lease], expired: Mapping[str, bool], worker_id: str) -> None:
        states = lease_states(leases, expired)
        live = {lease.owner for lease in leases if lease.owner and not expired.get(lease.lease_key)} | {worker_id}
        with self._lock:
            self._states, self._workers, self._observed = states, len(live), True

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
                for state in LEASE_STATES:
                    leases.add_metric([state], self._states[state])
                workers.add_metric([], self._workers)
        yield leases
        yield workers
