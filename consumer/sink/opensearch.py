"""OpenSearch ``_bulk`` writer with retries, backoff and poison isolation.

``OpenSearchSink.apply`` returns one ``(Outcome, error)`` per action and only returns when every
action is APPLIED, STALE or POISON: retriable failures (connection errors, 429, 5xx — for the
whole request or single items) are sent again after a jittered exponential backoff until they
succeed, the caller's stop event is set (then ``Interrupted``), or the ``RetryLimits`` are
reached (then the remaining actions end POISON with a ``GaveUp`` error, to be dead-lettered). A
request rejected as a whole with another 4xx is bisected until the offending actions are
isolated as POISON.

Thread-safe: shard consumers share one sink; opensearch-py's connection pool is thread-safe.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from consumer.backoff import backoff_delay
from consumer.errors import Interrupted, SinkError
from consumer.observability.metrics import Metrics
from consumer.sink.bulk import BulkOperation, Outcome, classify_item, encode_bulk

log = structlog.get_logger(__name__)

Result = tuple[Outcome, str | None]
# classify_item reads only each item's status and error: asking for just those shrinks the answer
# (and its decoding) from ~200 to ~25 bytes per successful item.
_BULK_RESPONSE_FILTER = "items.*.status,items.*.error"


class _RequestRejectedError(Exception):
    """The whole request was refused with a non-retriable status (e.g. 400 on a malformed body)."""


class GaveUp(str):
    """The error text of actions whose retries were exhausted; ``attempts`` says how many were made.

    A ``str``, so results keep their ``(outcome, error)`` shape everywhere.
    """

    attempts: int

    def __new__(cls, text: str, attempts: int) -> GaveUp:
        error = super().__new__(cls, text)
        error.attempts = attempts
        return error


@dataclass(frozen=True)
class RetryLimits:
    """Lambda's MaximumRetryAttempts and MaximumRecordAgeInSeconds; None: retry until stopped."""

    max_attempts: int | None = None
    max_record_age_seconds: float | None = None


NO_LIMITS = RetryLimits()


class OpenSearchSink:
    """Applies bulk actions to one index with external versioning."""

    def __init__(
        self,
        client: OpenSearch,
        index: str,
        metrics: Metrics,
        retry_base_seconds: float = 0.1,
        retry_cap_seconds: float = 10.0,
        rng: random.Random | None = None,
        limits: RetryLimits = NO_LIMITS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._index = index
        self._metrics = metrics
        self._retry_base = retry_base_seconds
        self._retry_cap = retry_cap_seconds
        self._rng = rng or random.Random()
        self._limits = limits
        self._clock = clock

    @property
    def index(self) -> str:
        return self._index

    def apply(self, actions: Sequence[BulkOperation], stop: threading.Event) -> list[Result]:
        """Apply all actions, in order; see the module docstring for the guarantees.

        ``stop`` is the caller's stop event: setting it ends retries with ``Interrupted``.
        """
        results: list[Result | None] = [None] * len(actions)
        pending = list(range(len(actions)))
        attempts = 0
        while pending:
            pending = self._apply_once(actions, pending, results)
            attempts += 1
            if pending and self._exhausted(attempts, [actions[i] for i in pending]):
                self._give_up(pending, results, attempts)
                break
            if pending:
                self._wait_before_retry(attempts - 1, len(pending), stop)
        return [r for r in results if r is not None]

    def _exhausted(self, attempts: int, pending: list[BulkOperation]) -> bool:
        limits = self._limits
        if limits.max_attempts is not None and attempts >= limits.max_attempts:
            return True
        if limits.max_record_age_seconds is None:
            return False
        seconds = [record.approximate_second for a in pending if (record := getattr(a, "record", None)) is not None]
        return bool(seconds) and self._clock() - min(seconds) > limits.max_record_age_seconds

    def _give_up(self, pending: list[int], results: list[Result | None], attempts: int) -> None:
        text = (
            f"OpenSearch kept failing with retriable errors (429/5xx/connection); gave up after {attempts} attempts "
            "(CDC_MAX_RETRY_ATTEMPTS / CDC_MAX_RECORD_AGE_SECONDS)"
        )
        log.warning("bulk_retries_exhausted", attempts=attempts, actions=len(pending))
        for i in pending:
            results[i] = (Outcome.POISON, GaveUp(text, attempts))

    def _apply_once(
        self, actions: Sequence[BulkOperation], pending: list[int], results: list[Result | None]
    ) -> list[int]:
        """One pass over the pending actions; returns those to send again."""
        try:
            items = self._send([actions[i] for i in pending])
        except SinkError as exc:
            log.warning("bulk_request_failed", error=str(exc), actions=len(pending))
            return pending
        except _RequestRejectedError as exc:
            return self._bisect(actions, pending, results, str(exc))
        retry = []
        for i, item in zip(pending, items, strict=True):
            outcome, error = classify_item(item)
            if outcome is Outcome.RETRY:
                retry.append(i)
            else:
                results[i] = (outcome, error)
        return retry

    def _bisect(
        self, actions: Sequence[BulkOperation], pending: list[int], results: list[Result | None], error: str
    ) -> list[int]:
        if len(pending) == 1:
            results[pending[0]] = (Outcome.POISON, error)
            return []
        middle = len(pending) // 2
        retry = []
        for half in (pending[:middle], pending[middle:]):
            retry += self._apply_once(actions, half, results)
        return retry

    def _send(self, actions: list[BulkOperation]) -> list[dict[str, Any]]:
        body = encode_bulk(self._index, actions)
        started = time.perf_counter()
        try:
            response = self._client.bulk(body=body, filter_path=_BULK_RESPONSE_FILTER)
        except OpenSearchConnectionError as exc:
            self._metrics.bulk_requests.labels(outcome="connection_error").inc()
            raise SinkError(f"OpenSearch unreachable: {exc}") from exc
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            retriable = status == 429 or status >= 500 or status == 0
            self._metrics.bulk_requests.labels(outcome="retriable_error" if retriable else "rejected").inc()
            if retriable:
                raise SinkError(f"OpenSearch bulk answered {exc.status_code}: {exc.error}") from exc
            raise _RequestRejectedError(f"{exc.status_code} {exc.error}: {exc.info}") from exc
        finally:
            self._metrics.bulk_duration.observe(time.perf_counter() - started)
        self._metrics.bulk_requests.labels(outcome="ok").inc()
        self._metrics.bulk_bytes.inc(len(body))
        items = response.get("items") if isinstance(response, dict) else None
        if not isinstance(items, list) or len(items) != len(actions):
            raise SinkError(f"bulk answer has no item for each of the {len(actions)} actions: {str(response)[:200]}")
        return items

    def _wait_before_retry(self, attempt: int, pending: int, stop: threading.Event) -> None:
        delay = backoff_delay(attempt, self._retry_base, self._retry_cap, self._rng)
        self._metrics.sink_retries.inc(pending)
        log.info("bulk_retry_scheduled", attempt=attempt + 1, actions=pending, delay_seconds=round(delay, 3))
        if stop.wait(delay):
            raise Interrupted(f"stop requested while {pending} actions awaited a retry")
