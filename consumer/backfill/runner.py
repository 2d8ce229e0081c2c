"""The backfill: every item of the table into the index, segment by segment, shared and resumable.

``BackfillRunner.run`` takes free segment leases (``consumer.backfill.segments``: unowned, or
expired on this process's clock) and scans each, page by page: every item is shaped exactly as the
stream path shapes it (``consumer.pipeline.repair.restore_item``: the same ids, routes, projection,
field rules, transforms and state filter) and written with the external version ``repair_version(read time of its page)``, which
loses to every change made after the page was read and beats every change made before it
(docs/versioning.md, "Backfill"). A document OpenSearch cannot hold is dead-lettered, never blocking
the segment. After each page is settled, the segment's checkpoint moves to the page's
``LastEvaluatedKey``; the checkpoint write proves the lease alive, and a heartbeat renews it while a
page is in flight. It returns once every segment of the backfill is done (by this process or others)
or the stop event is set.

Memory holds one page at a time. Not thread-safe: one runner per thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from consumer.backfill.scan import ScanPage, SegmentScan, read_ahead
from consumer.backfill.segments import decode_position, encode_position, parse_key
from consumer.errors import ConfigError, ConsumerError, Interrupted, LeaseLostError, LeaseTableError, RecordError
from consumer.leases.coordinator import ExpiryTracker, HeldLease
from consumer.leases.model import SHARD_END, Lease, renew_interval
from consumer.leases.table import LeaseTable
from consumer.observability.metrics import Metrics
from consumer.pipeline.bulk import Outcome
from consumer.pipeline.doc_ids import KeySchema, document_id
from consumer.pipeline.letters import DeadLetter
from consumer.pipeline.repair import RepairAction, repair_version, restore_item
from consumer.pipeline.routes import Routing
from consumer.sink.dlq import DurableDeadLetters
from consumer.sink.opensearch import OpenSearchSink

log = structlog.get_logger(__name__)

WAIT_FOR_OTHERS_SECONDS = 1.0


@dataclass
class BackfillTally:
    """What the backfill did, in this process."""

    items: int = 0
    applied: int = 0
    stale: int = 0
    filtered: int = 0
    dead_lettered: int = 0
    read_units: float = 0.0
    segments_done: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, outcome: str, count: int = 1) -> None:
        setattr(self, outcome, getattr(self, outcome) + count)


@dataclass(frozen=True)
class Progress:
    """The backfill as seen in the lease table: segments by state, and this process's tally."""

    total: int
    done: int
    running: int
    tally: BackfillTally


