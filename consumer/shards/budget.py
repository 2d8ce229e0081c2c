"""A worker-wide bound on the bytes of pages read but not yet settled (backpressure).

Every GetRecords page a worker holds (read, waiting or in flight to OpenSearch) is charged to one
``ByteBudget`` until its batch settles. A read may start only while the charge is below the limit
(``wait_for_room``), so at the bound reads pause and resume as batches settle: nothing is dropped,
and memory stays within the limit plus one page per reading thread (a page is at most 1 MB).

Thread-safe.
"""

from __future__ import annotations

import threading


class ByteBudget:
    """Bytes charged by held pages, against a limit."""

    def __init__(self, limit_bytes: int) -> None:
        self._limit = limit_bytes
        self._used = 0
        self._peak = 0
        self._room = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    @property
    def peak(self) -> int:
        """The most bytes held at once (for benchmarks and tests)."""
        return self._peak

    @property
    def limit(self) -> int:
        return self._limit

    def has_room(self) -> bool:
        return self._used < self._limit

    def wait_for_room(self, stop: threading.Event, timeout: float) -> bool:
        """Wait until a read may start; False when ``timeout`` passed first or ``stop`` is set."""
        with self._room:
            return self._room.wait_for(lambda: self._used < self._limit or stop.is_set(), timeout) and not stop.is_set()

    def charge(self, size: int) -> None:
        with self._room:
            self._used += size
            self._peak = max(self._peak, self._used)

    def release(self, size: int) -> None:
        with self._room:
            self._used = max(0, self._used - size)
            self._room.notify_all()
