"""OpenSearch ``_bulk`` writer: byte-bounded requests, outages waited out, drift diverted, poison isolated.

``OpenSearchSink.apply`` returns one ``(Outcome, error)`` per action, each APPLIED, STALE or
POISON, and only once every action is one of those:

* Requests carry at most ``max_request_bytes`` of NDJSON (one larger action goes alone); a 413
  splits the request in halves, down to one action, which is then POISON (too large to index).
* A failure of the sink — unreachable, 5xx, 401/403/404 for the request or an item (credentials,
  permissions, write blocks, a missing index), 429 — is an *outage*: the actions are sent again
  after a jittered exponential backoff until they succeed or the caller's stop event is set
  (``Interrupted``). While the sink is failing, ``cdc_sink_available`` is 0 and readiness says why.
  Only when ``RetryLimits`` are given (``CDC_DEAD_LETTER_ON_OUTAGE``) does an outage end: the
  actions still pending then become POISON with a ``GaveUp`` error.
* A document OpenSearch refuses (400) because an attribute's shape conflicts with the mapping is
  sent again with that attribute diverted to the typed form (``consumer.pipeline.drift``), judged
  against the index's current mapping (or sent again as it is when it fits that mapping: another
  writer changed it meanwhile); a refusal nothing explains is POISON. A request
  refused as a whole with another 4xx is bisected until the actions at fault are isolated.
* An answer is read only as far as it must be: one that says no item failed (``errors: false``)
  and has an item for each action settles them all APPLIED at once; any other is classified item by
  item (``classify_item``). An answer without a well-formed item for each action is not
  OpenSearch's (a proxy's page, a body cut short): an outage, like no answer at all.

Thread-safe: shard consumers share one sink; opensearch-py's connection pool is thread-safe.
"""

from __future__ import annotations

import operator
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from consumer.aws.accounting import CREDENTIAL_ERRORS
from consumer.aws.backoff import backoff_delay
from consumer.errors import Interrupted
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.pipeline.bulk import (
    BulkOperation,
    Outcome,
    RequestFailure,
    bulk_body,
    classify_item,
    classify_request_failure,
    encode_action,
)
from consumer.pipeline.drift import conflicting_attributes, divert, named_attributes
from consumer.sink import in_flight
from consumer.sink.index_catalog import IndexCatalog
from consumer.sink.index_setup import read_mapping

log = structlog.get_logger(__name__)

Result = tuple[Outcome, str | None]
APPLIED: Result = (Outcome.APPLIED, None)
# classify_item reads only each item's status and error: asking for just those shrinks the answer
# (and its decoding) from ~200 to ~25 bytes per successful item. ``errors`` is OpenSearch's own word
# on whether any item failed (a delete of a missing document is no failure: classify_item agrees).
_BULK_RESPONSE_FILTER = "errors,items.*.status,items.*.error"
DEFAULT_MAX_REQUEST_BYTES = 5 * 1024 * 1024
_MAX_RESENDS = 3  # per refused action: the mapping may change between attempts (other writers)


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
    """Lambda's MaximumRetryAttempts and MaximumRecordAgeInSeconds, applied to outages only when the
    user opted in (CDC_DEAD_LETTER_ON_OUTAGE); None: wait until the sink is back."""

    max_attempts: int | None = None
    max_record_age_seconds: float | None = None


NO_LIMITS = RetryLimits()


class _RequestFailedError(Exception):
    def __init__(self, failure: RequestFailure, text: str) -> None:
        super().__init__(text)
        self.failure = failure


