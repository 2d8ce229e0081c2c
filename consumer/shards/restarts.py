"""When a shard task that failed starts again, and when its worker gives the shard up (pure).

A task that fails (``ShardTask._fail``: an exception nobody anticipated) ends, and its position
with it; the worker starts a new task from the lease's checkpoint after a backoff (exponential with
full jitter, from ``retry_base`` up to ``retry_cap``), so the same records are tried again. A shard
that keeps failing without settling a page for ``give_up_after`` seconds (and at least
``MIN_ATTEMPTS`` times) is given up: the worker releases its lease, so that another worker tries it,
and does not take it again for ``cool_down`` seconds (unless nobody else does, it comes back to it
then). A task that settles a page clears its shard's record. While any shard is failing,
``problem()`` says which, for readiness; every failure is also logged and counted by the task.

Thread-safe.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from consumer.aws.backoff import backoff_delay

MIN_ATTEMPTS = 3


@dataclass
class _Failing:
    since: float
    attempts: int
    error: str
    restart_at: float


class TaskRestarts:
    """The failing shards of one worker, and the ones it gave up lately."""

    def __init__(
        self,
        retry_base: float,
        retry_cap: float,
        give_up_after: float,
        cool_down: float,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._give_up_after = give_up_after
        self._cool_down = cool_down
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._failing: dict[str, _Failing] = {}
        self._given_up: dict[str, float] = {}  # shard → until when it is not taken again

    def failed(self, shard_id: str, error: BaseException, progressed: bool) -> bool:
        """Record a failed task; True when the shard is to be given up now (its lease released)."""
        now = self._clock()
        text = f"{type(error).__name__}: {error}"[:300]
        with self._lock:
            failing = self._failing.get(shard_id)
            if failing is None or progressed:
                failing = self._failing[shard_id] = _Failing(now, 0, text, now)
            failing.attempts += 1
            failing.error = text
            if failing.attempts >= MIN_ATTEMPTS and now - failing.since >= self._give_up_after:
                del self._failing[shard_id]
                self._given_up[shard_id] = now + self._cool_down
                return True
            delay = backoff_delay(failing.attempts - 1, self._retry_base, self._retry_cap, self._rng)
            failing.restart_at = now + delay
            return False

    def progressed(self, shard_id: str) -> None:
        """The shard's task settled a page: it is no longer failing."""
        with self._lock:
            self._failing.pop(shard_id, None)

    def forget(self, shard_id: str) -> None:
        """The shard is no longer this worker's (lost, ended, released)."""
        with self._lock:
            self._failing.pop(shard_id, None)

    def may_start(self, shard_id: str) -> bool:
        """Whether a task for the shard may start now (its backoff, if it failed, is over)."""
        with self._lock:
            failing = self._failing.get(shard_id)
            return failing is None or self._clock() >= failing.restart_at

    def avoided(self) -> frozenset[str]:
        """Shards given up lately: not to be taken again yet."""
        now = self._clock()
        with self._lock:
            self._given_up = {shard: until for shard, until in self._given_up.items() if until > now}
            return frozenset(self._given_up)

    def failing(self) -> int:
        with self._lock:
            return len(self._failing)

    def problem(self) -> str | None:
        """What readiness says while shards are failing; None when none is."""
        now = self._clock()
        with self._lock:
            if not self._failing:
                return None
            shard, first = min(self._failing.items(), key=lambda item: item[1].since)
        return (
            f"{len(self._failing)} shard(s) failing and retried from their checkpoints; {shard} for "
            f"{now - first.since:.0f} s ({first.attempts} attempts): {first.error}"
        )
