"""``ShardProcessor``: one shard's records under the KCL MultiLangDaemon, through the same
decode → version → project → bulk path as the native workers (``consumer.sink.processor``).

Per message:

* ``initialize``: the clock starts where ``consumer.kcl.versions`` says (the stored version, or the
  parents' final one).
* ``processRecords``: the batch is applied and settled (applied, stale, filtered or durably
  dead-lettered, exactly as a native worker settles it); then the clock is stored on the lease
  item, and only then is the KCL asked to checkpoint at the batch's last record. A batch that cannot
  be settled within ``CDC_KCL_BATCH_TIMEOUT_SECONDS`` (an OpenSearch outage that lasts) raises
  ``BatchTimeout``: the process exits non-zero, the daemon stops, and whatever restarts it resumes
  from the last checkpoint; nothing is skipped.
* ``shardEnded``: the final clock is stored (``SHARD_END``) and the shard checkpointed at its end, so
  the children start above it.
* ``shutdownRequested``: nothing is in flight between messages; the last checkpoint stands.
* ``leaseLost``: nothing (another processor has the shard; checkpointing is no longer possible).

A checkpoint refused with ``ThrottlingException`` or ``KinesisClientLibDependencyException`` is
retried with backoff; when the refusals outlast ``CHECKPOINT_ATTEMPTS`` the batch stays applied and
not checkpointed, and the next batch's checkpoint covers it (checkpoints are cumulative).
``ShutdownException`` / ``InvalidStateException``, or a version store refused because another
processor checkpointed, mean the lease is gone: the processor stops storing versions and
checkpointing, and waits for ``leaseLost``. Whatever happens, a batch the daemon hands over is
applied before it is answered: a record is never acknowledged unapplied (a zombie's writes lose to
the new owner's by version, docs/versioning.md). Single-threaded: the protocol is.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from amazon_kclpy.kcl import CheckpointError
from amazon_kclpy.v3.processor import RecordProcessorBase

from consumer.aws.backoff import backoff_delay
from consumer.errors import ConsumerError, Interrupted
from consumer.kcl.records import wire_record
from consumer.kcl.versions import KclVersionStore
from consumer.leases.model import SHARD_END  # the KCL's checkpoint at a shard's end, the same word as ours
from consumer.sink.processor import BatchProcessor

log = structlog.get_logger(__name__)

RETRIED_CHECKPOINT_ERRORS = frozenset({"ThrottlingException", "KinesisClientLibDependencyException"})
CHECKPOINT_ATTEMPTS = 8


class BatchTimeout(ConsumerError):
    """A batch could not be settled in time: the process must end (non-zero) without checkpointing."""


class ShardProcessor(RecordProcessorBase):
    """An amazon-kclpy v3 record processor for one shard."""

    def __init__(
        self, batches: BatchProcessor, versions: KclVersionStore, batch_timeout_seconds: float, retry_base: float = 0.1
    ) -> None:
        self._batches = batches
        self._versions = versions
        self._timeout = batch_timeout_seconds
        self._retry_base = retry_base
        self.shard_id = ""
        self.version = 0
        self.checkpoint = ""  # the KCL checkpoint the next batch starts from
        self.lease_held = True

    def initialize(self, initialize_input: Any) -> None:
        self.shard_id = initialize_input.shard_id
        self.checkpoint = str(initialize_input.sequence_number)
        start = self._versions.start(self.shard_id)  # also the owner its version writes are fenced by
        self.version = start.version
        structlog.contextvars.bind_contextvars(shard_id=self.shard_id)
        log.info("kcl_shard_initialized", checkpoint=self.checkpoint, version=self.version, reason=start.reason)

    def process_records(self, process_records_input: Any) -> None:
        records = process_records_input.records
        if not records:
            return
        wire = [wire_record(record.data, record.sequence_number) for record in records]
        result = self._settle(wire)
        self.version = result.version
        if not self.lease_held:
            log.warning("kcl_batch_applied_without_lease", records=len(records), checkpoint=self.checkpoint)
            return
        last = records[-1].sequence_number
        if self._store(result.version, last):
            self._checkpoint(process_records_input.checkpointer, last)

    def shard_ended(self, shard_ended_input: Any) -> None:
        if not self.lease_held:
            log.warning("kcl_shard_end_not_checkpointed", reason="the lease was lost", checkpoint=self.checkpoint)
            return
        if self._store(self.version, SHARD_END):
            self._checkpoint(shard_ended_input.checkpointer, None)
            log.info("kcl_shard_ended", version=self.version)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        log.info("kcl_shutdown_requested", checkpoint=self.checkpoint)

    def lease_lost(self, lease_lost_input: Any) -> None:
        self.lease_held = False
        log.info("kcl_lease_lost", checkpoint=self.checkpoint)

    def _settle(self, wire: list[dict[str, Any]]) -> Any:
        stop = threading.Event()
        timer = threading.Timer(self._timeout, stop.set)
        timer.daemon = True
        timer.start()
        try:
            return self._batches.process(self.shard_id, wire, self.version, stop)
        except Interrupted as exc:
            raise BatchTimeout(
                f"the batch of {len(wire)} records of {self.shard_id} was not settled within "
                f"{self._timeout:.0f} s (CDC_KCL_BATCH_TIMEOUT_SECONDS): is OpenSearch down? Exiting without "
                "checkpointing; the daemon's restart resumes from the last checkpoint"
            ) from exc
        finally:
            timer.cancel()

    def _store(self, version: int, at: str) -> bool:
        if self._versions.save(self.shard_id, version, at, self.checkpoint):
            return True
        self.lease_held = False
        log.warning("kcl_lease_taken_over", checkpoint=self.checkpoint, detail="another processor checkpointed")
        return False

    def _checkpoint(self, checkpointer: Any, sequence_number: str | None) -> None:
        for attempt in range(CHECKPOINT_ATTEMPTS):
            try:
                checkpointer.checkpoint(sequence_number)
            except CheckpointError as exc:
                error = str(exc.value)
                if error not in RETRIED_CHECKPOINT_ERRORS:
                    self.lease_held = False  # the lease is gone
                    log.warning("kcl_checkpoint_refused", sequence_number=sequence_number, error=error)
                    return
                if attempt == CHECKPOINT_ATTEMPTS - 1:
                    # The batch is applied and its version stored; the next checkpoint covers it.
                    log.warning(
                        "kcl_checkpoint_postponed", sequence_number=sequence_number, error=error, attempts=attempt + 1
                    )
                    return
                log.info("kcl_checkpoint_retried", sequence_number=sequence_number, error=error, attempt=attempt + 1)
                threading.Event().wait(backoff_delay(attempt, self._retry_base, 5.0))
                continue
            self.checkpoint = sequence_number or SHARD_END
            return
