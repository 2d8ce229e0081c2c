"""One batch of stream records → versions → OpenSearch → outcomes.

``BatchProcessor.process`` is what a shard consumer calls for every GetRecords page. It never
loses a record: each one ends APPLIED, STALE (a newer or equal version is indexed), filtered, or
durably dead-lettered; a failure to get there raises instead, and the caller retries the same batch
from the same starting version, which yields the same versions (consumer.pipeline.versioning). A record that
makes decoding or projection fail every time, a bug included, is dead-lettered with the exception's
class and message, so no record can stall its shard. Thread-safe: one processor serves all shard
consumers.

``process`` is ``prepare`` (pure CPU: decode, version, project, encode) then ``apply`` (the sink, the
dead letters, the metrics). A record is dead-lettered only when it is proven to be the cause (a
RecordError, or the same exception again when it is tried alone): a failure that passes, or one of
the process (MemoryError), is raised, and the caller tries the page again. A shard task prepares
its next page while the current one's ``_bulk`` is in flight (``apply``'s ``while_in_flight``), so
a catch-up's decoding does not add to OpenSearch's latency.
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from consumer.errors import RecordError
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.pipeline.bulk import BulkAction, Outcome
from consumer.pipeline.doc_ids import KeySchema
from consumer.pipeline.letters import DeadLetter, letter_for
from consumer.pipeline.projection import to_bulk_actions
from consumer.pipeline.projection_rules import PROJECT_ALL
from consumer.pipeline.records import StreamRecord, is_sequence_number
from consumer.pipeline.routes import Routing, single_route
from consumer.pipeline.versioning import next_version
from consumer.sink.dlq import DeadLetterSink, DurableDeadLetters
from consumer.sink.opensearch import APPLIED, OpenSearchSink, Result

log = structlog.get_logger(__name__)

PROOF_ATTEMPTS = 3  # a record that raises what no one anticipated this many times, alone, is poison
NO_ROUTE = "none"  # the route label of records that reach no index (filtered, or undecodable)
Outcomes = Counter[tuple[str, str, str]]  # (event name, outcome, route) → records


@dataclass(frozen=True)
class PreparedBatch:
    """A page made ready to send: its actions (one or two a record: ``consumer.pipeline.projection``)
    and their ``_bulk`` lines, the records to dead-letter, and the version clock after it. Immutable:
    applying it again (a retry) sends the same versions."""

    shard_id: str
    start_version: int
    actions: list[BulkAction]
    encoded: list[bytes]
    letters: tuple[DeadLetter, ...]
    filtered: Outcomes
    version: int
    last_sequence_number: str | None
    last_record_second: int | None
    # the records' outcomes when every action is applied (the common answer): counted here, so that a
    # page prepared while another is in flight does not count them in the gap between two requests
    applied: Outcomes = field(default_factory=Counter)


@dataclass(frozen=True)
class BatchResult:
    """Where the shard stands after a batch: checkpoint here with this clock value."""

    last_sequence_number: str | None
    version: int
    last_record_second: int | None = None
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (event name, outcome) → records


class BatchProcessor:
    """Applies batches of one table's stream records to the indices of its routes (``routing``; by
    default, every record to the sink's index).

    With ``parallelism`` > 1 (Lambda's ParallelizationFactor: concurrent requests *per shard*) a batch
    is split by document id into that many partitions, sent as concurrent ``_bulk`` requests: all
    changes of one item stay in one partition, in shard order, while different items go in parallel.
    The caller's thread sends the first partition and a pool of ``concurrent_batches × (parallelism
    − 1)`` threads the others, so as many shards as there are callers each get their ``parallelism``
    without queueing behind one another. The batch settles, and may be checkpointed, only when every
    partition has, so the checkpoint never passes a record with an unacknowledged predecessor. Call
    ``close()`` when done.
    """

    def __init__(
        self,
        key_schema: KeySchema,
        sink: OpenSearchSink,
        dead_letters: DeadLetterSink,
        metrics: Metrics,
        parallelism: int = 1,
        routing: Routing | None = None,
        keep_raw_letters: bool = False,
        health: Health | None = None,
        concurrent_batches: int = 1,
    ) -> None:
        if not 1 <= parallelism <= 10:
            raise ValueError(f"parallelism must be within 1 … 10, got {parallelism}")
        self._schema = key_schema
        self._sink = sink
        self._dead_letters = DurableDeadLetters(dead_letters, metrics, health)
        self._keep_raw = keep_raw_letters
        self._metrics = metrics
        self._parallelism = parallelism
        self._routing = routing or single_route(sink.index, sink.index, PROJECT_ALL)
        self._pool = (
            ThreadPoolExecutor(max_workers=concurrent_batches * (parallelism - 1), thread_name_prefix="bulk")
            if parallelism > 1
            else None
        )

    @property
    def routing(self) -> Routing:
        return self._routing

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def process(
        self, shard_id: str, raw_records: list[dict[str, Any]], start_version: int, stop: threading.Event
    ) -> BatchResult:
        """Apply ``raw_records`` (in shard order) with versions continuing from ``start_version``."""
        return self.apply(self.prepare(shard_id, raw_records, start_version), stop)

    def prepare(
        self,
        shard_id: str,
        raw_records: list[dict[str, Any]],
        start_version: int,
        skip_before: int | None = None,
    ) -> PreparedBatch:
        """Decode, version, project and encode ``raw_records`` (in shard order), with versions
        continuing from ``start_version``; touches nothing outside this process. Filtered records
        still tick the clock: versions must not depend on the rules in force. ``skip_before``: records
        of an earlier second are before the shard's start (a lease at LATEST: ``Lease.latest_anchor_at``)
        and count as filtered without ticking the clock.

        A record is dead-lettered only when it is proven to be the cause: a RecordError, or another
        exception that the record raises again when tried alone (``PROOF_ATTEMPTS`` times in all:
        decoding and projection are pure, so a bug fails every time, a passing fault does not).
        MemoryError is the process's, never the record's: it is raised, and the page is tried again."""
        actions: list[BulkAction] = []
        encoded: list[bytes] = []
        letters: list[DeadLetter] = []
        filtered: Outcomes = Counter()
        version = start_version
        last_second: int | None = None  # of the last record, when it decodes
        for raw in raw_records:
            before = version
            last_second = None
            try:
                record = StreamRecord.from_wire(raw)
                last_second = record.approximate_second
                if skip_before is not None and record.approximate_second < skip_before:
                    filtered[(record.event_name, "filtered", NO_ROUTE)] += 1
                    continue
                version = next_version(version, record.approximate_second)
                record_actions, lines = self._project(record, version)
            except RecordError as exc:
                letters.append(self._letter(shard_id, raw, str(exc)))
                continue
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - not the record's fault until proven: tried alone again
                version, outcome = self._retry_alone(shard_id, raw, before, exc)
                if isinstance(outcome, DeadLetter):
                    letters.append(outcome)
                    continue
                record, record_actions, lines = outcome
                last_second = record.approximate_second
            if not record_actions:
                filtered[(record.event_name, "filtered", NO_ROUTE)] += 1
            actions += record_actions
            encoded += lines
        last = raw_records[-1] if raw_records else None
        applied = Outcome.APPLIED._value_  # _value_: .value is a slow property
        return PreparedBatch(
            shard_id=shard_id,
            start_version=start_version,
            actions=actions,
            encoded=encoded,
            letters=tuple(letters),
            filtered=filtered,
            version=version,
            last_sequence_number=_sequence_number(last) if last is not None else None,
            last_record_second=last_second,
            applied=Counter([(a.record.event_name, applied, a.route) for a in actions if not a.companion]),
        )

    def _project(self, record: StreamRecord, version: int) -> tuple[list[BulkAction], list[bytes]]:
        """The record's actions and their ``_bulk`` lines. Raises RecordError for a document that is
        not JSON (a transform's result holding a set, an object, ...)."""
        actions = to_bulk_actions(record, self._schema, version, self._routing)
        try:
            return actions, self._sink.encode(actions)
        except TypeError as exc:  # orjson's JSONEncodeError is one
            raise RecordError(f"the document is not JSON: {exc}") from exc

    def _retry_alone(
        self, shard_id: str, raw: dict[str, Any], before: int, first: Exception
    ) -> tuple[int, tuple[StreamRecord, list[BulkAction], list[bytes]] | DeadLetter]:
        """Try one record that raised ``first`` again, alone, from clock value ``before``: the clock
        after it, and its record and action, or its dead letter when it fails every time (the record
        is the cause; the clock then ticks as it does for a RecordError: if the record decoded)."""
        sequence_number = _sequence_number(raw)
        error: Exception = first
        version = before
        for attempt in range(2, PROOF_ATTEMPTS + 1):
            log.warning(
                "record_processing_retried",
                shard_id=shard_id,
                sequence_number=sequence_number,
                attempt=attempt,
                error=f"{type(error).__name__}: {error}",
            )
            version = before
            try:
                record = StreamRecord.from_wire(raw)
                version = next_version(before, record.approximate_second)
                return version, (record, *self._project(record, version))
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - the same record failing again, alone
                error = exc
        log.error("record_processing_crashed", shard_id=shard_id, sequence_number=sequence_number, exc_info=error)
        return version, self._letter(shard_id, raw, f"{type(error).__name__}: {error}")

    def apply(
        self, batch: PreparedBatch, stop: threading.Event, while_in_flight: Callable[[], None] | None = None
    ) -> BatchResult:
        """Settle a prepared batch: every record applied, stale, filtered or durably dead-lettered.

        Raises Interrupted when ``stop`` is set during retries, and SinkError / OSError when
        the batch could not be settled; nothing of the batch may be checkpointed then, and the same
        ``batch`` may be applied again. ``while_in_flight``: work to run on this thread while the
        batch's first ``_bulk`` request is in flight (it may not run: see ``consumer.sink.in_flight``).
        """
        outcomes = Counter(batch.filtered)
        letters = [(letter, NO_ROUTE) for letter in batch.letters]
        results = self._apply(batch, stop, while_in_flight)
        if len(results) == len(batch.actions) == results.count(APPLIED):  # the common batch: counted already
            outcomes.update(batch.applied)
            return self._settled(batch, letters, outcomes, stop)
        poisoned: dict[int, BulkAction] = {}  # id(record) → its first poison action: one letter a record
        for action, (outcome, error) in zip(batch.actions, results, strict=True):
            if outcome is Outcome.POISON and id(action.record) not in poisoned:
                poisoned[id(action.record)] = action
                attempts = getattr(error, "attempts", 1)  # GaveUp errors say how many tries were made
                letter = self._letter(batch.shard_id, action.record.raw, error or "rejected", attempts)
                letters.append((letter, action.route))
        for action, (outcome, _) in zip(batch.actions, results, strict=True):
            record = action.record
            if action.companion or (poisoned and id(record) in poisoned):
                continue  # a record counts once: by its first action, or as dead-lettered
            outcomes[(record.event_name, outcome._value_, action.route)] += 1  # _value_: .value is a slow property
            if outcome is Outcome.STALE:
                log.debug(
                    "record_stale",
                    shard_id=batch.shard_id,
                    sequence_number=record.sequence_number,
                    doc_id=action.doc_id,
                    index=action.index,
                )
        return self._settled(batch, letters, outcomes, stop)

    def _settled(
        self, batch: PreparedBatch, letters: list[tuple[DeadLetter, str]], outcomes: Outcomes, stop: threading.Event
    ) -> BatchResult:
        """Dead-letter ``letters`` (durably, or raise), count ``outcomes``, and say where the shard stands."""
        self._dead_letter(letters, outcomes, stop)
        by_event: Counter[tuple[str, str]] = Counter()
        for (event, outcome, route), count in outcomes.items():
            self._metrics.records_processed.labels(event=event, outcome=outcome, route=route).inc(count)
            by_event[(event, outcome)] += count
        return BatchResult(batch.last_sequence_number, batch.version, batch.last_record_second, by_event)

    def _apply(
        self, batch: PreparedBatch, stop: threading.Event, while_in_flight: Callable[[], None] | None
    ) -> list[Result]:
        """Sink results in the order of the batch's actions, partitioned by document id when parallel."""
        actions, encoded = batch.actions, batch.encoded
        if self._pool is None or len(actions) < 2:
            return self._sink.apply(actions, stop, encoded, while_in_flight)
        partitions: list[list[int]] = [[] for _ in range(self._parallelism)]
        for i, action in enumerate(actions):
            partitions[zlib.crc32(action.doc_id.encode()) % self._parallelism].append(i)
        parts = [part for part in partitions if part]

        def send(part: list[int], work: Callable[[], None] | None = None) -> list[Result]:
            return self._sink.apply([actions[i] for i in part], stop, [encoded[i] for i in part], work)

        futures = [(part, self._pool.submit(send, part)) for part in parts[1:]]
        results: list[Result | None] = [None] * len(actions)
        for i, result in zip(parts[0], send(parts[0], while_in_flight), strict=True):
            results[i] = result
        for part, future in futures:
            for i, result in zip(part, future.result(), strict=True):  # re-raises a partition's failure
                results[i] = result
        return [result for result in results if result is not None]

    def _letter(self, shard_id: str, raw: dict[str, Any], error: str, attempts: int = 1) -> DeadLetter:
        return letter_for(shard_id, raw, error, self._routing.letter_rules, self._keep_raw, attempts)

    def _dead_letter(self, letters: list[tuple[DeadLetter, str]], outcomes: Outcomes, stop: threading.Event) -> None:
        """Write the letters (each with its record's route) durably, and count them."""
        if not letters:
            return
        self._dead_letters.write([letter for letter, _ in letters], stop)
        self._metrics.dead_lettered.inc(len(letters))
        for letter, route in letters:
            outcomes[(str(letter.record.get("eventName", "UNKNOWN")), "dead_lettered", route)] += 1
            log.warning(
                "record_dead_lettered",
                shard_id=letter.shard_id,
                sequence_number=letter.sequence_number,
                event_id=letter.record.get("eventID"),
                route=route,
                error=letter.error,
            )


def _sequence_number(raw: dict[str, Any]) -> str | None:
    value = (raw.get("dynamodb") or {}).get("SequenceNumber")
    return value if is_sequence_number(value) else None
