"""Lease coordination for one worker: take, renew, lose and release leases.

Expiry is judged on this worker's monotonic clock, never on timestamps written by others: a
lease whose ``leaseCounter`` has not moved for ``failover_seconds`` since this worker first saw
that value is expired. Renewals bump the counter every ``failover / 3``.

``LeaseCoordinator`` is driven by one thread (the worker's loop); ``HeldLease`` is shared by that
thread and the lease's shard consumer and serialises their writes with a lock.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import structlog

from consumer.errors import LeaseLostError, LeaseTableError
from consumer.leases.model import Lease
from consumer.leases.table import LeaseTable
from consumer.leases.taker import LeaseState, lease_to_steal, leases_to_take
from consumer.observability.metrics import Metrics

log = structlog.get_logger(__name__)


class HeldLease:
    """A lease this worker holds. Thread-safe: writes to it are serialised."""

    def __init__(self, lease: Lease, table: LeaseTable, clock: Callable[[], float]) -> None:
        self._lease = lease
        self._table = table
        self._clock = clock
        self._lock = threading.Lock()
        self.last_renewed = clock()  # of the last successful write: renewals and checkpoints both bump the counter
        self.lost = threading.Event()

    @property
    def lease(self) -> Lease:
        with self._lock:
            return self._lease

    @property
    def shard_id(self) -> str:
        return self._lease.lease_key

    def renew(self) -> None:
        """Bump the counter. Raises LeaseLostError (and sets ``lost``) if the lease is gone."""
        self._write(self._table.renew)

    def checkpoint(self, checkpoint: str, version: int, record_second: int | None = None) -> None:
        """Conditionally record progress. Raises LeaseLostError (and sets ``lost``) if not ours."""
        self._write(lambda lease: self._table.checkpoint(lease, checkpoint, version, record_second))

    def release(self) -> None:
        """Give the lease up; a lease already lost is left alone."""
        if self.lost.is_set():
            return
        with self._lock:
            try:
                self._table.release(self._lease)
            finally:
                self.lost.set()

    def _write(self, write: Callable[[Lease], Lease | None]) -> None:
        with self._lock:
            if self.lost.is_set():
                raise LeaseLostError(f"lease {self._lease.lease_key} is no longer held")
            try:
                self._lease = write(self._lease) or self._lease
            except LeaseLostError:
                self.lost.set()
                raise
            self.last_renewed = self._clock()


class ExpiryTracker:
    """Remembers, per lease, when this worker first saw its current counter. Not thread-safe."""

    def __init__(self, failover_seconds: float, clock: Callable[[], float]) -> None:
        self._failover = failover_seconds
        self._clock = clock
        self._seen: dict[str, tuple[int, float]] = {}

    def observe(self, leases: list[Lease]) -> dict[str, bool]:
        """Record a scan; returns lease key → expired."""
        now = self._clock()
        seen: dict[str, tuple[int, float]] = {}
        for lease in leases:
            counter, since = self._seen.get(lease.lease_key, (lease.counter, now))
            seen[lease.lease_key] = (lease.counter, since if counter == lease.counter else now)
        self._seen = seen
        return {key: now - since >= self._failover for key, (_, since) in seen.items()}


class LeaseCoordinator:
    """Takes and renews this worker's leases. Driven by a single thread."""

    def __init__(
        self,
        table: LeaseTable,
        worker_id: str,
        failover_seconds: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table
        self._worker_id = worker_id
        self._failover = failover_seconds
        self._metrics = metrics
        self._clock = clock
        self._expiry = ExpiryTracker(failover_seconds, clock)
        self._rng = random.Random()
        self.held: dict[str, HeldLease] = {}

    def renew_held(self) -> list[HeldLease]:
        """Renew every held lease; returns (and forgets) those lost or expired locally."""
        lost = []
        for held in list(self.held.values()):
            try:
                held.renew()
            except LeaseLostError:
                lost.append(held)
            except LeaseTableError as exc:
                self._metrics.lease_events.labels(event="renew_failed").inc()
                log.warning("lease_renew_failed", shard_id=held.shard_id, error=str(exc))
                if self._clock() - held.last_renewed >= self._failover:
                    held.lost.set()  # others may take it now: stop before they do
                    lost.append(held)
        for held in lost:
            self._forget(held, reason="renew")
        return lost

    def take_leases(self, leases: list[Lease]) -> list[HeldLease]:
        """Take free leases toward this worker's target, or steal one when none is free, given a
        fresh scan of the table."""
        expired = self._expiry.observe(leases)
        for key in [key for key, held in self.held.items() if held.lost.is_set()]:
            self._forget(self.held[key], reason="checkpoint")
        states = [
            LeaseState(lease.lease_key, lease.owner, expired[lease.lease_key], lease.is_ended) for lease in leases
        ]
        held_keys = frozenset(self.held)
        keys = leases_to_take(states, self._worker_id, held_keys)
        stolen = None if keys else lease_to_steal(states, self._worker_id, held_keys, self._rng)
        by_key = {lease.lease_key: lease for lease in leases}
        taken = []
        for key in keys + ([stolen] if stolen else []):
            held = self._take(by_key[key], expired=expired[key], steal=key == stolen)
            if held is not None:
                taken.append(held)
        self._metrics.leases_held.set(len(self.held))
        return taken

    def _take(self, lease: Lease, expired: bool, steal: bool) -> HeldLease | None:
        try:
            taken = self._table.take(lease, self._worker_id)
        except LeaseLostError:
            return None  # another worker was faster: fine
        held = HeldLease(taken, self._table, self._clock)
        self.held[lease.lease_key] = held
        how = "stolen" if steal else ("taken_expired" if expired and lease.owner else "taken")
        self._metrics.lease_events.labels(event=how).inc()
        log.info("lease_" + how, shard_id=lease.lease_key, previous_owner=lease.owner, checkpoint=taken.checkpoint)
        return held

    def release_all(self) -> None:
        """Release every held lease (graceful shutdown); failures only cost the failover delay."""
        for held in list(self.held.values()):
            try:
                held.release()
                self._metrics.lease_events.labels(event="released").inc()
                log.info("lease_released", shard_id=held.shard_id, checkpoint=held.lease.checkpoint)
            except (LeaseLostError, LeaseTableError) as exc:
                log.warning("lease_release_failed", shard_id=held.shard_id, error=str(exc))
        self.held.clear()
        self._metrics.leases_held.set(0)

    def _forget(self, held: HeldLease, reason: str) -> None:
        self.held.pop(held.shard_id, None)
        self._metrics.lease_events.labels(event="lost").inc()
        self._metrics.leases_held.set(len(self.held))
        log.warning("lease_lost", shard_id=held.shard_id, detected_by=reason)
