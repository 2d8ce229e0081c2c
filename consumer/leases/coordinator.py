"""Lease coordination for one worker: take, hold, lose and release leases.

Expiry is judged on this worker's monotonic clock, never on timestamps written by others: a
lease whose ``leaseCounter`` has not moved for ``failover_seconds`` since this worker first saw
that value is expired. Renewals (``consumer.leases.renewal``) and checkpoints bump the counter.

``LeaseCoordinator`` is driven by one thread (the worker's tick), and runs its lease-table writes
on a shared executor so that taking many leases does not serialise behind each call's latency.
``HeldLease`` is shared by that thread, the renewal routine and the lease's shard task; it
serialises their writes with a lock, and a renewal never waits for it (a checkpoint in flight is
itself a proof of life).

Checkpoints are coalesced: a shard task *stages* its progress after each applied page, and the
lease's next write carries the latest staged progress — the renewal round's (so a busy lease costs
one write a round, as an idle one does, instead of one a page), the task's last (``flush`` when it
stops) or the release. A crash loses at most a round of staged progress: its records are applied
again from the checkpoint before, with the same versions, which OpenSearch refuses as stale. What
must be seen at once (SHARD_END, a backfill segment's position) is written at once (``checkpoint``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass

import structlog

from consumer.errors import DuplicateWorkerIdError, LeaseLostError, LeaseTableError
from consumer.leases.model import Lease
from consumer.leases.table import LeaseTable
from consumer.leases.taker import LeaseState, leases_to_steal, leases_to_take
from consumer.observability.metrics import Metrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Progress:
    """A shard's settled position: every record up to ``checkpoint`` is applied, ``version`` is the
    clock there, ``record_second`` the last record's ApproximateCreationDateTime."""

    checkpoint: str
    version: int
    record_second: int | None = None


class HeldLease:
    """A lease this worker holds. Thread-safe: writes to it are serialised."""

    def __init__(self, lease: Lease, table: LeaseTable, clock: Callable[[], float]) -> None:
        self._lease = lease
        self._table = table
        self._clock = clock
        self._lock = threading.Lock()
        self.last_written = clock()  # of the last successful write: renewals and checkpoints both bump the counter
        self.lost = threading.Event()
        self._staged: Progress | None = None  # progress no write has carried yet (module docstring)
        self._staged_lock = threading.Lock()  # held for no call: staging never waits for a write
        # Told, on the writing thread, each time staged progress reaches the table (metrics only).
        self.on_progress_written: Callable[[Progress], None] = lambda progress: None

    @property
    def lease(self) -> Lease:
        with self._lock:
            return self._lease

    @property
    def shard_id(self) -> str:
        return self._lease.lease_key

    @property
    def staged(self) -> Progress | None:
        """Progress staged and not yet written."""
        return self._staged

    def try_renew(self) -> bool:
        """Bump the counter, carrying the staged progress if any, unless another write to this lease
        is in flight (which bumps it too).

        Returns whether a write was made. Raises LeaseLostError (and sets ``lost``) if the lease is
        gone, LeaseTableError on a transient failure (the staged progress then waits for the next).
        """
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._write_staged_locked(or_renew=True)
        finally:
            self._lock.release()
        return True

    def stage(self, progress: Progress) -> None:
        """Record ``progress`` for the lease's next write; never waits. Raises LeaseLostError if the
        lease is gone (the task must stop: another worker may own the shard)."""
        if self.lost.is_set():
            raise LeaseLostError(f"lease {self._lease.lease_key} is no longer held")
        with self._staged_lock:
            self._staged = progress

    def flush(self) -> None:
        """Write the staged progress now, if any. Raises LeaseLostError (and sets ``lost``) if not
        ours, LeaseTableError on a transient failure (the checkpoint before it stands)."""
        with self._lock:
            self._write_staged_locked(or_renew=False)

    def checkpoint(
        self, checkpoint: str, version: int, record_second: int | None = None, vanished_after: str | None = None
    ) -> None:
        """Record progress now, superseding what was staged (it is older). Raises LeaseLostError (and
        sets ``lost``) if not ours."""
        with self._lock:
            self._write_locked(
                lambda lease: self._table.checkpoint(lease, checkpoint, version, record_second, vanished_after)
            )
            with self._staged_lock:
                self._staged = None

    def anchor_latest(self, second: int) -> None:
        """Record the LATEST anchor (``LeaseTable.anchor_latest``). Raises LeaseLostError (and sets
        ``lost``) if not ours."""
        with self._lock:
            self._write_locked(lambda lease: self._table.anchor_latest(lease, second))

    def release(self) -> None:
        """Give the lease up, with its staged progress written first; a lease already lost is left alone."""
        if self.lost.is_set():
            return
        with self._lock:
            try:
                try:
                    self._write_staged_locked(or_renew=False)
                except LeaseLostError:
                    raise
                except Exception as exc:  # noqa: BLE001 - whatever failed, no position moved: the checkpoint
                    # before stands and the next owner replays from it (settled records, refused as stale);
                    # the lease is released all the same, so that it is taken at once, not after the failover
                    log.warning("checkpoint_failed", shard_id=self.shard_id, error=f"{type(exc).__name__}: {exc}")
                self._table.release(self._lease)
            finally:
                self.lost.set()

    def _write_staged_locked(self, or_renew: bool) -> None:
        """Write the staged progress (or, with ``or_renew``, a bare renewal when none is staged)."""
        staged = self._staged
        if staged is None:
            if or_renew:
                self._write_locked(self._table.renew)
            return
        self._write_locked(
            lambda lease: self._table.checkpoint(lease, staged.checkpoint, staged.version, staged.record_second)
        )
        with self._staged_lock:
            if self._staged is staged:  # not replaced meanwhile by newer progress, which the next write carries
                self._staged = None
        self.on_progress_written(staged)

    def _write_locked(self, write: Callable[[Lease], Lease | None]) -> None:
        if self.lost.is_set():
            raise LeaseLostError(f"lease {self._lease.lease_key} is no longer held")
        try:
            self._lease = write(self._lease) or self._lease
        except LeaseLostError:
            self.lost.set()
            raise
        self.last_written = self._clock()


