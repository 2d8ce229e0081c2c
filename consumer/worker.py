"""The worker: one process of the pool, orchestrating leases, shard consumers and shutdown.

Lifecycle: ``run()`` resolves the stream, ensures the lease table, syncs shards to leases, then
loops every ``failover / 3`` seconds: renew held leases, scan the table, take leases, start a
consumer for every held shard whose parents are done, reap finished consumers, sync shards again
when due, and start a tombstone reaping pass when due (on its own thread, so a slow OpenSearch
never delays lease renewal; ``consumer.sink.reaper``). When the stop event is set (SIGTERM), it
stops the consumers (each finishes or abandons its batch and keeps what it checkpointed), keeps
renewing until they are done or the shutdown deadline passes, then releases its leases so other
workers take them at once.

Runs on the caller's thread; the shard consumers run on their own threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from consumer.errors import ConsumerError, LeaseLostError
from consumer.leases.coordinator import HeldLease, LeaseCoordinator
from consumer.leases.model import Lease
from consumer.leases.table import LeaseTable
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.processor import BatchProcessor
from consumer.shards.api import StreamApi
from consumer.shards.consumer import ReaderSettings, ShardConsumer
from consumer.shards.lineage import leases_to_delete, new_leases, start_version
from consumer.shards.throttle import ThrottleGate
from consumer.source import StreamSource

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WorkerTimings:
    """The worker's cadences, in seconds."""

    failover: float = 10.0
    shard_sync_interval: float = 60.0
    shutdown_timeout: float = 20.0

    @property
    def tick(self) -> float:
        return self.failover / 3


