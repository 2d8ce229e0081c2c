"""One read budget per worker: when any shard is throttled, every shard of the worker backs off.

DynamoDB Streams throttle GetRecords per shard (more than two readers) and per account; a worker
whose shards each retried on their own would keep hammering. ``ThrottleGate`` keeps one
"not before" instant for the whole worker, pushed out with exponential backoff and full jitter
on every throttle and reset by the next successful read. Thread-safe.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from consumer.aws.backoff import backoff_delay


class ThrottleGate:
    """Shared backoff for the GetRecords calls of all shard consumers of one worker."""

    def __init__(
        self,
        base_seconds: float,
        cap_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._base = base_seconds
        self._cap = cap_seconds
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._not_before = 0.0
        self._consecutive = 0

    def throttled(self) -> float:
        """Record a throttle; returns the delay every reader now waits."""
        with self._lock:
            delay = backoff_delay(self._consecutive, self._base, self._cap, self._rng)
            self._consecutive += 1
            self._not_before = max(self._not_before, self._clock() + delay)
            return delay

    def succeeded(self) -> None:
        with self._lock:
            self._consecutive = 0

    def wait_time(self) -> float:
        """Seconds a reader should wait before its next call (0 when not throttled)."""
        with self._lock:
            return max(0.0, self._not_before - self._clock())
