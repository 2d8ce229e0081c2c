"""The consumer of one held shard: read, apply, checkpoint, until shard end, stop or lease loss.

Guarantees:
* The checkpoint only ever names a record whose batch was settled (applied, stale or
  dead-lettered) — never one still in flight — and carries the version clock at that record.
* SHARD_END is checkpointed only after every record of the shard is settled.
* A lost lease stops the consumer at its next step; its checkpoint writes fail by condition.

One thread per shard (the KCL shape): ``start()`` spawns it, ``stop()`` asks it to finish the
batch in flight or abandon it, ``join()`` waits. Not shared between threads otherwise.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from consumer.backoff import backoff_delay
from consumer.errors import (
    Interrupted,
    IteratorExpiredError,
    LeaseLostError,
    LeaseTableError,
    RecordError,
    ShardNotFoundError,
    SinkError,
    StreamError,
    ThrottledError,
    TrimmedDataError,
)
from consumer.leases.coordinator import HeldLease
from consumer.leases.model import LATEST, SHARD_END, TRIM_HORIZON
from consumer.observability.metrics import Metrics
from consumer.processor import BatchProcessor
from consumer.records import StreamRecord
from consumer.shards.api import AFTER_SEQUENCE_NUMBER, RecordsPage, StreamApi
from consumer.shards.throttle import ThrottleGate

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ReaderSettings:
    """How a shard consumer paces its reads."""

    max_records_per_read: int = 1000
    poll_interval_seconds: float = 1.0
    retry_base_seconds: float = 0.1
    retry_max_delay_seconds: float = 10.0


class ShardConsumer:
    """Consumes one shard for one held lease."""

    def __init__(
        self,
        held: HeldLease,
        stream_arn: str,
        api: StreamApi,
        processor: BatchProcessor,
        metrics: Metrics,
        settings: ReaderSettings,
        worker_id: str,
        start_version: int,
        throttle: ThrottleGate,
        on_shard_end: Callable[[str], None],
    ) -> None:
        self._held = held
        self._stream_arn = stream_arn
        self._api = api
        self._processor = processor
        self._metrics = metrics
        self._settings = settings
        self._worker_id = worker_id
        self._version = start_version
        self._throttle = throttle
        self._on_shard_end = on_shard_end
        self._trimmed_after: str | None = None  # set while the first read after a trim is pending
        self._position = held.lease.checkpoint  # the last settled sequence number, or a sentinel
        self._stop = threading.Event()
        self._rng = random.Random()
        self.reached_shard_end = False
        self._thread = threading.Thread(target=self._run, name=f"shard-{held.shard_id}", daemon=True)

    @property
    def shard_id(self) -> str:
        return self._held.shard_id

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        structlog.contextvars.bind_contextvars(worker_id=self._worker_id, shard_id=self.shard_id)
        log.info("shard_consumer_started", checkpoint=self._position, version=self._version)
        self._metrics.shard_progress.record_checkpoint(self.shard_id)  # the age counts from the takeover
        try:
            self._consume()
            log.info("shard_consumer_stopped", checkpoint=self._position, shard_end=self.reached_shard_end)
        except LeaseLostError:
            log.warning("shard_consumer_stopped_lease_lost", checkpoint=self._position)
        except Interrupted:
            log.info("shard_consumer_interrupted", checkpoint=self._position)
        except Exception:  # a bug must not kill the worker: the worker restarts this shard later
            log.exception("shard_consumer_crashed", checkpoint=self._position)
        finally:
            self._metrics.shard_progress.forget(self.shard_id)
            structlog.contextvars.clear_contextvars()

    def _consume(self) -> None:
        if self._position == SHARD_END:
            self.reached_shard_end = True
            return
        iterator: str | None = None  # None: get one after the last settled record
        failures = 0
        while not self._stop.is_set() and not self._held.lost.is_set():
            if self._stop.wait(self._throttle.wait_time()):
                return
            try:
                iterator = iterator or self._acquire_iterator()
                page = self._api.get_records(iterator, self._settings.max_records_per_read)
            except StreamError as exc:
                if not isinstance(exc, ThrottledError):
                    iterator = None  # unusable after other failures (moto answers 500 for an unknown one)
                self._handle_read_failure(exc, failures)
                failures += 1
                continue
            failures = 0
            self._throttle.succeeded()
            self._observe_read(page)
            if page.records:
                self._settle(page.records)
            if page.next_iterator is None:
                self._end_shard()
                return
            iterator = page.next_iterator
            if not page.records:
                self._stop.wait(self._settings.poll_interval_seconds)

    def _acquire_iterator(self) -> str:
        """An iterator just after the last settled record (or at the initial position)."""
        if self._position in (TRIM_HORIZON, LATEST):
            iterator = self._api.get_shard_iterator(self._stream_arn, self.shard_id, self._position)
        else:
            iterator = self._api.get_shard_iterator(
                self._stream_arn, self.shard_id, AFTER_SEQUENCE_NUMBER, self._position
            )
        log.info("shard_iterator_acquired", position=self._position)
        return iterator

    def _handle_read_failure(self, exc: StreamError, failures: int) -> None:
        """Log and count a failed read, then wait as its kind requires (or stop)."""
        if isinstance(exc, ShardNotFoundError):
            log.error("shard_not_found", error=str(exc))
            self._stop.set()
            return
        if isinstance(exc, TrimmedDataError):
            self._resume_after_trim(exc)
            return
        outcome = {IteratorExpiredError: "expired_iterator", ThrottledError: "throttled"}.get(type(exc), "error")
        self._metrics.get_records.labels(outcome=outcome).inc()
        if outcome == "expired_iterator":
            log.info("shard_iterator_expired", position=self._position)
            return
        delay = self._throttle.throttled() if outcome == "throttled" else self._backoff(failures)
        log.warning("get_records_failed", outcome=outcome, error=str(exc), retry_in_seconds=round(delay, 3))
        self._stop.wait(delay)

    def _resume_after_trim(self, exc: TrimmedDataError) -> None:
        """Records past our position were trimmed (24 h retention): report the loss, go on.

        Never silent: the loss is counted, logged now with the last settled position, and logged
        again at the first record still available, so the lost records are exactly those with
        sequence numbers strictly between ``after_sequence_number`` and that record's.
        """
        self._metrics.trimmed.inc()
        self._trimmed_after = self._position
        log.error("shard_data_trimmed", after_sequence_number=self._position, resume_from=TRIM_HORIZON, error=str(exc))
        self._position = TRIM_HORIZON

    def _backoff(self, failures: int) -> float:
        return backoff_delay(
            failures, self._settings.retry_base_seconds, self._settings.retry_max_delay_seconds, self._rng
        )

    def _observe_read(self, page: RecordsPage) -> None:
        self._metrics.get_records.labels(outcome="records" if page.records else "empty").inc()
        self._metrics.records_read.inc(len(page.records))
        self._metrics.records_read_bytes.inc(sum(r.get("dynamodb", {}).get("SizeBytes", 0) for r in page.records))
        if self._trimmed_after is not None and page.records:
            first = page.records[0].get("dynamodb", {}).get("SequenceNumber")
            log.error(
                "shard_resumed_after_trim",
                after_sequence_number=self._trimmed_after,
                first_available_sequence_number=first,
            )
            self._trimmed_after = None
        age = 0.0
        if page.records:
            with contextlib.suppress(RecordError):  # a malformed record is the processor's to report
                age = time.time() - StreamRecord.from_wire(page.records[-1]).approximate_second
        self._metrics.shard_progress.record_read(self.shard_id, age)

    def _settle(self, records: list[dict[str, Any]]) -> None:
        """Apply one page, retrying transient failures, then checkpoint it."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                result = self._processor.process(self.shard_id, records, self._version, self._stop)
                break
            except (SinkError, OSError) as exc:
                delay = self._backoff(attempt)
                log.warning("batch_failed", error=str(exc), records=len(records), retry_in_seconds=round(delay, 3))
                attempt += 1
                if self._stop.wait(delay):
                    raise Interrupted("stop requested while a batch awaited a retry") from exc
        self._version = result.version
        if result.last_sequence_number is not None:
            self._checkpoint(result.last_sequence_number, result.last_record_second)
        self._metrics.batch_duration.observe(time.perf_counter() - started)

    def _end_shard(self) -> None:
        """Every record is settled: checkpoint SHARD_END, retrying until it is written or stopped."""
        failures = 0
        while not self._checkpoint(SHARD_END):
            if self._stop.wait(self._backoff(failures)):
                raise Interrupted("stop requested before SHARD_END could be checkpointed")
            failures += 1
        self.reached_shard_end = True
        log.info("shard_ended", version=self._version)
        self._on_shard_end(self.shard_id)

    def _checkpoint(self, position: str, record_second: int | None = None) -> bool:
        """Checkpoint ``position``; False on a transient failure (the next checkpoint covers it)."""
        self._position = position
        try:
            self._held.checkpoint(position, self._version, record_second)
        except LeaseLostError:
            self._metrics.checkpoints.labels(outcome="lease_lost").inc()
            raise
        except LeaseTableError as exc:
            # A crash before the next checkpoint only replays settled records: harmless.
            self._metrics.checkpoints.labels(outcome="error").inc()
            log.warning("checkpoint_failed", checkpoint=position, error=str(exc))
            return False
        self._metrics.checkpoints.labels(outcome="ok").inc()
        self._metrics.shard_progress.record_checkpoint(self.shard_id)
        log.debug("checkpointed", checkpoint=position, version=self._version)
        return True
