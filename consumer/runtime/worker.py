"""The worker: one process of the pool, orchestrating leases, shard tasks and shutdown.

Lifecycle: ``run()`` ensures the lease table, then runs a *tick* every ``failover / 3`` seconds on a
tick thread: it reads the next page of the lease table into the worker's view of it
(``consumer.leases.view``: a large table is read over a few ticks), takes leases from that view
(``LeaseCoordinator``), starts a task for every held shard whose parents are done, reaps finished
tasks, and starts a shard sync (``consumer.runtime.shard_sync_routine``) and a tombstone reaping pass
(``consumer.runtime.tombstone_reaping``) when due, each on a thread of its own. Renewal runs on its
own routine (``consumer.leases.renewal``) and the shard tasks on the ``ShardScheduler``'s threads, so
none of them waits for another.

The main thread only supervises: while a tick runs longer than its period (DynamoDB slow or
unreachable), it keeps ``/healthz`` alive and makes ``/readyz`` say why, so a slow AWS call never
gets a healthy pod restarted; only a tick stuck past ``STUCK_TICK_SECONDS`` stops the liveness beat.

When a shard ends, its children's leases are created, taken by this worker and started at once, so
a rollover costs no tick. When the stop event is set (SIGTERM), the tasks finish or abandon their
batch in flight and keep what they checkpointed, renewal goes on until they are done or the
shutdown deadline passes, then every lease is released so other workers take them at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog

from consumer.aws.backoff import backoff_delay
from consumer.aws.clock import AwsClock
from consumer.errors import ConfigError, ConsumerError, DuplicateWorkerIdError, Interrupted, LeaseTableError
from consumer.leases.coordinator import HeldLease, LeaseCoordinator
from consumer.leases.model import Lease, renew_interval, shard_leases
from consumer.leases.pool import lease_states, live_workers
from consumer.leases.renewal import RenewalRoutine
from consumer.leases.table import LeaseTable
from consumer.leases.view import LeaseView
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.observability.routines import routine_failed, step_failed
from consumer.runtime.shard_sync_routine import ShardSyncRoutine
from consumer.runtime.tombstone_reaping import ReapingRoutine
from consumer.shards.api import StreamApi
from consumer.shards.budget import ByteBudget
from consumer.shards.lineage import start_version
from consumer.shards.restarts import TaskRestarts
from consumer.shards.scheduler import ShardScheduler
from consumer.shards.sync import ShardSync
from consumer.shards.task import ReaderSettings, ShardTask, TaskContext
from consumer.shards.throttle import ThrottleGate
from consumer.sink.processor import BatchProcessor

log = structlog.get_logger(__name__)

STUCK_TICK_SECONDS = 600.0  # a tick running this long is hung, not slow: let liveness fail


class RoutineDiedError(ConsumerError):
    """A routine the worker cannot be without (lease renewal) died: the worker stops, and exits non-zero."""


@dataclass(frozen=True, kw_only=True)
class WorkerTimings:
    """The worker's cadences, in seconds."""

    failover: float = 10.0
    shard_sync_interval: float = 60.0
    shutdown_timeout: float = 20.0

    @property
    def tick(self) -> float:
        return renew_interval(self.failover)


@dataclass(frozen=True)
class WorkerParts:
    """What a worker is built from (``consumer.runtime.assembly`` builds them from the settings)."""

    worker_id: str
    leases: LeaseTable
    sync: ShardSync
    coordinator: LeaseCoordinator
    lease_executor: Executor  # the lease table's takes and releases
    renew_executor: Executor  # renewals alone, so that a burst of takes never delays them
    scheduler: ShardScheduler
    api: StreamApi
    processor: BatchProcessor
    reader: ReaderSettings
    throttle: ThrottleGate
    budget: ByteBudget
    prefetch: Executor  # shard tasks' read-ahead: the next page read and prepared
    metrics: Metrics
    health: Health
    timings: WorkerTimings
    stop: threading.Event
    aws_clock: AwsClock = field(default_factory=AwsClock)
    reap: Callable[[], bool] | None = None
    reap_interval: float = 3600.0