class OpenSearchSink:
    """Applies bulk actions with external versioning, each to its index (or the sink's own)."""

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
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        protected_fields: Collection[str] = (),
        health: Health | None = None,
        catalog: IndexCatalog | None = None,
    ) -> None:
        """``index``: where actions that name no index go. ``catalog``: makes the indices that actions
        name ready before their first document (routes); without it the caller set up every index."""
        self._client = client
        self._index = index
        self._metrics = metrics
        self._retry_base = retry_base_seconds
        self._retry_cap = retry_cap_seconds
        self._rng = rng or random.Random()
        self._limits = limits
        self._clock = clock
        self._max_request_bytes = max_request_bytes
        self._protected = frozenset(protected_fields)
        self._health = health
        self._catalog = catalog
        self._available = True
        self._availability_lock = threading.Lock()

    @property
    def index(self) -> str:
        return self._index

    def encode(self, actions: Sequence[BulkOperation]) -> list[bytes]:
        """The NDJSON lines of each action, for its index or this sink's: ``apply``'s ``encoded``, made
        ahead of it."""
        return [encode_action(action.index or self._index, action) for action in actions]

    def apply(
        self,
        actions: Sequence[BulkOperation],
        stop: threading.Event,
        encoded: Sequence[bytes] | None = None,
        while_in_flight: Callable[[], None] | None = None,
    ) -> list[Result]:
        """Apply all actions, in order; see the module docstring for the guarantees.

        ``stop`` is the caller's stop event: setting it ends retries with ``Interrupted``.
        ``encoded``: the actions' lines from ``encode`` (so a caller can encode while an earlier
        request is in flight); encoded here when not given. ``while_in_flight``: work to run on this
        thread while the first request is in flight (``consumer.sink.in_flight``); it may not run.
        """
        lines = list(encoded) if encoded is not None else self.encode(actions)
        if len(lines) != len(actions):
            raise ValueError(f"{len(lines)} encoded actions for {len(actions)} actions")
        batch = _Batch(list(actions), [None] * len(actions), lines, while_in_flight)
        pending = self._ready(batch)
        rounds = 0
        while pending:
            pending = self._apply_round(batch, pending)
            rounds += 1
            if pending and self._exhausted(rounds, [batch.actions[i] for i in pending]):
                self._give_up(batch, pending, rounds)
                break
            if pending:
                self._wait_before_retry(rounds - 1, len(pending), stop)
        return [r for r in batch.results if r is not None]

    def _ready(self, batch: _Batch) -> list[int]:
        """The actions to send: all, but those for an index the catalog may not create (POISON)."""
        everything = list(range(len(batch.actions)))
        if self._catalog is None:
            return everything
        # in the order of the records: of the indices a bound refuses, the later ones are
        refused = self._catalog.ready(dict.fromkeys(action.index for action in batch.actions if action.index))
        if not refused:
            return everything
        for i, action in enumerate(batch.actions):
            if action.index in refused:
                batch.results[i] = (Outcome.POISON, refused[action.index])
        return [i for i in everything if batch.results[i] is None]

    def _apply_round(self, batch: _Batch, pending: list[int]) -> list[int]:
        """Send the pending actions once (splitting, bisecting and diverting as needed); returns those
        to send again after a pause."""
        later: list[int] = []
        requests = deque(self._requests(batch, pending))
        mapping: dict[str, Mapping[str, Any]] = {}  # each index's mapping, read at most once a request
        while requests:
            chunk = requests.popleft()
            work, batch.while_in_flight = batch.while_in_flight, None
            indices = set(map(_INDEX_OF, map(batch.actions.__getitem__, chunk)))  # at C speed: every request
            if None in indices:
                indices.remove(None)
                indices.add(self._index)
            try:
                path_index = indices.pop() if len(indices) == 1 else None
                items = self._send(bulk_body(map(batch.encoded.__getitem__, chunk)), len(chunk), path_index, work)
            except _RequestFailedError as exc:
                if exc.failure in (RequestFailure.OUTAGE, RequestFailure.THROTTLED):
                    later += chunk + [i for rest in requests for i in rest]  # the rest would fail alike
                    break
                requests.extendleft(reversed(self._split(batch, chunk, exc)))
                continue
            if items is None:  # every action succeeded
                for i in chunk:
                    batch.results[i] = APPLIED
                self._set_available(True, None)
                continue
            resend = self._settle_items(batch, chunk, items, later, mapping)
            if resend:
                mapping.clear()  # this request changed the mapping (its other items): read it again
                requests.append(resend)
        return sorted(later)

    def _settle_items(
        self,
        batch: _Batch,
        chunk: list[int],
        items: list[dict[str, Any]],
        later: list[int],
        mapping: dict[str, Mapping[str, Any]],
    ) -> list[int]:
        """Record each item's outcome; returns the actions to send again at once (diverted)."""
        resend: list[int] = []
        blocked = None
        for i, item in zip(chunk, items, strict=True):
            outcome, error = classify_item(item)
            if outcome in (Outcome.RETRY, Outcome.BLOCKED):
                later.append(i)
                blocked = error if outcome is Outcome.BLOCKED else blocked
            elif outcome is Outcome.REFUSED and self._maybe_divert(batch, i, error or "", mapping):
                resend.append(i)
            else:
                batch.results[i] = (Outcome.POISON if outcome is Outcome.REFUSED else outcome, error)
        self._set_available(blocked is None, None if blocked is None else f"writes to the index blocked ({blocked})")
        return resend

    def _maybe_divert(self, batch: _Batch, i: int, error: str, mapping: dict[str, Mapping[str, Any]]) -> bool:
        """Prepare action ``i``, which OpenSearch refused, to be sent again: with the attributes that
        conflict with the index's current mapping diverted; unchanged, once, when it fits that mapping
        (a concurrent writer changed the mapping between our request and its parsing); else with the
        attributes the error names diverted. False when nothing explains the refusal: poison."""
        action = batch.actions[i]
        if action.document is None or batch.resends.get(i, 0) >= _MAX_RESENDS:
            return False
        index = action.index or self._index
        if index not in mapping:
            mapping[index] = read_mapping(self._client, index)
        names = conflicting_attributes(action.document, mapping[index], self._protected)
        if not names and i not in batch.sent_as_is:
            batch.sent_as_is.add(i)
            names_text = "none: it fits the mapping now"
        else:
            # what the mapping shows, and what the error names (OpenSearch reports one field at a time)
            names = sorted({*names, *named_attributes(action.document, error, self._protected)})
            if not names:
                return False
            batch.actions[i] = action.with_document(divert(action.document, names))
            batch.encoded[i] = encode_action(index, batch.actions[i])
            self._metrics.documents_diverted.inc()
            names_text = ", ".join(sorted(names))
        batch.resends[i] = batch.resends.get(i, 0) + 1
        log.info("refused_document_resent", index=index, doc_id=action.doc_id, diverted=names_text, error=error[:300])
        return True

    def _split(self, batch: _Batch, chunk: list[int], exc: _RequestFailedError) -> list[list[int]]:
        """Halves of a request that was too large or rejected; a single action is POISON."""
        if len(chunk) == 1:
            reason = str(exc)
            if exc.failure is RequestFailure.TOO_LARGE:
                reason = f"a single document is larger than OpenSearch accepts (http.max_content_length): {exc}"
            batch.results[chunk[0]] = (Outcome.POISON, reason)
            return []
        middle = len(chunk) // 2
        return [chunk[:middle], chunk[middle:]]

    def _requests(self, batch: _Batch, pending: list[int]) -> list[list[int]]:
        """The pending actions grouped into requests of at most ``max_request_bytes``."""
        if len(pending) == len(batch.encoded) and sum(map(len, batch.encoded)) <= self._max_request_bytes:
            return [pending]  # the common case: every action, in one request
        requests: list[list[int]] = []
        current: list[int] = []
        size = 0
        for i in pending:
            length = len(batch.encoded[i])
            if current and size + length > self._max_request_bytes:
                requests.append(current)
                current, size = [], 0
            current.append(i)
            size += length
        if current:
            requests.append(current)
        return requests

    def _send(
        self, body: bytes, count: int, index: str | None, work: Callable[[], None] | None = None
    ) -> list[dict[str, Any]] | None:
        """The answer's ``items``, one for each of the ``count`` actions of ``body``; None when the
        answer says no item failed (``errors: false``, with one item for each action), so that the
        common answer is not read item by item."""
        started = time.perf_counter()
        armed = in_flight.ArmedWork(None)
        try:
            with in_flight.while_in_flight(work) as armed:
                # on the index's path when the request writes one index: IAM can then grant _bulk on
                # that index alone (a request over several indices goes to /_bulk: docs/routes.md)
                response = self._client.bulk(body=body, index=index, filter_path=_BULK_RESPONSE_FILTER)
        except OpenSearchConnectionError as exc:
            raise self._request_failed(
                RequestFailure.OUTAGE, f"OpenSearch unreachable: {exc}", "unreachable (no connection or no answer)"
            ) from exc
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else None
            failure = classify_request_failure(status)
            text = f"OpenSearch bulk answered {exc.status_code} {exc.error}: {exc.info}"
            raise self._request_failed(failure, text, _status_summary(status)) from exc
        except CREDENTIAL_ERRORS as exc:
            raise self._request_failed(
                RequestFailure.OUTAGE,
                f"no credentials to sign the bulk request: {exc}",
                "no AWS credentials to sign requests with (see the credentials_failing runbook)",
            ) from exc
        except Exception as exc:  # noqa: BLE001 - classified here, at the edge: see below
            # An answer opensearch-py could not read (a proxy's HTML page with 200, a body cut short:
            # SerializationError), or a failure nobody named: the records are fine, so it is the
            # sink's failure, waited out like an outage and said so, never a skipped batch.
            text = f"OpenSearch bulk failed: {type(exc).__name__}: {str(exc)[:300]}"
            raise self._request_failed(RequestFailure.OUTAGE, text, _UNREADABLE) from exc
        finally:  # the caller's work done while the request was in flight is not OpenSearch's time
            self._metrics.bulk_duration.observe(time.perf_counter() - started - armed.seconds)
        items = response.get("items") if isinstance(response, dict) else None
        succeeded = isinstance(items, list) and len(items) == count and response.get("errors") is False
        if not succeeded and (not isinstance(items, list) or len(items) != count or not all(map(_is_item, items))):
            raise self._request_failed(
                RequestFailure.OUTAGE,
                f"bulk answer has no well-formed item for each of the {count} actions: {str(response)[:200]}",
                _UNREADABLE,
            )
        self._metrics.bulk_requests.labels(outcome="ok").inc()
        self._metrics.bulk_bytes.inc(len(body))
        return None if succeeded else items

    def _request_failed(self, failure: RequestFailure, text: str, summary: str) -> _RequestFailedError:
        """Count and log a failed request (``text``: the details, for the log); ``summary`` says in our
        own words what readiness shows (never an answer's body: it may name roles and domains)."""
        self._metrics.bulk_requests.labels(outcome=failure.value).inc()
        if failure is RequestFailure.OUTAGE:
            self._set_available(False, summary)
        log.warning("bulk_request_failed", failure=failure.value, error=text[:500])
        return _RequestFailedError(failure, text)

    def _set_available(self, available: bool, reason: str | None) -> None:
        """Track the sink's availability for ``cdc_sink_available`` and readiness; log changes only."""
        with self._availability_lock:
            changed = available != self._available
            self._available = available
        self._metrics.sink_available.set(1 if available else 0)
        if self._health is not None:
            self._health.set_condition("sink", None if available else f"OpenSearch unavailable: {reason}")
        if changed:
            if available:
                log.info("sink_available", index=self._index)
            else:
                log.error("sink_unavailable", index=self._index, reason=(reason or "")[:500])

    def _exhausted(self, rounds: int, pending: list[BulkOperation]) -> bool:
        limits = self._limits
        if limits.max_attempts is not None and rounds >= limits.max_attempts:
            return True
        if limits.max_record_age_seconds is None:
            return False
        seconds = [record.approximate_second for a in pending if (record := getattr(a, "record", None)) is not None]
        return bool(seconds) and self._clock() - min(seconds) > limits.max_record_age_seconds

    def _give_up(self, batch: _Batch, pending: list[int], attempts: int) -> None:
        text = (
            f"OpenSearch kept failing (outage, throttling or write block); gave up after {attempts} attempts "
            "(CDC_DEAD_LETTER_ON_OUTAGE with CDC_MAX_RETRY_ATTEMPTS / CDC_MAX_RECORD_AGE_SECONDS)"
        )
        log.warning("bulk_retries_exhausted", attempts=attempts, actions=len(pending))
        for i in pending:
            batch.results[i] = (Outcome.POISON, GaveUp(text, attempts))

    def _wait_before_retry(self, attempt: int, pending: int, stop: threading.Event) -> None:
        delay = backoff_delay(attempt, self._retry_base, self._retry_cap, self._rng)
        self._metrics.sink_retries.inc(pending)
        log.info("bulk_retry_scheduled", attempt=attempt + 1, actions=pending, delay_seconds=round(delay, 3))
        if stop.wait(delay):
            raise Interrupted(f"stop requested while {pending} actions awaited a retry")


_INDEX_OF = operator.attrgetter("index")


def _is_item(item: Any) -> bool:
    """Whether ``item`` has the shape of one ``items[]`` entry: one operation and its result."""
    return isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), dict)


@dataclass
class _Batch:
    """One ``apply`` call's actions (diverted ones replaced), results and encoded lines, by position."""

    actions: list[BulkOperation]
    results: list[Result | None]
    encoded: list[bytes]
    while_in_flight: Callable[[], None] | None = None  # the caller's work, run during the first request
    resends: dict[int, int] = field(default_factory=dict)
    sent_as_is: set[int] = field(default_factory=set)


_UNREADABLE = "an answer that is not OpenSearch's (a proxy or load balancer answering in its place?)"


def _status_summary(status: int | None) -> str:
    """What an HTTP status of a failed ``_bulk`` means for an operator, in a few words."""
    if status == 401:
        return "authentication refused (401): check CDC_OPENSEARCH_AUTH and its credentials"
    if status == 403:
        return "permission denied (403): check the role's es:ESHttpPost on the index and the domain's access policy"
    if status == 404:
        return "index not found (404)"
    return f"failing (HTTP {status})" if status is not None else "no answer"
