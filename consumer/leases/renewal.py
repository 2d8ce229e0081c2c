"""The renewal routine: keeps every held lease alive, on its own thread, without serialising.

Rounds start at most ``failover / 3`` seconds apart, at a fixed rate (a slow round does not push the
next one back) with jitter: each gap is drawn between 0.8 and 1 interval, so rounds never stay in
phase with the worker's tick, which runs at the same period. In phase, a renewal could land between
a tick's scan and its steal every time, and the steal, conditional on the counter the scan read,
would fail every cycle. Each round renews, concurrently on the routine's own executor (never queued
behind takes or releases), every held lease that has not been written for half an interval (a
checkpoint bumps the counter as a renewal does, so a busy shard costs no renewal writes). A lease is therefore never left
unwritten for more than 1.5 intervals plus one round's duration: half the failover, with the other
half spare for a slow lease table (``due_for_renewal``).

A lease whose renewal is refused by condition is lost (another worker took it): ``on_lost`` is told
at once, so its shard task stops before the new owner writes. A lease that could not be written for
``failover`` seconds (DynamoDB unreachable) is given up locally for the same reason.

Renewal never waits for the worker's tick, for a checkpoint in flight, or for another lease's
renewal, so one slow call cannot cost the pool its leases. Thread-safe; ``start()`` / ``stop()``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future

import structlog

from consumer.errors import LeaseLostError, LeaseTableError
from consumer.leases.coordinator import HeldLease, LeaseCoordinator
from consumer.observability.metrics import Metrics

log = structlog.get_logger(__name__)


def due_for_renewal(last_written: float, now: float, interval: float) -> bool:
    """Whether a lease last written at ``last_written`` is renewed by the round starting at ``now``.

    Rounds start at most ``interval`` apart; a lease not due at one round is due at the next, so the
    longest a lease goes unwritten is ``interval / 2 + interval`` plus that round's duration.
    """
    return now - last_written >= interval / 2


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
        self._rng = random.Random()
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
        next_round = self._clock() + self._gap()
        while not self._stop.wait(max(0.0, next_round - self._clock())):
            self.renew_round()
            next_round = max(next_round + self._gap(), self._clock())  # fixed rate; never a burst to catch up

    def _gap(self) -> float:
        return self._interval * self._rng.uniform(0.8, 1.0)

    def renew_round(self) -> None:
        """Renew every held lease that is due; one attempt each."""
        started = self._clock()
        due = [
            held for held in self._coordinator.holding() if due_for_renewal(held.last_written, started, self._interval)
        ]
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
