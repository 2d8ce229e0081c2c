"""I/O shared by ``consumer audit`` and ``consumer redrive``: consistent table reads with their read
times (Scan pages and BatchGetItem within the read budget ``CDC_BACKFILL_MAX_READ_UNITS``), the
index read by ids and scrolled page by page, and repair writes through ``OpenSearchSink`` (which
retries 429 / 5xx / connection errors with backoff). Nothing is held beyond one page.

Not thread-safe: one command uses one ``Reconciler``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import NotFoundError, TransportError
from prometheus_client import CollectorRegistry

from consumer.aws.backoff import backoff_delay
from consumer.aws.clock import CLOCK_SKEW_MARGIN_SECONDS, AwsClock
from consumer.backfill.scan import ReadRate, ScanPage, SegmentScan
from consumer.config import Settings, document_key_schema, routing
from consumer.errors import ConfigError, ConsumerError, Interrupted, RecordError, SinkError
from consumer.observability.metrics import Metrics
from consumer.pipeline.doc_ids import KeySchema, document_id
from consumer.pipeline.drift import natural_document
from consumer.pipeline.records import EVENT_NAMES
from consumer.pipeline.repair import Document, Item, Projected, RepairAction, project_item
from consumer.pipeline.routes import Routing
from consumer.pipeline.service_fields import DELETED_FIELD
from consumer.runtime.clients import aws_clients, opensearch_client
from consumer.runtime.generations import generation_catalog, generation_store, recorded_generation
from consumer.runtime.stream_source import read_key_schema
from consumer.sink.index_setup import LIVE_FILTER
from consumer.sink.opensearch import OpenSearchSink, Result

SCROLL_PAGE_SIZE = 1000
BATCH_GET_KEYS = 100  # BatchGetItem's limit per request
WRITE_CHUNK_SIZE = 250


def audit_routing(settings: Settings, schema: KeySchema) -> Routing:
    """The workers' routes and rules, for a table state: the routes, the filter (CDC_FILTER_MODE=state),
    the fields kept, dropped and masked, and the transforms.

    Raises:
        ConfigError: when the rules make the index something other than a function of the table's
            current state (event filters, TTL deletes skipped or marked): an audit would report
            their effect as drift, and a repair would undo it.
    """
    diverging = []
    if settings.filter_mode == "events" and (settings.filter_patterns or set(settings.event_names) != set(EVENT_NAMES)):
        diverging.append("CDC_FILTER_MODE=events")
    if settings.ttl_deletes != "delete":
        diverging.append(f"CDC_TTL_DELETES={settings.ttl_deletes}")
    if diverging:
        raise ConfigError(
            f"{', '.join(diverging)}: with these rules the index is not a function of the table's current state, "
            "so audit would report their effect as drift and a repair would undo it; audit and redrive support "
            "state filters (CDC_FILTER_MODE=state, the default) and the field rules"
        )
    return routing(settings, schema)


@dataclass
class Reconciler:
    """Reads the table and the indices of its routes, and writes repairs, for one table."""

    table: str
    schema: KeySchema
    routing: Routing
    dynamodb: Any
    search: OpenSearch
    sink: OpenSearchSink
    scan: SegmentScan
    clock: AwsClock = field(default_factory=AwsClock)

    @classmethod
    def from_settings(cls, settings: Settings) -> Reconciler:
        """Clients from the workers' settings. Raises ConfigError for a set-up it cannot work with."""
        aws = aws_clients(settings.aws_region, settings.streams_endpoint_url)
        dynamodb = aws.dynamodb
        schema = document_key_schema(settings, read_key_schema(dynamodb, settings.source_table))
        configured = audit_routing(settings, schema)
        search = opensearch_client(settings, exact_numbers=True)
        generation = recorded_generation(generation_store(search, settings), configured, schema, settings)
        catalog = generation_catalog(search, configured, schema, settings, generation)
        routes = catalog.routing
        sink = OpenSearchSink(
            search,
            settings.index_name,
            Metrics(CollectorRegistry()),
            settings.retry_base_seconds,
            settings.retry_max_delay_seconds,
            catalog=catalog,
        )
        scan = SegmentScan(
            dynamodb,
            settings.source_table,
            ReadRate(settings.backfill_max_read_units),
            consistent=True,
            read_margin=CLOCK_SKEW_MARGIN_SECONDS,
            retry_base_seconds=settings.retry_base_seconds,
            retry_cap_seconds=settings.retry_max_delay_seconds,
            aws_clock=aws.clock,
        )
        return cls(settings.source_table, schema, routes, dynamodb, search, sink, scan, aws.clock)

    @property
    def indices(self) -> str:
        """Every index of the routes: fixed names and templates' patterns, comma-separated."""
        return ",".join(self.routing.index_patterns)

    def read_time(self, started_at: float) -> float:
        """A time no later than a read that started at ``started_at`` (monotonic), on DynamoDB's
        clock: asked once its answer is in (``consumer.aws.clock``)."""
        return self.clock.read_time(CLOCK_SKEW_MARGIN_SECONDS, started_at)

    def table_pages(self, stop: threading.Event) -> Iterator[ScanPage]:
        """The table's pages, read consistently within the read budget, each with its read time."""
        return self.scan.pages(0, 1, None, stop)

    def projected(self, page: ScanPage) -> dict[str, Projected]:
        """The page's items as the worker projects them (id → document and its index); items in no
        index (filtered, unrouted, or left out by their transform) are expected absent and left out."""
        documents: dict[str, Projected] = {}
        for item in page.items:
            doc_id, projected = project_item(self.schema, item, self.routing)
            if projected is not None:
                documents[doc_id] = projected
        return documents

    def get_item(self, key: Item) -> tuple[float, Item | None]:
        """The item's current state (None when it does not exist), read consistently, and the read time.

        Raises:
            RecordError: when DynamoDB refuses the key (a value that is no valid key).
        """
        started = time.monotonic()
        try:
            response = self.dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ValidationException":
                raise RecordError(f"GetItem refused the key: {exc}") from exc
            raise self._table_error("GetItem", exc) from exc
        except BotoCoreError as exc:
            raise self._table_error("GetItem", exc) from exc
        return self.read_time(started), response.get("Item")

    def live_documents(self, index: str, ids: Iterable[str]) -> dict[str, Document]:
        """The live documents of ``index`` among ``ids`` (id → source as the item has it), tombstones
        left out."""
        ids = list(ids)
        if not ids:
            return {}
        try:
            self.search.indices.refresh(index=index)  # documents written in the last second count too
            answer = self.search.mget(index=index, body={"ids": ids})
        except NotFoundError:
            return {}
        except TransportError as exc:
            raise SinkError(f"reading index {index!r} failed: {exc}") from exc
        return {
            doc["_id"]: natural_document(doc["_source"])
            for doc in answer.get("docs", [])
            if doc.get("found") and not (doc.get("_source") or {}).get(DELETED_FIELD)
        }

    def index_pages(self) -> Iterator[tuple[str, list[tuple[str, Document]]]]:
        """Every live document of every index of the routes, in pages of one index each (the index, and
        (id, source as the item has it) pairs), however many, tombstones left out (a tombstone is an
        absent item); nothing for an index that does not exist."""
        indices = self.indices
        try:
            self.search.indices.refresh(index=indices, ignore_unavailable=True, allow_no_indices=True)
            hits = helpers.scan(
                self.search,
                index=indices,
                query={"query": LIVE_FILTER},
                size=SCROLL_PAGE_SIZE,
                scroll="5m",
                ignore_unavailable=True,
                allow_no_indices=True,
            )
            pages: dict[str, list[tuple[str, Document]]] = {}
            for hit in hits:
                page = pages.setdefault(hit["_index"], [])
                page.append((hit["_id"], natural_document(hit.get("_source") or {})))
                if len(page) == SCROLL_PAGE_SIZE:
                    yield hit["_index"], pages.pop(hit["_index"])
            yield from pages.items()
        except (TransportError, helpers.ScanError) as exc:
            raise SinkError(f"reading indices {indices!r} failed: {exc}") from exc

    def holding_indices(self, doc_id: str) -> set[str]:
        """The indices of the routes that hold a live document of id ``doc_id``."""
        try:
            answer = self.search.search(
                index=self.indices,
                body={"query": {"bool": {"filter": [{"ids": {"values": [doc_id]}}, LIVE_FILTER]}}, "_source": False},
                ignore_unavailable=True,
                allow_no_indices=True,
            )
        except TransportError as exc:
            raise SinkError(f"searching {self.indices!r} for document {doc_id!r} failed: {exc}") from exc
        return {hit["_index"] for hit in answer["hits"]["hits"]}

    def current_items(self, keys: list[Item], stop: threading.Event) -> tuple[float, dict[str, Item]]:
        """The items that exist under ``keys`` (id → item), read consistently in batches within the
        read budget, and a time no later than the first read."""
        started = time.monotonic()
        found: dict[str, Item] = {}
        for start in range(0, len(keys), BATCH_GET_KEYS):
            pending = keys[start : start + BATCH_GET_KEYS]
            failures = 0
            while pending:
                self.scan.rate.wait(stop)
                try:
                    answer = self.dynamodb.batch_get_item(
                        RequestItems={self.table: {"Keys": pending, "ConsistentRead": True}},
                        ReturnConsumedCapacity="TOTAL",
                    )
                except (ClientError, BotoCoreError) as exc:
                    raise self._table_error("BatchGetItem", exc) from exc
                self.scan.rate.spend(
                    sum(float(used.get("CapacityUnits") or 0) for used in answer.get("ConsumedCapacity", []))
                )
                for item in answer.get("Responses", {}).get(self.table, []):
                    found[document_id(self.schema, item)] = item
                pending = answer.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
                if pending and stop.wait(backoff_delay(failures, 0.05, 2.0)):
                    raise Interrupted("stop requested while BatchGetItem awaited a retry of unprocessed keys")
                failures += 1
        return self.read_time(started), found

    def apply(self, actions: list[RepairAction], stop: threading.Event) -> list[Result]:
        """Write the actions in chunks; one (outcome, error) per action, in order."""
        results: list[Result] = []
        for start in range(0, len(actions), WRITE_CHUNK_SIZE):
            results += self.sink.apply(actions[start : start + WRITE_CHUNK_SIZE], stop)
        return results

    def _table_error(self, operation: str, exc: Exception) -> ConsumerError:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
        if code in ("AccessDeniedException", "UnrecognizedClientException"):
            return ConfigError(f"{operation} on table {self.table!r} is not allowed for these credentials: {exc}")
        return ConsumerError(f"{operation} on table {self.table!r} failed: {exc}")