class BackfillRunner:
    """Runs a backfill's segments until all are done."""

    def __init__(
        self,
        schema: KeySchema,
        routing: Routing,
        scan: SegmentScan,
        sink: OpenSearchSink,
        dead_letters: DurableDeadLetters,
        leases: LeaseTable,
        worker_id: str,
        metrics: Metrics,
        failover_seconds: float = 10.0,
        on_progress: Callable[[BackfillTally], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._schema = schema
        self._routing = routing
        self._scan = scan
        self._sink = sink
        self._dead_letters = dead_letters
        self._leases = leases
        self._worker_id = worker_id
        self._metrics = metrics
        self._failover = failover_seconds
        self._on_progress = on_progress
        self._clock = clock
        self._expiry = ExpiryTracker(failover_seconds, clock)
        self.tally = BackfillTally()

    def run(self, stop: threading.Event) -> Progress:
        """Scan free segments until every one is done, or ``stop`` is set; the progress at the end."""
        while True:
            segments = [lease for lease in self._leases.list_leases() if lease.is_segment]
            progress = self._progress(segments)
            if progress.done == progress.total:  # every segment done (or no backfill at all)
                return progress
            free = self._free(segments)
            if free is None:
                if stop.wait(WAIT_FOR_OTHERS_SECONDS):  # others hold the rest: wait for them, or for expiry
                    return progress
                continue
            held = self._take(free)
            if held is not None:
                self._scan_segment(held, stop)
            if stop.is_set():
                return self._progress([lease for lease in self._leases.list_leases() if lease.is_segment])

    def _free(self, segments: list[Lease]) -> Lease | None:
        expired = self._expiry.observe(segments)
        candidates = [s for s in segments if not s.is_ended and (s.owner is None or expired[s.lease_key])]
        return min(candidates, key=lambda s: parse_key(s.lease_key), default=None)

    def _take(self, lease: Lease) -> HeldLease | None:
        try:
            taken = self._leases.take(lease, self._worker_id)
        except (LeaseLostError, LeaseTableError):
            return None  # another process was faster, or the table hiccuped: look again
        log.info("backfill_segment_taken", segment=lease.lease_key, checkpoint=taken.checkpoint[:120])
        return HeldLease(taken, self._leases, self._clock)

    def _scan_segment(self, held: HeldLease, stop: threading.Event) -> None:
        segment, total = parse_key(held.shard_id)
        heartbeat = _Heartbeat(held, renew_interval(self._failover))
        heartbeat.start()
        try:
            start = decode_position(held.lease.checkpoint)
            for page in read_ahead(lambda halt: self._scan.pages(segment, total, start, halt), stop):
                self._apply(held.shard_id, page, stop)
                held.checkpoint(encode_position(page.last_evaluated_key), 0)
                self._report()
                if stop.is_set() and page.last_evaluated_key is not None:
                    raise Interrupted("stop requested between two pages of a backfill segment")
            self.tally.segments_done += 1
            log.info("backfill_segment_done", segment=held.shard_id)
            held.release()
        except LeaseLostError:
            log.warning("backfill_segment_lost", segment=held.shard_id)
        except Interrupted:
            log.info("backfill_segment_interrupted", segment=held.shard_id, checkpoint=held.lease.checkpoint[:120])
            self._release_quietly(held)  # another process resumes from the checkpoint at once
        except ConfigError:
            raise  # the table or the permissions are wrong: no segment can succeed
        except ConsumerError as exc:
            log.warning("backfill_segment_failed", segment=held.shard_id, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - its checkpoint stands; the lease expires and the segment is resumed
            self._metrics.routine_failures.labels(routine="backfill").inc()
            log.error(
                "backfill_segment_failed",
                segment=held.shard_id,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=exc,
            )
        finally:
            heartbeat.stop()

    @staticmethod
    def _release_quietly(held: HeldLease) -> None:
        with contextlib.suppress(LeaseLostError, LeaseTableError):  # else it expires instead
            held.release()

    def _apply(self, segment: str, page: ScanPage, stop: threading.Event) -> None:
        """Write one page's items with the page's version; dead-letter what OpenSearch cannot hold."""
        version = repair_version(page.read_at)
        actions: list[RepairAction] = []
        letters: list[DeadLetter] = []
        for item in page.items:
            try:
                action = restore_item(self._schema, item, self._routing, version)
            except RecordError as exc:
                letters.append(_letter(segment, item, self._schema, str(exc)))
                continue
            if action is None:
                self.tally.add("filtered")
                self._metrics.backfill_items.labels(outcome="filtered").inc()
                continue
            actions.append(action)
        self.tally.add("items", len(page.items))
        self.tally.read_units += page.read_units
        self._metrics.backfill_read_units.inc(page.read_units)
        by_id: dict[str, dict] | None = None  # the page's items by document id, once one is refused
        for action, (outcome, error) in zip(actions, self._sink.apply(actions, stop), strict=True):
            if outcome is Outcome.POISON:
                by_id = dict(_ids(self._schema, page.items)) if by_id is None else by_id
                letters.append(_letter(segment, by_id[action.doc_id], self._schema, error or "rejected"))
            else:
                self.tally.add(outcome.value)
                self._metrics.backfill_items.labels(outcome=outcome.value).inc()
        if letters:
            self._dead_letters.write(letters, stop)
            self.tally.add("dead_lettered", len(letters))
            self._metrics.backfill_items.labels(outcome="dead_lettered").inc(len(letters))
            self._metrics.dead_lettered.inc(len(letters))

    def _progress(self, segments: list[Lease]) -> Progress:
        done = sum(1 for s in segments if s.checkpoint == SHARD_END)
        running = sum(1 for s in segments if s.owner and s.checkpoint != SHARD_END)
        for state, count in (("done", done), ("running", running), ("waiting", len(segments) - done - running)):
            self._metrics.backfill_segments.labels(state=state).set(count)
        return Progress(len(segments), done, running, self.tally)

    def _report(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.tally)


def _ids(schema: KeySchema, items: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for item in items:
        try:
            out.append((document_id(schema, item), item))
        except RecordError:
            continue
    return out


def _letter(segment: str, item: dict, schema: KeySchema, error: str) -> DeadLetter:
    keys = {attribute.name: item[attribute.name] for attribute in schema.attributes if attribute.name in item}
    return DeadLetter(segment, None, error, {"eventName": "BACKFILL", "dynamodb": {"Keys": keys}})


class _Heartbeat:
    """Renews a held segment lease while a page is in flight (a checkpoint renews it as well). A
    renewal that fails is tried again at the next beat; only a lost lease ends it."""

    def __init__(self, held: HeldLease, interval: float) -> None:
        self._held = held
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="backfill-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            if time.monotonic() - self._held.last_written < self._interval:
                continue
            try:
                self._held.try_renew()
            except LeaseLostError:
                return  # the segment's next checkpoint fails too, and the scan stops
            except Exception as exc:  # noqa: BLE001 - not renewed this time (LeaseTableError, credentials, …): next beat
                log.warning(
                    "backfill_segment_renew_failed", segment=self._held.shard_id, error=f"{type(exc).__name__}: {exc}"
                )
