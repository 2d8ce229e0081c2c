"""The work of one held shard, as a task of the ``ShardScheduler``: read (through its
``ShardReader``, ``consumer.shards.reader``), apply, checkpoint; and what every failure means.

Each ``step()`` does one bounded unit of work and says when it wants to run again:

* a page with records is applied and its progress staged on the lease (``HeldLease.stage``: the
  lease's next write carries it, a renewal round's at the latest, so a busy lease costs the lease
  table what an idle one does; the task's last progress is written when it stops). When more records are likely waiting (a full page, or a last record older than a poll
  interval: a backlog) the task asks to run again at once, and the next page is already being read
  on the worker's prefetch threads. While this page's ``_bulk`` is in flight, the next page is
  prepared (decoded, versioned, projected, encoded) on this task's own thread, between sending the
  request and reading its answer (``consumer.sink.in_flight``: CPU work on another thread would hold
  the GIL when the request needs it), and, when it is full, the page after it starts being read: at
  most ``READ_AHEAD_PAGES`` (``consumer.shards.reader``) pages read ahead, within the byte budget (the KCL's polling prefetch
  holds up to three). The page just settled is freed in that flight too (freeing is CPU work).
  So reading, preparing, freeing and OpenSearch's indexing overlap during a catch-up.
  At the stream's tip it reads again one poll
  interval after this read began: reading at once would mostly return nothing, and each call is billed;
* an empty page makes the task wait before the next read: the poll interval, doubled on each
  further empty read up to ``idle_poll_ceiling_seconds``, and back to no wait as soon as a read returns
  data (DynamoDB Streams bills non-Lambda readers per GetRecords call);
* a read that fails waits as its kind requires (a throttle: the worker's shared gate; another error:
  exponential backoff); an expired iterator is acquired again after the last settled record;
* a shard whose data is gone (ResourceNotFound, confirmed by the worker against DescribeStream) is
  ended as *vanished*: loudly (error log with the last applied sequence number, a metric), with
  SHARD_END so its children proceed;
* at shard end, SHARD_END is checkpointed and the worker told, so it leases the children at once.

Guarantees (as before the scheduler): the checkpoint only ever names a record whose batch was
settled, with the version clock there; SHARD_END only after every record is settled, and written
at once; a lost lease ends the task at its next step (a write of the lease fails by condition, the
worker stops the task, and staging refuses). Reads wait for room in the
worker's ``ByteBudget`` (backpressure), and each page held is charged to it until settled (a
settled page's objects may outlive that by one request of the same shard, while it catches up).

The failure discipline (docs/operations.md): the iterator and the pages read ahead run ahead of what
is settled, so a step that fails in a way nobody anticipated may have moved them past unsettled
records. Such a step is never followed by another: ``step`` never raises, it fails closed — the task
ends (``failure`` says why) and its in-memory position with it, and the worker starts a new task
from the lease's checkpoint (``consumer.shards.restarts``). A lease at LATEST is anchored before its
first iterator is taken, so no later reader takes a fresh LATEST (``consumer.shards.reader``).

A task is stepped by one scheduler thread at a time; its fields are not shared otherwise.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import structlog

from consumer.aws.backoff import backoff_delay
from consumer.aws.clock import AwsClock
from consumer.errors import (
    Interrupted,
    IteratorExpiredError,
    LeaseLostError,
    LeaseTableError,
    ShardNotFoundError,
    SinkError,
    StreamError,
    ThrottledError,
    TrimmedDataError,
)
from consumer.leases.coordinator import HeldLease, Progress
from consumer.leases.model import LATEST, SHARD_END, TRIM_HORIZON
from consumer.observability.metrics import Metrics
from consumer.shards.api import RecordsPage, StreamApi
from consumer.shards.budget import ByteBudget
from consumer.shards.reader import ShardReader, is_full_page
from consumer.shards.throttle import ThrottleGate
from consumer.sink.processor import BatchProcessor, BatchResult, PreparedBatch

log = structlog.get_logger(__name__)

VANISH_CONFIRMATIONS = 3  # a shard still listed but whose iterator keeps answering ResourceNotFound


@dataclass(frozen=True, kw_only=True)
class ReaderSettings:
    """How a shard task paces its reads."""

    max_records_per_read: int = 1000
    poll_interval_seconds: float = 1.0
    retry_base_seconds: float = 0.1
    retry_max_delay_seconds: float = 10.0
    idle_poll_ceiling_seconds: float = 2.0


@dataclass(frozen=True, kw_only=True)
class TaskContext:
    """What every task of a worker shares."""

    stream_arn: str
    api: StreamApi
    processor: BatchProcessor
    metrics: Metrics
    settings: ReaderSettings
    throttle: ThrottleGate
    budget: ByteBudget
    prefetch: Executor
    stop: threading.Event
    on_shard_end: Callable[[str], None]
    confirm_vanished: Callable[[str], bool]
    aws_clock: AwsClock


class ShardTask:
    """Reads and applies one held shard, a step at a time."""

    def __init__(self, held: HeldLease, start_version: int, context: TaskContext) -> None:
        self._held = held
        self._context = context
        self._settings = context.settings
        self._version = start_version
        self._position = held.lease.checkpoint  # the last settled sequence number, or a sentinel
        self._reader = ShardReader(
            held,
            stream_arn=context.stream_arn,
            api=context.api,
            processor=context.processor,
            budget=context.budget,
            prefetch=context.prefetch,
            aws_clock=context.aws_clock,
            max_records=context.settings.max_records_per_read,
        )
        self._settled: tuple[RecordsPage, PreparedBatch] | None = None  # freed in the next page's flight
        held.on_progress_written = self._progress_written
        self._failures = 0
        self._empty_reads = 0
        self._not_found = 0
        self._trimmed_after: str | None = None  # set while the first read after a trim is pending
        self._read_failure_delay = 0.0  # how long to wait after the last failed read
        self._rng = random.Random()
        self._started = False
        self.finished = threading.Event()
        self.reached_shard_end = False
        self.failure: BaseException | None = None  # why the task failed (``_fail``), if it did
        self.settled_pages = 0

    @property
    def name(self) -> str:
        return self._held.shard_id

    @property
    def shard_id(self) -> str:
        return self._held.shard_id

    def step(self) -> float | None:
        """One unit of work; the monotonic time to run again, or None when the task is over. Never raises."""
        with structlog.contextvars.bound_contextvars(shard_id=self.shard_id):
            try:
                if not self._started:
                    self._start()
                if self._context.stop.is_set() or self._held.lost.is_set():
                    return self._finish("lease_lost" if self._held.lost.is_set() else "stopped")
                if self._position == SHARD_END:
                    self.reached_shard_end = True
                    return self._finish("shard_end")
                return self._work()
            except LeaseLostError:
                return self._finish("lease_lost")
            except Interrupted:
                return self._finish("interrupted")
            except Exception as exc:  # noqa: BLE001 - fail closed: the task ends, its position with it (below)
                return self._fail(exc)

    def abandon(self, error: BaseException) -> None:
        """End the task after ``step`` raised (a bug in this class): as ``_fail`` does."""
        with structlog.contextvars.bound_contextvars(shard_id=self.shard_id):
            self._fail(error)

    def _start(self) -> None:
        self._started = True
        log.info("shard_task_started", checkpoint=self._position, version=self._version)
        self._context.metrics.shard_progress.record_checkpoint(self.shard_id)  # the age counts from the takeover

    def _fail(self, exc: BaseException) -> float | None:
        """Something nobody anticipated went wrong in the middle of a step (an answer no one could
        read, a bug, memory): the task ends, and everything it held in memory goes with it — the
        iterator, the pages read ahead, the page in hand, the clock past the last checkpoint. Its
        worker starts a new task from the lease's checkpoint after a pause (``consumer.runtime.worker``), so
        the same records are read and applied again: the position never moves past a record that
        was not settled, whatever failed and wherever."""
        self.failure = exc
        self._context.metrics.shard_task_failures.inc()
        log.error(
            "shard_task_failed",
            error_type=type(exc).__name__,
            error=str(exc)[:500],
            checkpoint=self._position,
            exc_info=exc,
        )
        return self._finish("failed")

    def _finish(self, why: str) -> float | None:
        """End the task: let go of what it holds, and wait for its last checkpoint write. Never raises."""
        self._settled = None
        self._reader.release_page()
        self._reader.discard_read_ahead()
        try:
            self._held.flush()  # the next task, here or on another worker, starts where this one got
        except LeaseLostError:
            pass  # a lost lease is why we finish, or the worker will see it
        except Exception as exc:  # noqa: BLE001 - that write is not durable: the checkpoint before it stands
            log.warning("checkpoint_failed", checkpoint=self._position, error=f"{type(exc).__name__}: {exc}")
        log.info("shard_task_stopped", checkpoint=self._position, shard_end=self.reached_shard_end, reason=why)
        self.finished.set()
        return None

    def _work(self) -> float | None:
        now = time.monotonic()
        wait = self._context.throttle.wait_time()
        if wait > 0:
            return now + wait
        if not self._context.budget.has_room() and not self._reader.reading_ahead:
            return now + 0.05  # backpressure: held pages wait to settle before more are read
        read_at = time.monotonic()
        fetched = self._read()
        if fetched is None:
            return None if self.finished.is_set() else time.monotonic() + self._read_failure_delay
        page, prepared = fetched
        self._failures = 0
        self._not_found = 0
        self._context.throttle.succeeded()
        if page.records and (prepared is None or prepared.start_version != self._version):
            prepared = self._context.processor.prepare(
                self.shard_id, page.records, self._version, self._reader.skip_before
            )
        age = self._observe(page, prepared)
        self._reader.iterator = page.next_iterator
        settings = self._settings
        backlog = bool(page.records) and more_records_waiting(
            len(page.records), page.size_bytes, age, settings.max_records_per_read, settings.poll_interval_seconds
        )
        if page.records:
            assert prepared is not None
            self._empty_reads = 0
            work = None
            if backlog and self._reader.read_ahead():
                work = functools.partial(self._prepare_prefetched, prepared.version)
            self._settle(prepared, work)
            # Freeing a full page's objects takes about 10 ms of CPU: with the next request due at
            # once, leave that to its flight (``_prepare_prefetched``) instead of the gap before it.
            self._settled = (page, prepared) if work is not None else None
        else:
            self._settled = None
            self._reader.release_page()
        if page.next_iterator is None:
            self._end_shard(vanished=False)
            return None if self.finished.is_set() else time.monotonic()
        if page.records:
            return time.monotonic() if backlog else read_at + self._settings.poll_interval_seconds
        self._empty_reads += 1
        return time.monotonic() + self._idle_delay()

    # --- reading -------------------------------------------------------------------------------

    def _read(self) -> tuple[RecordsPage, PreparedBatch | None] | None:
        """The next page (``ShardReader.read``); None after a failure."""
        try:
            return self._reader.read(self._position)
        except (StreamError, LeaseTableError) as exc:  # a LeaseTableError: anchoring a LATEST lease failed
            return self._failed(exc)

    def _prepare_prefetched(self, version: int) -> None:
        """Run while this page's ``_bulk`` is in flight: let go of the page settled before this one
        (freeing is CPU work), then prepare the next page (``ShardReader.prepare_next``)."""
        self._settled = None
        self._reader.prepare_next(version)

    def _failed(self, exc: StreamError | LeaseTableError) -> None:
        """Count and log a failed read; sets how long to wait before the next one."""
        if not isinstance(exc, ThrottledError):
            self._reader.iterator = None  # unusable after other failures (moto answers 500 for an unknown one)
        if isinstance(exc, ShardNotFoundError):
            self._read_failure_delay = self._shard_not_found(exc)
            return None
        if isinstance(exc, TrimmedDataError):
            self._resume_after_trim(exc)
            self._read_failure_delay = 0.0
            return None
        outcome = {IteratorExpiredError: "expired_iterator", ThrottledError: "throttled"}.get(type(exc), "error")
        self._context.metrics.get_records.labels(outcome=outcome).inc()
        if outcome == "expired_iterator":
            log.info("shard_iterator_expired", position=self._position)
            self._read_failure_delay = 0.0
            return None
        delay = self._context.throttle.throttled() if outcome == "throttled" else self._backoff()
        self._failures += 1
        log.warning("get_records_failed", outcome=outcome, error=str(exc), retry_in_seconds=round(delay, 3))
        self._read_failure_delay = delay
        return None

    def _shard_not_found(self, exc: ShardNotFoundError) -> float:
        """ResourceNotFound: ask the worker whether the shard is gone; end it as vanished if so, or
        after it kept answering so while still listed (its records are gone)."""
        self._not_found += 1
        log.warning("shard_not_found", error=str(exc), attempt=self._not_found)
        if self._context.confirm_vanished(self.shard_id) or self._not_found >= VANISH_CONFIRMATIONS:
            self._end_shard(vanished=True)
            return 0.0
        self._failures += 1
        return self._backoff()

    def _resume_after_trim(self, exc: TrimmedDataError) -> None:
        """Records past our position were trimmed (24 h retention): report the loss, go on.

        Never silent: the loss is counted, logged now with the last settled position, and logged
        again at the first record still available, so the lost records are exactly those with
        sequence numbers strictly between ``after_sequence_number`` and that record's.
        """
        self._context.metrics.trimmed.inc()
        self._trimmed_after = self._position
        log.error("shard_data_trimmed", after_sequence_number=self._position, resume_from=TRIM_HORIZON, error=str(exc))
        self._position = TRIM_HORIZON

    def _backoff(self) -> float:
        settings = self._settings
        return backoff_delay(self._failures, settings.retry_base_seconds, settings.retry_max_delay_seconds, self._rng)

    def _idle_delay(self) -> float:
        base = self._settings.poll_interval_seconds
        return min(self._settings.idle_poll_ceiling_seconds, base * (2 ** min(self._empty_reads - 1, 16)))

    def _observe(self, page: RecordsPage, prepared: PreparedBatch | None) -> float:
        """Count the page; returns the age in seconds of its last record (0 when empty, or when the
        last record does not decode: the processor reports it)."""
        metrics = self._context.metrics
        metrics.get_records.labels(outcome="records" if page.records else "empty").inc()
        if not page.records:
            metrics.shard_progress.record_read(self.shard_id, 0.0)
            return 0.0
        metrics.records_read.inc(len(page.records))
        metrics.records_read_bytes.inc(sum(_size_of(r) for r in page.records))
        if self._trimmed_after is not None:
            first = page.records[0].get("dynamodb", {}).get("SequenceNumber")
            log.error(
                "shard_resumed_after_trim",
                after_sequence_number=self._trimmed_after,
                first_available_sequence_number=first,
            )
            self._trimmed_after = None
        second = prepared.last_record_second if prepared is not None else None
        age = time.time() - second if second is not None else 0.0
        metrics.shard_progress.record_read(self.shard_id, age)
        return age

    # --- applying ------------------------------------------------------------------------------

    def _settle(self, prepared: PreparedBatch, while_in_flight: Callable[[], None] | None) -> None:
        """Apply one prepared page, retrying what the sink could not settle, then checkpoint it;
        ``while_in_flight`` runs during the first ``_bulk`` request."""
        started = time.perf_counter()
        try:
            result = self._apply(prepared, while_in_flight)
        finally:
            self._reader.release_page()
        self.settled_pages += 1
        self._version = result.version
        if result.last_sequence_number is not None:
            if self._position in (TRIM_HORIZON, LATEST):
                log.info("shard_first_records_applied", sequence_number=result.last_sequence_number)
            self._position = result.last_sequence_number
            self._held.stage(Progress(result.last_sequence_number, self._version, result.last_record_second))
        self._context.metrics.batch_duration.observe(time.perf_counter() - started)

    def _apply(self, prepared: PreparedBatch, while_in_flight: Callable[[], None] | None) -> BatchResult:
        attempt = 0
        while True:
            try:
                return self._context.processor.apply(prepared, self._context.stop, while_in_flight)
            except (SinkError, OSError) as exc:
                delay = backoff_delay(
                    attempt, self._settings.retry_base_seconds, self._settings.retry_max_delay_seconds, self._rng
                )
                log.warning(
                    "batch_failed", error=str(exc), records=len(prepared.actions), retry_in_seconds=round(delay, 3)
                )
                attempt += 1
                if self._context.stop.wait(delay) or self._held.lost.is_set():
                    raise Interrupted("stop requested while a batch awaited a retry") from exc

    def _end_shard(self, vanished: bool) -> None:
        """Every record is settled (or the shard's data is gone): checkpoint SHARD_END, retrying until
        it is written or stopped, then let the worker lease the children."""
        last = self._position
        failures = 0
        while not self._checkpoint(SHARD_END, vanished_after=last if vanished else None):
            if self._context.stop.wait(backoff_delay(failures, 0.1, 5.0, self._rng)):
                raise Interrupted("stop requested before SHARD_END could be checkpointed")
            failures += 1
        self.reached_shard_end = True
        if vanished:
            self._context.metrics.shards_vanished.inc()
            log.error(
                "shard_vanished",
                last_applied_sequence_number=last,
                version=self._version,
                action="records after the last applied one may be missing from the index: run `consumer audit`",
            )
        else:
            log.info("shard_ended", version=self._version)
        self.finished.set()
        self._context.on_shard_end(self.shard_id)

    def _progress_written(self, progress: Progress) -> None:
        """Staged progress reached the lease table (on the writing thread: the renewal routine's)."""
        self._context.metrics.checkpoints.labels(outcome="ok").inc()
        self._context.metrics.shard_progress.record_checkpoint(self.shard_id)

    def _checkpoint(self, position: str, record_second: int | None = None, vanished_after: str | None = None) -> bool:
        """Checkpoint ``position`` now; False on a transient failure (the next checkpoint covers it)."""
        self._position = position
        return self._write_checkpoint(position, self._version, record_second, vanished_after)

    def _write_checkpoint(
        self, position: str, version: int, record_second: int | None, vanished_after: str | None
    ) -> bool:
        metrics = self._context.metrics
        try:
            self._held.checkpoint(position, version, record_second, vanished_after)
        except LeaseLostError:
            metrics.checkpoints.labels(outcome="lease_lost").inc()
            raise
        except LeaseTableError as exc:
            # A crash before the next checkpoint only replays settled records: harmless.
            metrics.checkpoints.labels(outcome="error").inc()
            log.warning("checkpoint_failed", checkpoint=position, error=str(exc))
            return False
        metrics.checkpoints.labels(outcome="ok").inc()
        metrics.shard_progress.record_checkpoint(self.shard_id)
        return True


def more_records_waiting(
    records: int, size_bytes: int, last_record_age: float, max_records: int, poll_interval: float
) -> bool:
    """Whether a shard likely holds more records past a page of ``records`` (``size_bytes`` on the
    wire, its last record ``last_record_age`` seconds old): the page was full (by count or size), or
    its last record is older than a poll interval (one second more: a record's time is whole
    seconds), i.e. the reader is behind the tip. A local clock ahead of AWS's only makes reads sooner."""
    return is_full_page(records, size_bytes, max_records) or last_record_age > poll_interval + 1.0


def _size_of(record: dict[str, Any]) -> int:
    size = record.get("dynamodb", {}).get("SizeBytes", 0)
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 0
