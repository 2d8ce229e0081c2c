"""Shard sync, a routine of the worker: follow a replaced stream and sync the stream's shards to
leases (``consumer.shards.sync``) from a whole read of the lease table, on a thread of its own every
``CDC_SHARD_SYNC_INTERVAL_SECONDS``, so that a slow DescribeStream never delays taking or renewing.

The first pass runs in the tick (before it there is nothing to take). A pass that fails is said,
reported as the worker's readiness problem, and tried again at the next tick. Thread-safe: the tick
starts passes; one runs at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from consumer.errors import ConsumerError
from consumer.leases.model import Lease, shard_leases
from consumer.leases.table import LeaseTable
from consumer.leases.view import LeaseView
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.observability.routines import routine_failed, step_failed
from consumer.shards.sync import ShardSync


class ShardSyncRoutine:
    """Runs sync passes when due, one at a time; says why the last one failed."""

    def __init__(
        self,
        *,
        leases: LeaseTable,
        sync: ShardSync,
        view: LeaseView,
        health: Health,
        metrics: Metrics,
        interval: float,
        context: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._leases = leases
        self._sync = sync
        self._view = view
        self._health = health
        self._metrics = metrics
        self._interval = interval
        self._context = context
        self._clock = clock
        self._next = 0.0
        self._running: threading.Thread | None = None
        self.synced_once = False
        self.problem: str | None = None  # why the last pass failed, if it did

    def request(self) -> None:
        """Have the next tick start a pass (children to lease, a failed pass to try again)."""
        self._next = 0.0

    def maybe_start(self) -> None:
        """Start a pass on its own thread when due and none is running; never blocks."""
        if self._clock() < self._next or (self._running is not None and self._running.is_alive()):
            return
        self._running = threading.Thread(target=self.run_pass, name="shard-sync", daemon=True)
        self._running.start()

    def run_pass(self, leases: list[Lease] | None = None) -> None:
        """One pass, from a whole read of the lease table (lineage decisions need all of it at once,
        ``consumer.shards.lineage``); ``leases``: such a read the caller just made."""
        self._context()
        try:
            if leases is None:
                leases = shard_leases(self._leases.list_leases(consistent=False))
            self._sync.follow_stream()
            self._view.merge(self._sync.sync(leases).created)
        except ConsumerError as exc:  # the stream API failing must not stop taking and reading
            self.problem = step_failed("shard_sync", exc)
            self._next = 0.0
            return
        except Exception as exc:  # noqa: BLE001 - one failed pass, said so; the next tick tries again
            self.problem = routine_failed(self._metrics, "shard_sync", exc)
            self._next = 0.0
            return
        self.synced_once = True
        self.problem = None
        self._next = self._clock() + self._interval
        self._health.mark_synced()
