"""Scanning one segment of the table, page by page, gently: a read-unit budget, throttling slows it.

``SegmentScan.pages`` yields the pages of one Scan segment from a start key, each with a time no
later than the start of its request on AWS's clock (``consumer.aws.clock``: the host's clock less a
margin, or what AWS's answers show when the host's runs ahead), from which the page's external
version is derived (``consumer.pipeline.repair.repair_version``; docs/versioning.md, "Backfill"). Reads are consistent by default: a consistent Scan sees every write acknowledged before
it started, which is what the version proof needs. Eventually consistent reads (half the cost) are
an opt-in whose safety rests on DynamoDB's replication lag staying below the margin.

Pages come straight off the wire (``consumer.aws.json_client``: botocore's parser would cost more CPU
than everything else a backfill does): items and keys in wire form, binary values as base64 text,
which the projection and the checkpoints take as they are. Failed requests are retried here with
backoff; set-up errors (no table, no permission) are raised at once as ConfigError.

``ReadRate`` keeps the read units consumed (``ReturnConsumedCapacity``) under a rate per second; a
throttle (``ProvisionedThroughputExceededException``) halves the rate, which then grows back by a
tenth per page that was not throttled. Not thread-safe: one scan per segment, one thread.
``read_ahead`` reads a segment's next page while the current one is written.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from consumer.aws.accounting import THROTTLING_CODES, Observer
from consumer.aws.backoff import backoff_delay
from consumer.aws.clock import CLOCK_SKEW_MARGIN_SECONDS, AwsClock
from consumer.aws.json_client import WireCallError, WireClient, WireError
from consumer.errors import ConfigError, ConsumerError, Interrupted

Item = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ScanPage:
    items: list[Item]
    last_evaluated_key: dict[str, Any] | None
    read_at: float
    read_units: float


class ReadRate:
    """A budget of read units per second; a throttle halves it, good pages let it grow back."""

    def __init__(self, units_per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ceiling = units_per_second
        self.rate = units_per_second
        self._clock = clock
        self._tokens = units_per_second
        self._at = clock()

    def wait(self, stop: threading.Event) -> None:
        """Wait until the budget allows another request (it may go into debt by one page)."""
        self._refill()
        if self._tokens < 0 and stop.wait(-self._tokens / self.rate):
            raise Interrupted("stop requested while the backfill waited for read capacity")

    def spend(self, units: float) -> None:
        self._refill()
        self._tokens -= units
        self.rate = min(self._ceiling, self.rate * 1.1)

    def throttled(self) -> None:
        self.rate = max(self._ceiling / 64, self.rate / 2)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._at) * self.rate)
        self._at = now


class SegmentScan:
    """The pages of Scan segments of one table."""

    def __init__(
        self,
        client: Any,
        table: str,
        rate: ReadRate,
        consistent: bool = True,
        read_margin: float = CLOCK_SKEW_MARGIN_SECONDS,
        observe: Observer | None = None,
        page_limit: int | None = None,
        retry_base_seconds: float = 0.1,
        retry_cap_seconds: float = 10.0,
        aws_clock: AwsClock | None = None,
    ) -> None:
        aws_clock = aws_clock or AwsClock()
        self._wire = WireClient(client, "DynamoDB_20120810", read_timeout=30.0, aws_clock=aws_clock, observe=observe)
        self._table = table
        self.rate = rate
        self._consistent = consistent
        self._read_margin = read_margin
        self._aws_clock = aws_clock or AwsClock()
        self._observe = observe
        self._limit = page_limit
        self._retry_base = retry_base_seconds
        self._retry_cap = retry_cap_seconds

    def pages(
        self, segment: int, total: int, start: dict[str, Any] | None, stop: threading.Event
    ) -> Iterator[ScanPage]:
        """Every page of the segment from ``start`` (None: its beginning), until its end."""
        key = start
        while True:
            page = self._page(segment, total, key, stop)
            yield page
            if page.last_evaluated_key is None:
                return
            key = page.last_evaluated_key

    def _page(self, segment: int, total: int, key: dict[str, Any] | None, stop: threading.Event) -> ScanPage:
        request: dict[str, Any] = {
            "TableName": self._table,
            "Segment": segment,
            "TotalSegments": total,
            "ConsistentRead": self._consistent,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if key:
            request["ExclusiveStartKey"] = key
        if self._limit:
            request["Limit"] = self._limit
        failures = 0
        while True:
            self.rate.wait(stop)
            started = time.monotonic()
            try:
                answer = self._call(request)
            except ClientError as exc:
                self._refuse_set_up_errors(exc)
                if exc.response.get("Error", {}).get("Code") in THROTTLING_CODES:
                    self.rate.throttled()
            except WireError:
                pass  # no answer, no credentials, a garbled answer: all worth another try
            else:
                units = float((answer.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0)
                self.rate.spend(units)
                read_at = self._aws_clock.read_time(self._read_margin, started)
                return ScanPage(answer.get("Items", []), answer.get("LastEvaluatedKey"), read_at, units)
            if stop.wait(backoff_delay(failures, self._retry_base, self._retry_cap)):
                raise Interrupted("stop requested while a Scan page awaited a retry")
            failures += 1

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        """One Scan request; its outcome reported as ``scan``. Raises ClientError for an error answer,
        WireError when there is none."""
        try:
            return self._wire.call("Scan", request, report_as="scan")[0]
        except WireCallError as exc:
            raise exc.as_client_error() from exc

    def _refuse_set_up_errors(self, exc: ClientError) -> None:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise ConfigError(f"table {self._table!r} does not exist: check CDC_TABLE_NAME and AWS_REGION") from exc
        if code in ("AccessDeniedException", "UnrecognizedClientException"):
            raise ConfigError(f"Scan of table {self._table!r} is not allowed: grant dynamodb:Scan ({exc})") from exc
        if code == "ValidationException":
            raise ConfigError(f"Scan of table {self._table!r} refused: {exc}") from exc
        if code not in THROTTLING_CODES and exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500) < 500:
            raise ConsumerError(f"Scan of table {self._table!r} failed: {exc}") from exc


def read_ahead(pages: Callable[[threading.Event], Iterator[ScanPage]], stop: threading.Event) -> Iterator[ScanPage]:
    """The pages of ``pages(halt)``, each read on a helper thread while the caller writes the one
    before it, so the Scan and the ``_bulk`` overlap. One page is read ahead at most; the helper
    ends when the caller stops iterating or ``stop`` is set (``halt`` is set then), and its errors
    are raised to the caller in order."""
    halt = threading.Event()
    slot: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)

    def read() -> None:
        try:
            for page in pages(halt):
                if not _hand_over(slot, ("page", page), halt):
                    return
            _hand_over(slot, ("end", None), halt)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
            _hand_over(slot, ("error", exc), halt)

    reader = threading.Thread(target=read, name="backfill-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            try:
                kind, value = slot.get(timeout=_HAND_OVER_POLL_SECONDS)
            except queue.Empty:
                if stop.is_set():
                    raise Interrupted("stop requested while the backfill waited for a Scan page") from None
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        halt.set()
        reader.join(timeout=_HAND_OVER_POLL_SECONDS * 2)


_HAND_OVER_POLL_SECONDS = 0.2


def _hand_over(slot: queue.Queue[tuple[str, Any]], entry: tuple[str, Any], halt: threading.Event) -> bool:
    """Put ``entry`` in the slot once it is free; False when halted first."""
    while not halt.is_set():
        try:
            slot.put(entry, timeout=_HAND_OVER_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False
