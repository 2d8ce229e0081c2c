"""The renewal routine: keeps every held lease alive, on its own thread, without serialising.

Rounds start ``failover / 3`` seconds apart on average (the KCL's renewal period), at a fixed rate (a
slow round does not push the next one back) with jitter: each gap is drawn between 0.9 and 1.1
intervals, so rounds never stay in phase with the worker's tick, which runs at the same period. In
phase, a renewal could land between a tick's scan and its steal every time, and the steal,
conditional on the counter the scan read, would fail every cycle. Each round renews, concurrently on
the routine's own executor (never queued behind takes or releases), every held lease not written
for 0.4 of an interval, carrying the progress its shard task staged since (``HeldLease``:
checkpoints coalesced into one write a round, whether the shard is busy or idle: a lease costs what
the KCL's renewals cost, and nothing per batch). A lease is therefore never left unwritten for more
than 1.5 intervals plus one round's duration (0.4 + 1.1): half the failover, with the other half
spare for a slow lease table (``due_for_renewal``).

A lease whose renewal is refused by condition is lost (another worker took it): ``on_lost`` is told
at once, so its shard task stops before the new owner writes. A lease that could not be written for
``failover`` seconds (DynamoDB unreachable) is given up locally for the same reason. While renewals
fail, readiness says so (``Health`` condition ``lease_renewals``).

Renewal never waits for the worker's tick, for a checkpoint in flight, or for another lease's
renewal, so one slow call cannot cost the pool its leases.

Supervised: a round that fails in a way nobody anticipated is logged (``routine_round_failed``),
counted (``cdc_routine_failures_total{routine="renewal"}``) and the next round runs as usual (a
lease not renewed meanwhile is given up by the rule above, as for a lease table that is down).
``problem()`` says when the routine's thread is gone or a round has been stuck for
``STUCK_ROUND_SECONDS``: liveness turns red and the worker stops (``consumer.runtime.worker``), since a worker
whose renewals are dead holds leases it cannot keep. Thread-safe; ``start()`` / ``stop()``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future

import structlog

from consumer.errors import LeaseLostError
from consumer.leases.coordinator import HeldLease, LeaseCoordinator
from consumer.leases.model import renew_interval
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.observability.routines import routine_failed

log = structlog.get_logger(__name__)

STUCK_ROUND_SECONDS = 600.0  # a round running this long is hung (its calls have timeouts), not slow
MIN_GAP, MAX_GAP = 0.9, 1.1  # between round starts, in intervals: one on average
DUE_AFTER = 0.4  # a lease written more recently than this many intervals waits for the next round


def due_for_renewal(last_written: float, now: float, interval: float) -> bool:
    """Whether a lease last written at ``last_written`` is renewed by the round starting at ``now``.

    Rounds start at most ``interval`` apart; a lease not due at one round is due at the next, so the
    longest a lease goes unwritten is ``DUE_AFTER + MAX_GAP`` intervals plus that round's duration.
    """
    return now - last_written >= interval * DUE_AFTER


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
        health: Health | None = None,
    ) -> None:
        self._coordinator = coordinator
        self._executor = executor
        self._failover = failover_seconds
        self._interval = renew_interval(failover_seconds)
        self._metrics = metrics
        self._on_lost = on_lost
        self._clock = clock
        self._health = health
        self._rng = random.Random()
        self._stop = threading.Event()
        self._context: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._renew_routine, name="lease-renewal", daemon=True)
        self._round_started: float | None = None  # of the round in progress
        self.last_round_seconds = 0.0

    def start(self, context: Callable[[], None] | None = None) -> None:
        """Start renewing; ``context`` runs first on the routine's thread (e.g. to bind log context)."""
        self._context = context
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def problem(self) -> str | None:
        """Why the routine is not doing its job: its thread died, or a round is stuck; else None."""
        if not self._thread.is_alive():
            started = self._thread.ident is not None
            return "the lease renewal routine died" if started and not self._stop.is_set() else None
        round_started = self._round_started
        if round_started is not None and self._clock() - round_started > STUCK_ROUND_SECONDS:
            return f"a lease renewal round has been stuck for {self._clock() - round_started:.0f} s"
        return None

    def _renew_routine(self) -> None:
        if self._context is not None:
            self._context()
        next_round = self._clock() + self._gap()
        while not self._stop.wait(max(0.0, next_round - self._clock())):
            self._round_started = self._clock()
            try:
                self.renew_round()
            except Exception as exc:  # noqa: BLE001 - one failed round; the next runs as usual (docstring)
                routine_failed(self._metrics, "renewal", exc)
            finally:
                self._round_started = None
            next_round = max(next_round + self._gap(), self._clock())  # fixed rate; never a burst to catch up

    def _gap(self) -> float:
        return self._interval * self._rng.uniform(MIN_GAP, MAX_GAP)

    def renew_round(self) -> None:
        """Renew every held lease that is due; one attempt each."""
        started = self._clock()
        due = [
            held for held in self._coordinator.holding() if due_for_renewal(held.last_written, started, self._interval)
        ]
        futures: list[tuple[HeldLease, Future[bool]]] = [(held, self._executor.submit(held.try_renew)) for held in due]
        failed: list[str] = []
        for held, future in futures:
            try:
                future.result()
            except LeaseLostError:
                self._lost(held, "renew")
            except Exception as exc:  # noqa: BLE001 - LeaseTableError, or what no one named: the lease was not renewed
                self._metrics.lease_events.labels(event="renew_failed").inc()
                log.warning("lease_renew_failed", shard_id=held.shard_id, error=f"{type(exc).__name__}: {exc}")
                failed.append(f"{type(exc).__name__}: {exc}")
                if self._clock() - held.last_written >= self._failover:
                    held.lost.set()  # others may take it now: stop before they do
                    self._lost(held, "renew_timeout")
        self.last_round_seconds = self._clock() - started
        self._metrics.renew_round_duration.observe(self.last_round_seconds)
        if self._health is not None:
            problem = f"lease renewals failing: {len(failed)} of {len(due)}: {failed[0]}" if failed else None
            self._health.set_condition("lease_renewals", problem)

    def _lost(self, held: HeldLease, reason: str) -> None:
        self._coordinator.forget(held, reason)
        self._on_lost(held)