class ExpiryTracker:
    """Remembers, per lease, the counter this worker last read, since when it has read that value and
    when it last read it. A lease is expired once its counter was read unchanged across ``failover``
    seconds: evidence, never a guess about a lease not read lately. Not thread-safe."""

    def __init__(self, failover_seconds: float, clock: Callable[[], float]) -> None:
        self._failover = failover_seconds
        self._clock = clock
        self._seen: dict[str, tuple[int, float, float]] = {}  # key → (counter, read since, last read)

    def observe(self, read: Iterable[Lease], known: Iterable[str] | None = None) -> dict[str, bool]:
        """Record the leases just read; ``known``: every lease key still to track (default: those
        read; the rest are forgotten). Returns lease key → expired, for every tracked lease."""
        now = self._clock()
        read = list(read)
        keep = {lease.lease_key for lease in read} if known is None else set(known)
        seen = {key: value for key, value in self._seen.items() if key in keep}
        for lease in read:
            counter, since, _ = seen.get(lease.lease_key, (lease.counter, now, now))
            seen[lease.lease_key] = (lease.counter, since if counter == lease.counter else now, now)
        self._seen = seen
        return {key: last - since >= self._failover for key, (_, since, last) in seen.items()}


class LeaseCoordinator:
    """Takes and holds this worker's leases. Driven by a single thread."""

    def __init__(
        self,
        table: LeaseTable,
        worker_id: str,
        failover_seconds: float,
        metrics: Metrics,
        executor: Executor,
        clock: Callable[[], float] = time.monotonic,
        max_leases: int | None = None,
    ) -> None:
        self._table = table
        self._worker_id = worker_id
        self._metrics = metrics
        self._executor = executor
        self._clock = clock
        self._max_leases = max_leases
        self._expiry = ExpiryTracker(failover_seconds, clock)
        self._rng = random.Random()
        self._lock = threading.Lock()
        self.held: dict[str, HeldLease] = {}
        self.last_expired: dict[str, bool] = {}  # lease key → expired, as of the last scan
        self.take_errors: list[str] = []  # why takes of the last cycle failed (the lease table refusing)
        self.wants_leases = True  # the last cycle wanted to take or steal: the pool is not settled for it
        self._first_cycle = True  # leases naming this worker are reclaimed in the first cycle only
        self._own_unheld: dict[str, int] = {}  # leases naming this worker that it does not hold → counter read

    def holding(self) -> list[HeldLease]:
        """A snapshot of the held leases (safe from any thread)."""
        with self._lock:
            return list(self.held.values())

    def take_leases(
        self, leases: list[Lease], read: list[Lease] | None = None, avoid: frozenset[str] = frozenset()
    ) -> list[HeldLease]:
        """Take free leases toward this worker's target, or steal when none is free, given this
        worker's view of the table (``consumer.leases.view``). ``read``: the leases of the view read
        from the table just now (default: all of them); only reads move expiry on. ``avoid``: free
        leases not to take (shards this worker gave up lately)."""
        self.take_errors = []
        self._check_own_id(leases if read is None else read)
        observed = self._expiry.observe(leases if read is None else read, [lease.lease_key for lease in leases])
        expired = {lease.lease_key: observed.get(lease.lease_key, False) for lease in leases}
        self.last_expired = expired
        for held in [held for held in self.holding() if held.lost.is_set()]:
            self.forget(held, reason="checkpoint")
        by_key = {lease.lease_key: lease for lease in leases}
        # A child whose parent is still being read is left unowned: the worker that ends the parent
        # takes it at once (consumer.runtime.worker.on_shard_end), so a rollover waits for no tick.
        waiting = {
            lease.lease_key
            for lease in leases
            if lease.owner is None and any(key in by_key and not by_key[key].is_ended for key in lease.parent_shard_ids)
        }
        states = [
            LeaseState(
                lease.lease_key, lease.owner, expired[lease.lease_key], lease.is_ended or lease.lease_key in waiting
            )
            for lease in leases
        ]
        held_keys = frozenset(self.held)
        reclaim, self._first_cycle = self._first_cycle, False
        keys = leases_to_take(states, self._worker_id, held_keys, self._max_leases, avoid, reclaim)
        stolen = (
            [] if keys else leases_to_steal(states, self._worker_id, held_keys, self._rng, self._max_leases, reclaim)
        )
        wanted = [(by_key[key], expired[key], False) for key in keys] + [(by_key[key], False, True) for key in stolen]
        self.wants_leases = bool(wanted)
        return self._take_all(wanted)

    def _check_own_id(self, read: Iterable[Lease]) -> None:
        """Raise DuplicateWorkerIdError when a lease that names this worker, and that it does not hold,
        was written between two reads: another live worker has this worker's id."""
        held = set(self.held)
        renewed = []
        for lease in read:
            if lease.owner != self._worker_id or lease.lease_key in held:
                self._own_unheld.pop(lease.lease_key, None)
                continue
            before = self._own_unheld.get(lease.lease_key)
            if before is not None and before != lease.counter:
                renewed.append(lease.lease_key)
            self._own_unheld[lease.lease_key] = lease.counter
        if renewed:
            raise DuplicateWorkerIdError(
                f"another live worker uses the worker id {self._worker_id!r}: it renews {len(renewed)} lease(s) "
                f"this worker does not hold (e.g. {renewed[0]}); give each worker its own CDC_WORKER_ID, or leave "
                "it unset (the default is unique per process)"
            )

    def take_specific(self, leases: Iterable[Lease]) -> list[HeldLease]:
        """Take these unowned leases now (a finished parent's children), within ``max_leases``."""
        room = None if self._max_leases is None else max(0, self._max_leases - len(self.held))
        wanted = [(lease, False, False) for lease in leases if lease.owner is None and lease.lease_key not in self.held]
        return self._take_all(wanted[:room] if room is not None else wanted)

    def _take_all(self, wanted: list[tuple[Lease, bool, bool]]) -> list[HeldLease]:
        futures = [self._executor.submit(self._take, lease, expired, steal) for lease, expired, steal in wanted]
        taken = [held for future in futures if (held := future.result()) is not None]
        self._metrics.leases_held.set(len(self.held))
        return taken

    def _take(self, lease: Lease, expired: bool, steal: bool) -> HeldLease | None:
        table = self._table.for_stream(lease.stream_arn)  # a replaced stream's leases are still read to their end
        try:
            taken = table.take(lease, self._worker_id)
        except LeaseLostError:
            return None  # another worker was faster: fine
        except LeaseTableError as exc:
            log.warning("lease_take_failed", shard_id=lease.lease_key, error=str(exc))
            self.take_errors.append(str(exc))
            return None
        held = HeldLease(taken, table, self._clock)
        with self._lock:
            self.held[lease.lease_key] = held
        how = "stolen" if steal else ("taken_expired" if expired and lease.owner else "taken")
        self._metrics.lease_events.labels(event=how).inc()
        log.info("lease_" + how, shard_id=lease.lease_key, previous_owner=lease.owner, checkpoint=taken.checkpoint)
        return held

    def release(self, held: HeldLease) -> None:
        """Give one lease up (its shard ended, or shutdown); failures only cost the failover delay."""
        with self._lock:
            self.held.pop(held.shard_id, None)
        try:
            held.release()
            self._metrics.lease_events.labels(event="released").inc()
            log.info("lease_released", shard_id=held.shard_id, checkpoint=held.lease.checkpoint)
        except (LeaseLostError, LeaseTableError) as exc:
            log.warning("lease_release_failed", shard_id=held.shard_id, error=str(exc))
        self._metrics.leases_held.set(len(self.held))

    def release_all(self) -> None:
        """Release every held lease (graceful shutdown), concurrently."""
        for future in [self._executor.submit(self.release, held) for held in self.holding()]:
            future.result()
        self._metrics.leases_held.set(0)

    def forget(self, held: HeldLease, reason: str) -> None:
        """Stop holding a lease that was lost (to another worker, or to failed renewals)."""
        with self._lock:
            if self.held.pop(held.shard_id, None) is None:
                return
        self._metrics.lease_events.labels(event="lost").inc()
        self._metrics.leases_held.set(len(self.held))
        log.warning("lease_lost", shard_id=held.shard_id, detected_by=reason)
