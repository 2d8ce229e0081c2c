"""Tombstone reaping, a routine of the worker: every ``CDC_TOMBSTONE_REAP_INTERVAL_SECONDS`` one
pass of ``consumer.sink.reaper`` on a thread of its own (a full page: the next pass at the next tick).
A pass that fails is said and tried again at the next interval. Thread-safe: the tick starts
passes; one runs at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from consumer.errors import ConsumerError
from consumer.observability.metrics import Metrics
from consumer.observability.routines import routine_failed

log = structlog.get_logger(__name__)


class ReapingRoutine:
    """Runs ``reap`` (one pass; True when more is left) when due, one pass at a time."""

    def __init__(
        self,
        *,
        reap: Callable[[], bool],
        interval: float,
        metrics: Metrics,
        context: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reap = reap
        self._interval = interval
        self._metrics = metrics
        self._context = context
        self._clock = clock
        self._next = 0.0
        self._running: threading.Thread | None = None

    def maybe_start(self) -> None:
        """Start a pass on its own thread when due and none is running; never blocks."""
        if self._clock() < self._next or (self._running is not None and self._running.is_alive()):
            return
        self._next = self._clock() + self._interval
        self._running = threading.Thread(target=self._run_pass, name="tombstone-reaper", daemon=True)
        self._running.start()

    def _run_pass(self) -> None:
        self._context()
        try:
            if self._reap():
                self._next = 0.0  # the page was full: go on at the next tick
        except ConsumerError as exc:  # OpenSearch failing: the next pass tries again
            log.warning("tombstone_reaping_failed", error=str(exc), error_type=type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - one failed pass, said so; the next one tries again
            routine_failed(self._metrics, "reaper", exc)