class Worker:
    """One worker of the pool. ``run()`` blocks until the stop event is set and shutdown is done."""

    def __init__(self, parts: WorkerParts, clock: Callable[[], float] = time.monotonic) -> None:
        self._parts = parts
        self._clock = clock
        parts.metrics.buffered_bytes.set_function(lambda: parts.budget.used)
        parts.metrics.buffered_bytes_peak.set_function(lambda: parts.budget.peak)
        self._renewal = RenewalRoutine(
            parts.coordinator,
            parts.renew_executor,
            parts.timings.failover,
            parts.metrics,
            self.on_lease_lost,
            clock,
            parts.health,
        )
        parts.health.watch("lease renewal", self._renewal.problem)
        self._restarts = TaskRestarts(
            parts.reader.retry_base_seconds,
            parts.reader.retry_max_delay_seconds,
            give_up_after=3 * parts.timings.failover,
            cool_down=6 * parts.timings.failover,
            clock=clock,
        )
        self._tasks: dict[str, ShardTask] = {}
        self._tasks_lock = threading.Lock()
        self._view = LeaseView(parts.leases)
        self._held_before: frozenset[str] = frozenset()
        self._held_changed_at = float("-inf")
        self._tick_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tick")
        self._shard_sync = ShardSyncRoutine(
            leases=parts.leases,
            sync=parts.sync,
            view=self._view,
            health=parts.health,
            metrics=parts.metrics,
            interval=parts.timings.shard_sync_interval,
            context=self._bind_context,
            clock=clock,
        )
        self._reaping = (
            ReapingRoutine(
                reap=parts.reap,
                interval=parts.reap_interval,
                metrics=parts.metrics,
                context=self._bind_context,
                clock=clock,
            )
            if parts.reap is not None
            else None
        )
        self._died: str | None = None  # a routine the worker cannot be without died: why
        self._refused: ConfigError | None = None  # a set-up found wrong while running (a duplicate worker id)

    def run(self, index_preexisted: bool = False) -> None:
        """Work until the stop event is set, then hand off. ``index_preexisted``: the index held data
        before this start (a new lease table then means a reset, which earns a warning)."""
        parts = self._parts
        structlog.contextvars.bind_contextvars(worker_id=parts.worker_id)
        log.info("worker_started", stream_arn=parts.sync.stream_arn, lease_table=parts.leases.name)
        try:
            created = self._ensure_lease_table()
        except Interrupted:
            created = None
        if created is None:
            return  # stopped first
        if created and index_preexisted:
            # The version clocks restart with a new lease table (docs/versioning.md): changes made in
            # the same second as the index's last change of an item may lose to it. Audit repairs that.
            log.warning(
                "lease_table_created_for_existing_index",
                lease_table=parts.leases.name,
                action="once the workers have caught up, run `consumer audit --repair`",
            )
        bind = self._bind_context
        parts.scheduler.start(bind)
        self._renewal.start(bind)
        try:
            self._supervise()
        finally:
            self._shutdown()
        log.info("worker_stopped")
        if self._refused is not None:
            raise self._refused
        if self._died is not None:
            raise RoutineDiedError(self._died)

    def _ensure_lease_table(self) -> bool | None:
        """The lease table, created if missing, tried again while DynamoDB is unreachable (``/readyz``
        says why); whether this worker created it, None when stopped first."""
        parts = self._parts
        attempt = 0
        while not parts.stop.is_set():
            try:
                return parts.leases.ensure_table(parts.stop)
            except (Interrupted, ConfigError):
                raise
            except Exception as exc:  # noqa: BLE001 - LeaseTableError, or what no one named: tried again, loudly
                delay = backoff_delay(attempt, parts.reader.retry_base_seconds, parts.reader.retry_max_delay_seconds)
                parts.health.beat(f"lease table not ready yet: {type(exc).__name__}: {exc}")
                log.warning(
                    "startup_step_failed",
                    step="lease table",
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_seconds=round(delay, 3),
                    exc_info=not isinstance(exc, LeaseTableError),
                )
                attempt += 1
                parts.stop.wait(delay)
        return None

    def _bind_context(self) -> None:
        structlog.contextvars.bind_contextvars(worker_id=self._parts.worker_id)

    # --- the tick ----------------------------------------------------------------------------------

    def _supervise(self) -> None:
        """Run ticks on the tick thread; keep the probes honest while one is slow. A tick that fails
        unexpectedly is logged, counted and reported as not ready; the next one runs as usual. A dead
        renewal routine stops the worker: it would hold leases it can no longer keep."""
        parts = self._parts
        tick: Future[str | None] | None = None
        started = 0.0
        while not parts.stop.is_set():
            died = self._renewal.problem()
            if died is not None:
                log.error("worker_routine_died", routine="lease renewal", problem=died)
                self._died = f"{died}: stopping, so that the leases go to workers that can keep them"
                parts.stop.set()
                break
            if tick is None:
                started = self._clock()
                tick = self._tick_thread.submit(self._do_tick)
            try:
                problem = tick.result(timeout=parts.timings.tick)
            except TimeoutError:
                running = self._clock() - started
                if running < STUCK_TICK_SECONDS:
                    parts.health.beat(
                        f"coordination slow: a tick has run for {running:.0f} s (lease table or DynamoDB Streams slow)"
                    )
                continue
            except Exception as exc:  # noqa: BLE001 - one failed round; the tick runs again (its state is the view's)
                problem = routine_failed(parts.metrics, "tick", exc)
            tick = None
            parts.health.beat(problem)
            parts.metrics.loop_heartbeat.set_to_current_time()
            parts.metrics.tick_duration.observe(self._clock() - started)
            parts.stop.wait(max(0.0, parts.timings.tick - (self._clock() - started)))
        # A tick still in flight ends on its own (its calls are bounded); shutdown does not wait for it.

    def _do_tick(self) -> str | None:
        """One coordination step; returns what keeps the worker from being ready, if anything."""
        parts = self._parts
        steps = _StepTimes(self._clock)
        held = frozenset(lease.shard_id for lease in parts.coordinator.holding())
        if held != self._held_before:
            self._held_changed_at = self._clock()
        self._held_before = held
        # The pool moves for this worker while its leases changed within the failover, or while it wants
        # to take or steal: it then decides from the whole table, read every tick (consumer.leases.view).
        moving = self._clock() - self._held_changed_at < parts.timings.failover or parts.coordinator.wants_leases
        try:
            with steps("lease_read"):
                view = self._view.refresh(whole=moving)
        except ConsumerError as exc:
            return step_failed("lease_read", exc)
        leases = shard_leases(view.leases)
        if not self._shard_sync.synced_once:  # the first sync runs in the tick: before it, there is nothing to take
            with steps("shard_sync"):
                self._shard_sync.run_pass(leases if view.whole else None)
        else:
            self._shard_sync.maybe_start()
        problem = self._shard_sync.problem
        parts.health.set_condition("shards", self._restarts.problem())
        try:
            with steps("lease_taking"):
                taken = parts.coordinator.take_leases(leases, shard_leases(view.read), self._restarts.avoided())
                self._view.merge(held.lease for held in taken)
            parts.metrics.taker_cycles.inc()
            errors = parts.coordinator.take_errors
            if errors:
                problem = f"lease table refuses writes: {len(errors)} lease takes failed: {errors[0]}"
        except DuplicateWorkerIdError as exc:  # two workers, one id: neither can keep its leases
            log.error("worker_id_duplicated", worker_id=parts.worker_id, error=str(exc))
            self._refused = exc
            parts.stop.set()
            return str(exc)
        except ConsumerError as exc:
            problem = step_failed("lease_taking", exc)
        with steps("tasks"):
            self._reap_tasks()
            try:
                self._start_ready_tasks({lease.lease_key: lease for lease in leases})
            except ConsumerError as exc:  # a parent could not be looked up: its children wait a tick
                problem = step_failed("task_start", exc)
            self._observe_pool(leases)
            if self._reaping is not None:
                self._reaping.maybe_start()
        if steps.total > parts.timings.tick / 3:  # renewal has its own routine; a slow tick delays taking only
            log.warning(
                "coordinator_tick_slow", seconds=round(steps.total, 3), steps=steps.rounded(), leases=len(leases)
            )
        return problem

    # --- tasks --------------------------------------------------------------------------------------

    def _start_ready_tasks(self, leases: dict[str, Lease]) -> None:
        """Start a task for every held shard whose parents are done. A parent the view does not show
        may be one it has not read yet: it is looked up first, never assumed gone."""
        with self._tasks_lock:
            waiting = [
                held
                for held in self._parts.coordinator.holding()
                if held.shard_id not in self._tasks and self._restarts.may_start(held.shard_id)
            ]
        missing = sorted({key for held in waiting for key in held.lease.parent_shard_ids if key not in leases})
        found = [lease for lease in self._parts.lease_executor.map(self._parts.leases.get_lease, missing) if lease]
        self._view.merge(found)
        leases = {**leases, **{lease.lease_key: lease for lease in found}}
        for held in waiting:
            version = start_version(held.lease, {**leases, held.shard_id: held.lease})
            if version is None:
                continue  # a parent is still being read: children wait (DESIGN §3)
            self._start_task(held, version)

    def _start_task(self, held: HeldLease, version: int) -> None:
        task = ShardTask(held, version, self._task_context(held.lease.stream_arn or self._parts.sync.stream_arn))
        with self._tasks_lock:
            if held.shard_id in self._tasks:
                return
            self._tasks[held.shard_id] = task
        self._parts.scheduler.add(task)

    def _reap_tasks(self) -> None:
        """Forget finished tasks; release the leases of ended shards so clean-up can delete them. A
        task that failed is started again from its lease's checkpoint once its backoff is over
        (``consumer.shards.restarts``), or its lease released when the shard keeps failing."""
        with self._tasks_lock:
            finished = [task for task in self._tasks.values() if task.finished.is_set()]
            for task in finished:
                del self._tasks[task.shard_id]
            running = list(self._tasks.values())
        if self._restarts.failing():
            for task in running:
                if task.settled_pages:
                    self._restarts.progressed(task.shard_id)
        coordinator = self._parts.coordinator
        for task in finished:
            held = coordinator.held.get(task.shard_id)
            if task.failure is not None and held is not None and not held.lost.is_set():
                self._task_failed(task, held)
                continue
            self._restarts.forget(task.shard_id)
            if held is not None and task.reached_shard_end:
                coordinator.release(held)
            if held is None or task.reached_shard_end:
                self._parts.metrics.shard_progress.forget(task.shard_id)
        self._parts.metrics.shards_failing.set(self._restarts.failing())

    def _task_failed(self, task: ShardTask, held: HeldLease) -> None:
        assert task.failure is not None
        if not self._restarts.failed(task.shard_id, task.failure, progressed=task.settled_pages > 0):
            return  # started again from the checkpoint by a later tick, once its backoff is over
        log.error(
            "shard_given_up",
            shard_id=task.shard_id,
            checkpoint=held.lease.checkpoint,
            error=f"{type(task.failure).__name__}: {task.failure}"[:500],
            action="the lease is released for another worker to try; see the shard_task_failed logs",
        )
        self._parts.coordinator.release(held)
        self._parts.metrics.shard_progress.forget(task.shard_id)

    def _task_context(self, stream_arn: str) -> TaskContext:
        parts = self._parts
        return TaskContext(
            stream_arn=stream_arn,
            api=parts.api,
            processor=parts.processor,
            metrics=parts.metrics,
            settings=parts.reader,
            throttle=parts.throttle,
            budget=parts.budget,
            prefetch=parts.prefetch,
            stop=parts.stop,
            on_shard_end=self.on_shard_end,
            confirm_vanished=self.confirm_vanished,
            aws_clock=parts.aws_clock,
        )

    # --- shard end, lease loss, vanished shards -------------------------------------------------------

    def on_shard_end(self, shard_id: str) -> None:
        """A task checkpointed SHARD_END: lease its children, take them and start them now, so a
        rollover costs no tick. Runs on the task's scheduler thread."""
        parts = self._parts
        try:
            leases = shard_leases(parts.leases.list_leases(consistent=True))
            created = parts.sync.children_of(shard_id, leases)
            taken = parts.coordinator.take_specific(created)
            self._view.merge([*created, *(held.lease for held in taken)])
            for held in taken:
                version = start_version(held.lease, {lease.lease_key: lease for lease in leases})
                if version is not None:
                    self._start_task(held, version)
        except ConsumerError as exc:
            log.warning("child_lease_sync_failed", shard_id=shard_id, error=str(exc))
            self._shard_sync.request()  # the next tick syncs and takes them

    def on_lease_lost(self, held: HeldLease) -> None:
        """The renewal routine lost a lease: its task stops at its next step (``held.lost`` is set)."""
        held.lost.set()

    def confirm_vanished(self, shard_id: str) -> bool:
        return self._parts.sync.confirm_vanished(shard_id)

    # --- observation ------------------------------------------------------------

    def _observe_pool(self, leases: list[Lease]) -> None:
        parts = self._parts
        parts.metrics.shard_tasks.set(len(self._tasks))
        parts.metrics.leases_held.set(len(parts.coordinator.held))
        expired = parts.coordinator.last_expired
        parts.metrics.pool.observe(lease_states(leases, expired), live_workers(leases, expired, parts.worker_id))

    # --- shutdown -----------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Graceful handoff: let tasks finish their step, keep leases renewed meanwhile, release."""
        parts = self._parts
        log.info("worker_stopping", shards=len(self._tasks))
        parts.health.beat("stopping")
        parts.scheduler.stop()
        if not parts.scheduler.join(parts.timings.shutdown_timeout):
            log.warning("shard_tasks_abandoned", running=parts.scheduler.busy)
        parts.coordinator.release_all()
        self._renewal.stop()
        self._tick_thread.shutdown(wait=False, cancel_futures=True)


class _StepTimes:
    """How long each named step of a tick took, for the slow-tick warning."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        started = self._clock()
        try:
            yield
        finally:
            self._seconds[step] = self._clock() - started

    @property
    def total(self) -> float:
        return sum(self._seconds.values())

    def rounded(self) -> dict[str, float]:
        return {step: round(seconds, 3) for step, seconds in self._seconds.items()}
