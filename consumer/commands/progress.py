"""How a long operator command (backfill, audit, reindex, redrive) shows that it moves: a line on a
terminal, rewritten in place, or a log line every few seconds when stderr is no terminal (a
Kubernetes Job's log). Output only: it never changes what the command does."""

from __future__ import annotations

import sys
import time

import structlog

from consumer.backfill.runner import BackfillTally

log = structlog.get_logger(__name__)

PROGRESS_LOG_SECONDS = 5.0


class ProgressDisplay:
    """A progress line on a terminal, or a progress log line every few seconds. ``estimated_items``
    None: the total is not known, so no ETA."""

    def __init__(self, estimated_items: int | None, label: str) -> None:
        self._label = label
        self._estimate = estimated_items
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def show(self, tally: BackfillTally) -> None:
        """A backfill's (or a reindex's fill's) progress."""
        self.count(tally.items, tally.started)

    def count(self, items: int, started: float) -> None:
        """``items`` done since ``started`` (``time.monotonic()``)."""
        now = time.monotonic()
        elapsed = max(now - started, 1e-9)
        rate = items / elapsed
        if self._estimate is None:
            done, eta = f"{items:,}", None
        else:
            done = f"{items:,}/~{self._estimate:,}"
            eta = round((self._estimate - items) / rate) if rate and self._estimate > items else 0
        if self._tty:
            ending = "" if eta is None else f", ETA {eta:,} s"
            sys.stderr.write(f"\r{self._label}: {done} items, {rate:,.0f}/s{ending}   ")
        elif now - self._last >= PROGRESS_LOG_SECONDS:
            log.info(
                f"{self._label}_progress",
                items=items,
                expected_items=self._estimate,
                items_per_second=round(rate),
                eta_seconds=eta,
            )
            self._last = now

    def finish(self) -> None:
        if self._tty:
            sys.stderr.write("\n")
