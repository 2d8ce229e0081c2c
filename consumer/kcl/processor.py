"""``ShardProcessor``: one shard's records under the KCL MultiLangDaemon, through the same
decode → version → project → bulk path as the native workers (``consumer.processor``).

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
retried with backoff; ``ShutdownException`` / ``InvalidStateException`` mean the lease is gone: the
processor stops checkpointing and waits for ``leaseLost``. Single-threaded: the protocol is.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from amazon_kclpy.kcl import CheckpointError
from amazon_kclpy.v3.processor import RecordProcessorBase

from consumer.backoff import backoff_delay
from consumer.errors import ConsumerError, Interrupted
from consumer.kcl.records import wire_record
from consumer.kcl.versions import KclVersionStore
from consumer.processor import BatchProcessor

log = structlog.get_logger(__name__)

RETRIED_CHECKPOINT_ERRORS = frozenset({"ThrottlingException", "KinesisClientLibDependencyException"})
CHECKPOINT_ATTEMPTS = 8
SHARD_END = "SHARD_END"


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
        start = self._versions.start(self.shard_id)
        self.version = start.version
        structlog.contextvars.bind_contextvars(shard_id=self.shard_id)
        log.info("kcl_shard_initialized", checkpoint=self.checkpoint, version=self.version, reason=start.reason)

    def process_records(self, process_records_input: Any) -> None:
        records = process_records_input.records
        if not records or not self.lease_held:
            return
        wire = [wire_record(record.data, record.sequence_number) for record in records]
        result = self._settle(wire)
        last = records[-1].sequence_number
        if self._store(result.version, last):
            self._checkpoint(process_records_input.checkpointer, last)
        self.version = result.version

    def shard_ended(self, shard_ended_input: Any) -> None:
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
                if error not in RETRIED_CHECKPOINT_ERRORS or attempt == CHECKPOINT_ATTEMPTS - 1:
                    self.lease_held = False
                    log.warning("kcl_checkpoint_refused", sequence_number=sequence_number, error=error)
                    return
                log.info("kcl_checkpoint_retried", sequence_number=sequence_number, error=error, attempt=attempt + 1)
                threading.Event().wait(backoff_delay(attempt, self._retry_base, 5.0))
                continue
            self.checkpoint = sequence_number or SHARD_END
            return
