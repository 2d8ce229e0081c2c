"""The renewal routine: keeps every held lease alive, on its own thread, without serialising.

Every ``failover / 3`` seconds it renews, concurrently on the worker's lease-table executor, each
held lease that has not been written since the previous round (a checkpoint bumps the counter as a
renewal does, so a busy shard costs no renewal writes). A lease whose renewal is refused by
condition is lost (another worker took it): ``on_lost`` is told at once, so its shard task stops
before the new owner writes. A lease that could not be written for ``failover`` seconds (DynamoDB
unreachable) is given up locally for the same reason.

Renewal never waits for the worker's tick, for a checkpoint in flight, or for another lease's
renewal, so one slow call cannot cost the pool its leases. Thread-safe; ``start()`` / ``stop()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future

import structlog

from consumer.errors import LeaseLostError, LeaseTableError
from consumer.leases.coordinator import HeldLease, LeaseCoordinator
from consumer.observability.metrics import Metrics

log = structlog.get_logger(__name__)


class RenewalRoutine:
    """Renews the coordinator's held leases every ``failover / 3`` seconds."""

    def __init__(
        self,
        coordinator: LeaseCoordinator,
        executor: Executor,
        failover_seconds: float,
        metrics: Metrics,
        on_lost: Callable[[HeldLease], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._coordinator = coordinator
        self._executor = executor
        self._failover = failover_seconds
        self._interval = failover_seconds / 3
        self._metrics = metrics
        self._on_lost = on_lost
        self._clock = clock
        self._stop = threading.Event()
        self._context: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._renew_routine, name="lease-renewal", daemon=True)
        self.last_round_seconds = 0.0

    def start(self, context: Callable[[], None] | None = None) -> None:
        """Start renewing; ``context`` runs first on the routine's thread (e.g. to bind log context)."""
        self._context = context
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _renew_routine(self) -> None:
        if self._context is not None:
            self._context()
        while not self._stop.wait(self._interval):
            self.renew_round()

    def renew_round(self) -> None:
        """Renew every held lease not written during the last interval; one attempt each."""
        started = self._clock()
        due = [held for held in self._coordinator.holding() if started - held.last_written >= self._interval * 0.9]
        futures: list[tuple[HeldLease, Future[bool]]] = [(held, self._executor.submit(held.try_renew)) for held in due]
        for held, future in futures:
            try:
                future.result()
            except LeaseLostError:
                self._lost(held, "renew")
            except LeaseTableError as exc:
                self._metrics.lease_events.labels(event="renew_failed").inc()
                log.warning("lease_renew_failed", shard_id=held.shard_id, error=str(exc))
                if self._clock() - held.last_written >= self._failover:
                    held.lost.set()  # others may take it now: stop before they do
                    self._lost(held, "renew_timeout")
        self.last_round_seconds = self._clock() - started
        self._metrics.renew_round_duration.observe(self.last_round_seconds)

    def _lost(self, held: HeldLease, reason: str) -> None:
        self._coordinator.forget(held, reason)
        self._on_lost(held)