class Worker:
    """One worker of the pool. ``run()`` blocks until ``stop_event`` is set and shutdown is done."""

    def __init__(
        self,
        worker_id: str,
        source: StreamSource,
        lease_table: LeaseTable,
        stream_api: StreamApi,
        processor: BatchProcessor,
        metrics: Metrics,
        reader_settings: ReaderSettings,
        timings: WorkerTimings,
        initial_position: str,
        stop_event: threading.Event,
        health: Health,
        clock: Callable[[], float] = time.monotonic,
        reap: Callable[[], bool] | None = None,
        reap_interval: float = 3600.0,
    ) -> None:
        self._worker_id = worker_id
        self._source = source
        self._leases = lease_table
        self._api = stream_api
        self._processor = processor
        self._metrics = metrics
        self._reader_settings = reader_settings
        self._timings = timings
        self._initial_position = initial_position
        self._stop = stop_event
        self._health = health
        self._clock = clock
        self._coordinator = LeaseCoordinator(lease_table, worker_id, timings.failover, metrics, clock)
        self._consumers: dict[str, ShardConsumer] = {}
        self._throttle = ThrottleGate(reader_settings.retry_base_seconds, reader_settings.retry_max_delay_seconds)
        self._next_sync = 0.0
        self._reap = reap
        self._reap_interval = reap_interval
        self._next_reap = 0.0
        self._reaping: threading.Thread | None = None

    def run(self, index_preexisted: bool = False) -> None:
        """Work until the stop event is set, then hand off. ``index_preexisted``: the index held data
        before this start (a new lease table then means a reset, which earns a warning)."""
        structlog.contextvars.bind_contextvars(worker_id=self._worker_id)
        log.info("worker_started", stream_arn=self._source.stream_arn, lease_table=self._leases.name)
        if self._leases.ensure_table(self._stop) and index_preexisted:
            # The version clocks restart with a new lease table (docs/versioning.md): changes made in
            # the same second as the index's last change of an item may lose to it. Audit repairs that.
            log.warning(
                "lease_table_created_for_existing_index",
                lease_table=self._leases.name,
                action="once the workers have caught up, run `consumer audit --repair`",
            )
        while not self._stop.is_set():
            self._do_tick()
            self._stop.wait(self._timings.tick)
        self._shutdown()
        log.info("worker_stopped")

    def _do_tick(self) -> None:
        """One coordination step; transient AWS failures are logged and retried next tick."""
        problem = None
        self._stop_lost(self._coordinator.renew_held())  # handles its own failures, lease by lease
        try:
            self._maybe_sync_shards()
        except ConsumerError as exc:  # the stream API failing must not stop renewing and taking
            problem = self._tick_failed("shard_sync", exc)
        try:
            leases = self._leases.list_leases()
            self._coordinator.take_leases(leases)
            self._metrics.taker_cycles.inc()
            self._reap_consumers()
            self._start_ready_consumers(leases)
        except ConsumerError as exc:
            problem = self._tick_failed("lease_taking", exc)
        self._maybe_reap()
        self._health.beat(problem)
        self._metrics.loop_heartbeat.set_to_current_time()

    def _maybe_reap(self) -> None:
        """Start one reaping pass when due and none is running; never blocks the loop."""
        if self._reap is None or self._clock() < self._next_reap:
            return
        if self._reaping is not None and self._reaping.is_alive():
            return
        self._next_reap = self._clock() + self._reap_interval
        self._reaping = threading.Thread(target=self._reap_pass, name="tombstone-reaper", daemon=True)
        self._reaping.start()

    def _reap_pass(self) -> None:
        assert self._reap is not None
        try:
            if self._reap():
                self._next_reap = 0.0  # the page was full: go on at the next tick
        except Exception as exc:  # noqa: BLE001 - OpenSearch failing, or an odd answer: the next pass tries again
            log.warning("tombstone_reaping_failed", error=str(exc), error_type=type(exc).__name__)

    def _tick_failed(self, step: str, exc: ConsumerError) -> str:
        log.warning("worker_tick_failed", step=step, error=str(exc), error_type=type(exc).__name__)
        return f"{step} failing: {type(exc).__name__}: {exc}"

    def _maybe_sync_shards(self) -> None:
        if self._clock() < self._next_sync:
            return
        self._sync_shards()
        self._delete_finished_leases()
        self._next_sync = self._clock() + self._timings.shard_sync_interval
        self._health.mark_synced()

    def _sync_shards(self) -> None:
        """Create a lease for every shard that needs one. Safe from any thread, and idempotent."""
        shards = self._api.list_shards(self._source.stream_arn)
        for lease in new_leases(shards, self._leases.list_leases(), self._initial_position):
            if self._leases.create_lease(lease):
                self._metrics.lease_events.labels(event="created").inc()
                log.info(
                    "lease_created",
                    shard_id=lease.lease_key,
                    checkpoint=lease.checkpoint,
                    parent_shard_ids=sorted(lease.parent_shard_ids),
                )

    def _delete_finished_leases(self) -> None:
        for lease in leases_to_delete(self._leases.list_leases()):
            try:
                self._leases.delete(lease)
            except LeaseLostError:
                continue  # changed since the scan (another worker cleaned it up): fine
            self._metrics.lease_events.labels(event="deleted").inc()
            log.info("lease_deleted", shard_id=lease.lease_key, children_progressed=True)

    def _on_shard_end(self, shard_id: str) -> None:
        """Called by a consumer right after it checkpointed SHARD_END: lease the children now, so
        the next taker cycle of any worker picks them up without waiting for the periodic sync."""
        try:
            self._sync_shards()
        except ConsumerError as exc:
            log.warning("child_lease_sync_failed", shard_id=shard_id, error=str(exc))
            self._next_sync = 0.0  # the worker loop retries on its next tick

    def _start_ready_consumers(self, leases: list[Lease]) -> None:
        by_key = {lease.lease_key: lease for lease in leases}
        for shard_id, held in self._coordinator.held.items():
            if shard_id in self._consumers:
                continue
            version = start_version(held.lease, by_key)
            if version is None:
                continue  # a parent is still being read: children wait (DESIGN §3)
            consumer = ShardConsumer(
                held,
                self._source.stream_arn,
                self._api,
                self._processor,
                self._metrics,
                self._reader_settings,
                self._worker_id,
                version,
                self._throttle,
                self._on_shard_end,
            )
            self._consumers[shard_id] = consumer
            consumer.start()

    def _reap_consumers(self) -> None:
        """Forget finished consumers; the lease of a shard that reached its end is released."""
        for shard_id, consumer in list(self._consumers.items()):
            if consumer.is_alive():
                continue
            del self._consumers[shard_id]
            held = self._coordinator.held.get(shard_id)
            if consumer.reached_shard_end and held is not None:
                self._release(held)

    def _release(self, held: HeldLease) -> None:
        self._coordinator.held.pop(held.shard_id, None)
        try:
            held.release()
        except ConsumerError as exc:
            log.warning("lease_release_failed", shard_id=held.shard_id, error=str(exc))

    def _stop_lost(self, lost: list[HeldLease]) -> None:
        for held in lost:
            consumer = self._consumers.pop(held.shard_id, None)
            if consumer is not None:
                consumer.stop()

    def _shutdown(self) -> None:
        """Graceful handoff: stop consumers, keep leases alive until they finish, release."""
        log.info("worker_stopping", shards=sorted(self._consumers))
        self._health.beat("stopping")
        for consumer in self._consumers.values():
            consumer.stop()
        deadline = self._clock() + self._timings.shutdown_timeout
        next_renew = self._clock() + self._timings.tick
        while any(c.is_alive() for c in self._consumers.values()) and self._clock() < deadline:
            for consumer in self._consumers.values():
                consumer.join(timeout=0.05)
            if self._clock() >= next_renew:
                self._renew_during_shutdown()
                self._health.beat("stopping")
                next_renew = self._clock() + self._timings.tick
        stuck = sorted(shard for shard, c in self._consumers.items() if c.is_alive())
        if stuck:
            log.warning("shard_consumers_abandoned", shards=stuck)
        self._coordinator.release_all()

    def _renew_during_shutdown(self) -> None:
        try:
            self._coordinator.renew_held()
        except ConsumerError as exc:
            log.warning("lease_renew_failed", error=str(exc))
