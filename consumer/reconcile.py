"""I/O shared by ``consumer audit`` and ``consumer redrive``: consistent table reads with their read
times, a scroll over the whole index, and repair writes through ``OpenSearchSink`` (which retries
429 / 5xx / connection errors with backoff).

Not thread-safe: one command uses one ``Reconciler``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import TransportError
from prometheus_client import CollectorRegistry

from consumer.clients import aws_clients, opensearch_client
from consumer.config import Settings
from consumer.doc_ids import KeySchema
from consumer.errors import ConfigError, ConsumerError, RecordError, SinkError
from consumer.observability.metrics import Metrics
from consumer.projection import ProjectionRules
from consumer.records import EVENT_NAMES
from consumer.repair import Document, Item, RepairAction, project_item
from consumer.rules import projection_rules
from consumer.sink.drift import natural_document
from consumer.sink.index_setup import LIVE_FILTER
from consumer.sink.opensearch import OpenSearchSink, Result
from consumer.source import read_key_schema

# A read time must not be later than the read on DynamoDB's clock (consumer.repair.repair_version):
# hosts synced by NTP or Amazon Time Sync are within milliseconds; one second covers a sloppy clock
# at the price of repairs losing (as stale) to changes made in the second before the read.
CLOCK_SKEW_MARGIN_SECONDS = 1.0
SCROLL_PAGE_SIZE = 1000
WRITE_CHUNK_SIZE = 250


def audit_rules(settings: Settings, schema: KeySchema) -> ProjectionRules:
    """The workers' rules, for a table state: the filter (CDC_FILTER_MODE=state) and the fields kept,
    dropped and masked.

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
    return projection_rules(settings, schema)


@dataclass
class Reconciler:
    """Reads the table and the index, and writes repairs, for one table and its index."""

    table: str
    schema: KeySchema
    shaping: ProjectionRules
    dynamodb: Any
    search: OpenSearch
    sink: OpenSearchSink
    clock: Callable[[], float] = field(default=time.time)

    @classmethod
    def from_settings(cls, settings: Settings) -> Reconciler:
        """Clients from the workers' settings. Raises ConfigError for a set-up it cannot work with."""
        dynamodb = aws_clients(settings.aws_region, settings.streams_endpoint_url).dynamodb
        schema = read_key_schema(dynamodb, settings.source_table)
        shaping = audit_rules(settings, schema)
        search = opensearch_client(settings, exact_numbers=True)
        sink = OpenSearchSink(
            search,
            settings.index_name,
            Metrics(CollectorRegistry()),
            settings.retry_base_seconds,
            settings.retry_max_delay_seconds,
        )
        return cls(settings.source_table, schema, shaping, dynamodb, search, sink)

    @property
    def index(self) -> str:
        return self.sink.index

    def read_time(self) -> float:
        """A time no later than a read that starts now, on DynamoDB's clock."""
        return self.clock() - CLOCK_SKEW_MARGIN_SECONDS

    def scan_table(self) -> tuple[float, dict[str, Document]]:
        """Every item as the worker projects it (id → document), read consistently, and the read time."""
        read_at = self.read_time()
        documents: dict[str, Document] = {}
        try:
            pages = self.dynamodb.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True)
            for page in pages:
                for item in page["Items"]:
                    doc_id, document = project_item(self.schema, item, self.shaping)
                    if document is not None:  # an item the filter leaves out is expected absent
                        documents[doc_id] = document
        except (ClientError, BotoCoreError) as exc:
            raise self._table_error("Scan", exc) from exc
        return read_at, documents

    def get_item(self, key: Item) -> tuple[float, Item | None]:
        """The item's current state (None when it does not exist), read consistently, and the read time.

        Raises:
            RecordError: when DynamoDB refuses the key (a value that is no valid key).
        """
        read_at = self.read_time()
        try:
            response = self.dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ValidationException":
                raise RecordError(f"GetItem refused the key: {exc}") from exc
            raise self._table_error("GetItem", exc) from exc
        except BotoCoreError as exc:
            raise self._table_error("GetItem", exc) from exc
        return read_at, response.get("Item")

    def scroll_index(self) -> Iterator[tuple[str, Document]]:
        """Every live document of the index (id, source as the item has it: diverted attributes put
        back, numbers exact), however many, tombstones left out (a tombstone is an absent item);
        nothing when the index does not exist."""
        try:
            if not self.search.indices.exists(index=self.index):
                return
            self.search.indices.refresh(index=self.index)  # documents written in the last second count too
            hits = helpers.scan(
                self.search, index=self.index, query={"query": LIVE_FILTER}, size=SCROLL_PAGE_SIZE, scroll="5m"
            )
            for hit in hits:
                yield hit["_id"], natural_document(hit.get("_source") or {})
        except (TransportError, helpers.ScanError) as exc:
            raise SinkError(f"reading index {self.index!r} failed: {exc}") from exc

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
