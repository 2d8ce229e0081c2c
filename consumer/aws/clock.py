"""AWS's clock, as the ``Date`` headers of its answers show it: the host clock is not trusted.

The versions that a backfill, a repair or a redrive writes (``consumer.pipeline.repair.repair_version``), and
the start of a ``LATEST`` lease (``consumer.shards.task``), must not be later than DynamoDB's own
clock, whose seconds the stream records carry. A host clock running ahead would make them later.

Every answer's ``Date`` is AWS's time, rounded down to the second, when it answered: no later than
when the answer arrived here. So at any later instant, AWS's time is at least ``date`` plus the
time elapsed since the arrival, measured on the host's *monotonic* clock (which no NTP step moves).
``AwsClock`` keeps the best such lower bound from the answers of the last ``WINDOW_SECONDS`` (a
monotonic clock drifts a few parts per million against real time: minutes of it are negligible,
days are not) and ``read_time`` gives the earlier of that bound and the host's clock less a margin:
never later than AWS's time, whichever clock is wrong.

The host clock's distance from AWS's is also reported (``host_ahead_seconds``), for a gauge and a
warning. Thread-safe; ``observe`` is cheap enough for every wire call (a ``Date`` value is parsed
once per second at most).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from email.utils import parsedate_to_datetime

WINDOW_SECONDS = 300.0

# A read time must not be later than the read on DynamoDB's clock (consumer.pipeline.repair.repair_version):
# it is the earlier of the host's clock less this margin and AWS's clock as its answers' Date headers
# show it (``AwsClock``), so a host clock running ahead cannot make a repair beat a newer change.
CLOCK_SKEW_MARGIN_SECONDS = 1.0
# An eventually consistent read may miss writes made shortly before it: DynamoDB replicates within
# about a second. Reads made so (the backfill's opt-in) take their time this much earlier.
EVENTUAL_CONSISTENCY_MARGIN_SECONDS = 5.0


class AwsClock:
    """A lower bound of AWS's clock from the ``Date`` headers seen."""

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last_header: str | None = None
        self._samples: deque[tuple[float, float]] = deque()  # (arrival on the monotonic clock, AWS time − it)
        self._ahead: float | None = None

    def observe(self, date_header: str | None, arrived_at: float | None = None) -> None:
        """Record an answer's ``Date`` (``arrived_at``: when it arrived, on the monotonic clock)."""
        if not date_header or date_header == self._last_header:
            return
        try:
            aws_seconds = parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError):
            return  # not a date: an answer from something other than AWS, or a broken one
        arrived = self._monotonic() if arrived_at is None else arrived_at
        wall = self._wall() - (self._monotonic() - arrived)
        with self._lock:
            self._last_header = date_header
            self._samples.append((arrived, aws_seconds - arrived))
            while self._samples and arrived - self._samples[0][0] > WINDOW_SECONDS:
                self._samples.popleft()
            # the host's time at arrival minus AWS's (whose second was rounded down: half a second on average)
            self._ahead = wall - (aws_seconds + 0.5)

    def now_lower(self) -> float | None:
        """A time no later than AWS's clock now; None before any answer was seen."""
        now = self._monotonic()
        with self._lock:
            recent = [offset for arrived, offset in self._samples if now - arrived <= WINDOW_SECONDS]
        return now + max(recent) if recent else None

    def read_time(self, margin: float, started_at: float | None = None) -> float:
        """A time no later than AWS's clock at ``started_at`` (a monotonic instant; default now): the
        host's time then, less ``margin``, or AWS's time as its answers show it when the host's is
        ahead of that. Asked once a read's answer is in (``started_at``: when the read began), the
        answer's own ``Date`` bounds it, so a first read needs no earlier answer."""
        now = self._monotonic()
        back = 0.0 if started_at is None else now - started_at
        host = self._wall() - back - margin
        aws = self.now_lower()
        return host if aws is None else min(host, aws - back)

    @property
    def host_ahead_seconds(self) -> float | None:
        """How far the host clock is ahead of AWS's (negative: behind), ±0.5 s; None before any answer."""
        with self._lock:
            return self._ahead
