"""The worker's view of the lease table, read a page per tick.

Reading the whole table on every tick costs its read units every few seconds and, on a large or busy
table, most of the tick: a thousand leases take moto 0.7 s to scan alone, 3–4 s under a pool's load.
The view reads the table in *passes* instead: each ``refresh`` reads the next page of one Scan, of
``ceil(leases / PASS_PAGES)`` leases (at least ``MIN_PAGE_ITEMS``), and merges it in; when a pass
reaches the table's end, the leases it did not see are dropped (deleted by someone). A table of up to
``MIN_PAGE_ITEMS`` leases is one page: it is read whole once every ``PASS_PAGES`` refreshes, the
others reading nothing (a Scan request costs at least half a read unit however few leases it
returns), so every lease of any table is re-read once a pass, at the same cadence.

While the pool is moving (this worker's leases changed lately: it took, lost or ended some; or its
last cycle wanted to take or steal a lease), the worker asks for the whole table every tick, as it did before the view existed: balancing decides
from every owner's count, and a count a pass old would make it steal too many or too few. A
still pool, the usual state, is read a page per tick.

Guarantees:

* the first refresh reads the whole table, so no decision is ever taken from a part of it;
* every lease in the view was read from the table within the last pass (about ``PASS_PAGES``
  refreshes), or written by this worker since (``merge``);
* ``ViewRead.read`` is what this refresh read, so that expiry is judged on evidence only: a counter
  read unchanged across ``failover`` seconds (``consumer.leases.coordinator.ExpiryTracker``).

The view may be a pass behind the table. Every decision taken from it is a conditional write, which
fails on a stale counter, except starting a task, which must never start a child before its parent:
a parent the view does not show is read directly before the child starts (``consumer.runtime.worker``).
Shard sync needs the whole table at once (``consumer.shards.lineage``) and reads it itself.

Thread-safe: the tick refreshes; shard sync and shard ends merge what they create or take.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from consumer.leases.model import Lease
from consumer.leases.table import LeaseTable, ScanCursor

PASS_PAGES = 3  # refreshes per pass over a large table: a third of it per tick
MIN_PAGE_ITEMS = 200  # a table of up to this many leases is read whole every refresh


@dataclass(frozen=True)
class ViewRead:
    """One refresh: every lease in the view, those read from the table by this refresh, and whether
    it read the whole table (then ``leases`` is the table as of now)."""

    leases: list[Lease]
    read: list[Lease]
    whole: bool


class LeaseView:
    """The leases of one table as last read, a page at a time."""

    def __init__(self, table: LeaseTable, pass_pages: int = PASS_PAGES, min_page_items: int = MIN_PAGE_ITEMS) -> None:
        self._table = table
        self._pass_pages = pass_pages
        self._min_page_items = min_page_items
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}
        self._cursor: ScanCursor | None = None
        self._this_pass: set[str] = set()  # keys read or merged since the pass began
        self._complete = False  # a whole pass has been read
        self._unread = 0  # refreshes in a row that read nothing: the table fits one page, read once a pass

    def refresh(self, whole: bool = False) -> ViewRead:
        """Read the next page and merge it in; ``whole``: read the table to its end from a fresh pass
        (so does the first call). Raises LeaseTableError (the view then keeps what it read)."""
        read: list[Lease] = []
        with self._lock:
            whole = whole or not self._complete
            if whole:
                self._cursor = None
            elif len(self._leases) <= self._min_page_items and self._unread + 1 < self._pass_pages:
                self._unread += 1  # a one-page table: its pass is one read, every PASS_PAGES refreshes
                return ViewRead(sorted(self._leases.values(), key=_key), [], False)
            self._unread = 0
        while True:
            limit = None if whole else self._page_items()  # a whole read takes DynamoDB's 1 MB pages
            page, cursor = self._table.scan_page(self._cursor, limit, consistent=False)
            read.extend(page)
            with self._lock:
                for lease in page:
                    self._leases[lease.lease_key] = lease
                self._this_pass.update(lease.lease_key for lease in page)
                self._cursor = cursor
                if cursor is None:  # the pass is done: what it did not see is gone
                    self._leases = {key: lease for key, lease in self._leases.items() if key in self._this_pass}
                    self._this_pass = set()
                    self._complete = True
                if cursor is None or not whole:
                    return ViewRead(sorted(self._leases.values(), key=_key), read, whole)

    def merge(self, leases: Iterable[Lease]) -> None:
        """Leases this worker just wrote (created or took): the view shows them before it reads them."""
        with self._lock:
            for lease in leases:
                self._leases[lease.lease_key] = lease
                self._this_pass.add(lease.lease_key)

    def _page_items(self) -> int:
        return max(self._min_page_items, math.ceil(len(self._leases) / self._pass_pages))


def _key(lease: Lease) -> str:
    return lease.lease_key
