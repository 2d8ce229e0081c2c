"""Liveness and readiness, as the HTTP probes report them.

* Liveness (``/healthz``): this process's own loops are ticking, and no watched routine (``watch``:
  the lease renewal) has died or is stuck. It never depends on DynamoDB or OpenSearch being up — an
  outage of either must not turn into a restart storm.
* Readiness (``/readyz``): configuration loaded, stream resolved, lease table reachable at the
  last tick, the first shard sync done, and no named condition failing (``set_condition``: the
  sink unavailable, the dead-letter destination refusing writes).

The worker (and the start-up loop) report into one ``Health``; the probe server reads it.
Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Health:
    """Shared probe state. ``stall_after_seconds``: how long the loops may be silent while alive."""

    def __init__(self, stall_after_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stall_after = stall_after_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat = clock()
        self._synced = False
        self._problem: str | None = "starting"
        self._conditions: dict[str, str] = {}
        self._notes: dict[str, str] = {}
        self._watched: dict[str, Callable[[], str | None]] = {}

    def beat(self, problem: str | None = None) -> None:
        """A loop completed a step; ``problem`` says what keeps the worker from being ready, if anything."""
        with self._lock:
            self._last_beat = self._clock()
            self._problem = problem

    def set_condition(self, name: str, problem: str | None) -> None:
        """Set (or clear, with None) a named condition that keeps the worker from being ready."""
        with self._lock:
            if problem is None:
                self._conditions.pop(name, None)
            else:
                self._conditions[name] = problem

    def set_note(self, name: str, note: str | None) -> None:
        """Set (or clear) a named note that readiness shows without failing (e.g. backfill progress)."""
        with self._lock:
            if note is None:
                self._notes.pop(name, None)
            else:
                self._notes[name] = note

    def watch(self, name: str, problem: Callable[[], str | None]) -> None:
        """Make liveness fail while ``problem()`` says something (a routine that died or is stuck)."""
        with self._lock:
            self._watched[name] = problem

    def mark_synced(self) -> None:
        with self._lock:
            self._synced = True

    def liveness(self) -> tuple[bool, str]:
        with self._lock:
            silent = self._clock() - self._last_beat
            watched = list(self._watched.values())
        if silent > self._stall_after:
            return False, f"worker loops silent for {silent:.0f} s"
        problems = [problem for check in watched if (problem := check()) is not None]
        if problems:
            return False, "; ".join(problems)
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        with self._lock:
            if self._problem:
                return False, self._problem
            if self._conditions:
                return False, "; ".join(self._conditions[name] for name in sorted(self._conditions))
            if not self._synced:
                return False, "first shard sync not done"
            return True, "; ".join(["ok", *(self._notes[name] for name in sorted(self._notes))])
