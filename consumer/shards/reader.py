"""Where a shard task reads: its iterator, the pages read ahead of the one being applied (the next
one prepared while the current one's ``_bulk`` is in flight), the page in hand charged to the
worker's byte budget, and a ``LATEST`` lease's anchor.

The reader runs ahead of what is settled: its iterator and its pages may be past records not yet
applied. It never decides what a failure means; it raises, and the task (``consumer.shards.task``)
decides, ending with the reader when in doubt. Stepped by one thread at a time, with its reads on the
worker's prefetch threads.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections import deque
from concurrent.futures import Executor, Future

import structlog

from consumer.aws.clock import AwsClock
from consumer.errors import StreamError
from consumer.leases.coordinator import HeldLease
from consumer.leases.model import LATEST, TRIM_HORIZON
from consumer.shards.api import AFTER_SEQUENCE_NUMBER, RecordsPage, StreamApi
from consumer.shards.budget import ByteBudget
from consumer.sink.processor import BatchProcessor, PreparedBatch

log = structlog.get_logger(__name__)

LATEST_ANCHOR_MARGIN_SECONDS = 5  # a LATEST lease's anchor is this much before its first iterator
READ_AHEAD_PAGES = 2  # pages read ahead of the one being applied: the next (prepared) and the one after
FULL_PAGE_BYTES = 900_000  # a GetRecords answer this large hit the 1 MB limit: more records wait


class ShardReader:
    """Reads one held shard's pages, ahead of the task when it may."""

    def __init__(
        self,
        held: HeldLease,
        *,
        stream_arn: str,
        api: StreamApi,
        processor: BatchProcessor,
        budget: ByteBudget,
        prefetch: Executor,
        aws_clock: AwsClock,
        max_records: int,
    ) -> None:
        self._held = held
        self._stream_arn = stream_arn
        self._api = api
        self._processor = processor
        self._budget = budget
        self._prefetch = prefetch
        self._aws_clock = aws_clock
        self._max_records = max_records
        self.iterator: str | None = None  # None: get one after the last settled record
        self._read_ahead: deque[Future[RecordsPage]] = deque()  # the next pages, being read, in order
        # the prefetched page, prepared while the last page's _bulk was in flight
        self._next_prepared: PreparedBatch | None = None
        self._page_bytes = 0  # bytes of the page in hand (read, not settled), charged to the budget
        self.skip_before: int | None = None  # reading a LATEST lease from TRIM_HORIZON: its anchor second

    @property
    def shard_id(self) -> str:
        return self._held.shard_id

    @property
    def reading_ahead(self) -> bool:
        return bool(self._read_ahead)

    def read(self, position: str) -> tuple[RecordsPage, PreparedBatch | None]:
        """The next page (prefetched, perhaps prepared, or read now after ``position``, the last
        settled record or a sentinel), charged to the budget. Raises StreamError (after a failed
        read ahead, every page read past it is dropped) and LeaseTableError (anchoring a LATEST
        lease)."""
        if self._read_ahead:
            future = self._read_ahead.popleft()
            prepared, self._next_prepared = self._next_prepared, None
            try:
                page = future.result()  # charged to the budget by the read
            except StreamError:
                self.discard_read_ahead()  # pages after a failed read follow an iterator now dropped
                raise
            self._page_bytes = page.size_bytes
            return page, prepared
        self.iterator = self.iterator or self._acquire_iterator(position)
        page = self._api.get_records(self.iterator, self._max_records)
        self._budget.charge(page.size_bytes)
        self._page_bytes = page.size_bytes
        return page, None

    def read_ahead(self) -> bool:
        """Have the next page read while this one is applied (already under way, or started now when
        the budget has room); whether it is."""
        return bool(self._read_ahead) or (self.iterator is not None and self._start_read(self.iterator))

    def prepare_next(self, version: int) -> None:
        """Run while a page's ``_bulk`` is in flight: wait for the next page's read, prepare it from
        clock value ``version`` and, when it is full (more records wait behind it), start reading the
        page after it. A failed read is left for ``read`` to raise."""
        if not self._read_ahead or self._next_prepared is not None:
            return
        try:
            page = self._read_ahead[0].result()
        except StreamError:
            return
        if not page.records:
            return
        self._next_prepared = self._processor.prepare(self.shard_id, page.records, version, self.skip_before)
        full = is_full_page(len(page.records), page.size_bytes, self._max_records)
        if full and page.next_iterator is not None and len(self._read_ahead) == 1:  # none read past it yet
            self._start_read(page.next_iterator)

    def release_page(self) -> None:
        """The page in hand is settled (or given up): its bytes leave the budget."""
        size, self._page_bytes = self._page_bytes, 0
        if size:
            self._budget.release(size)

    def discard_read_ahead(self) -> None:
        """Drop the pages read ahead (their bytes leave the budget once their reads end)."""
        self._next_prepared = None
        while self._read_ahead:
            future = self._read_ahead.popleft()
            with contextlib.suppress(Exception):
                self._budget.release(future.result(timeout=30).size_bytes)

    def _start_read(self, iterator: str) -> bool:
        """Read the page at ``iterator`` on a prefetch thread, when the budget has room."""
        if len(self._read_ahead) >= READ_AHEAD_PAGES or not self._budget.has_room():
            return False
        api, budget, limit = self._api, self._budget, self._max_records

        def read() -> RecordsPage:
            page = api.get_records(iterator, limit)
            budget.charge(page.size_bytes)
            return page

        self._read_ahead.append(self._prefetch.submit(contextvars.copy_context().run, read))
        return True

    def _acquire_iterator(self, position: str) -> str:
        """An iterator just after ``position`` (or at the initial position)."""
        if position == LATEST:
            return self._latest_iterator()
        self.skip_before = None
        if position == TRIM_HORIZON:
            iterator = self._api.get_shard_iterator(self._stream_arn, self.shard_id, TRIM_HORIZON)
        else:
            iterator = self._api.get_shard_iterator(self._stream_arn, self.shard_id, AFTER_SEQUENCE_NUMBER, position)
        log.info("shard_iterator_acquired", position=position)
        return iterator

    def _latest_iterator(self) -> str:
        """An iterator for a lease still at LATEST (nothing checkpointed yet).

        A fresh LATEST iterator taken again — after a failed read, or by the next owner after a
        handover — would skip every record written since the first one was taken, records the first
        reader may never have settled. So the first reader *anchors* the lease before taking its
        LATEST iterator: it records a second no later than that moment on AWS's clock
        (``LATEST_ANCHOR_MARGIN_SECONDS`` earlier). Every later reader reads the shard from
        TRIM_HORIZON and skips only the records of earlier seconds: the records it applies are a
        superset of the first reader's, and their versions are at least as high (docs/versioning.md).
        """
        anchor = self._held.lease.latest_anchor_at
        if anchor is not None:
            self.skip_before = anchor
            iterator = self._api.get_shard_iterator(self._stream_arn, self.shard_id, TRIM_HORIZON)
            log.info("shard_iterator_acquired", position=TRIM_HORIZON, skipping_records_before_second=anchor)
            return iterator
        anchor = math.floor(self._aws_clock.read_time(LATEST_ANCHOR_MARGIN_SECONDS))
        self._held.anchor_latest(anchor)
        iterator = self._api.get_shard_iterator(self._stream_arn, self.shard_id, LATEST)
        # logged once acquired: a change written after this event is read (tests wait for it)
        log.info("shard_iterator_acquired", position=LATEST, anchor_second=anchor)
        return iterator


def is_full_page(records: int, size_bytes: int, max_records: int) -> bool:
    """Whether a page of ``records`` (``size_bytes`` on the wire) stopped at a read's limit, by count
    or by the 1 MB answer size: more records wait behind it."""
    return records >= max_records or size_bytes >= FULL_PAGE_BYTES
