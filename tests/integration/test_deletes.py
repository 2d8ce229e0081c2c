"""Deletes that cannot be resurrected: tombstone documents, the filtered read alias and the reaper,
against osmem-server and a real OpenSearch node (docs/versioning.md, "Deletes").

OpenSearch forgets a delete's version after ``index.gc_deletes`` (60 s); these tests set it to 0 s
on their index, so "a stale replay after the GC" needs no waiting.
"""

from __future__ import annotations

import threading

import pytest
from opensearchpy import OpenSearch
from prometheus_client import CollectorRegistry

from consumer.observability.metrics import Metrics
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.pipeline.versioning import COUNTER_BITS
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.index_setup import ensure_index
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor
from consumer.sink.reaper import Reaper, ReapResult
from tests.support.factories import stream_record
from tests.support.tables import forget_deletes, index_documents

pytestmark = [pytest.mark.integration, pytest.mark.engines]
SCHEMA = KeySchema((KeyAttribute("pk", "S"),))
T0 = 1_700_000_000
DAY = 86_400


@pytest.fixture
def client(search_engine) -> OpenSearch:
    return OpenSearch(hosts=[search_engine.url])


@pytest.fixture
def index(client, table_name) -> str:
    """The index, created with ``index.gc_deletes`` 0 s, then bootstrapped as a worker does."""
    client.indices.create(index=table_name, body={"settings": {"index": {"gc_deletes": "0s"}}})
    ensure_index(client, table_name, f"{table_name}-live", SCHEMA)
    return table_name


@pytest.fixture
def processor(client, index, tmp_path) -> BatchProcessor:
    metrics = Metrics(CollectorRegistry())
    sink = OpenSearchSink(client, index, metrics, retry_base_seconds=0.01, retry_cap_seconds=0.05)
    return BatchProcessor(SCHEMA, sink, DeadLetterFile(tmp_path / "dead-letters.jsonl"), metrics)


def apply(processor: BatchProcessor, *records: dict) -> None:
    """Apply records as a fresh reader of their shard would (clock from 0: a replay gets the same versions)."""
    processor.process("shard-1", list(records), 0, threading.Event())


def insert(pk: str, second: int, payload: str = "new") -> dict:
    keys = {"pk": {"S": pk}}
    return stream_record("INSERT", keys=keys, new_image={**keys, "payload": {"S": payload}}, second=second)


def remove(pk: str, second: int) -> dict:
    return stream_record("REMOVE", keys={"pk": {"S": pk}}, second=second)


def physical(client: OpenSearch, index: str, doc_id: str) -> dict:
    return client.get(index=index, id=doc_id)


def test_a_stale_replay_after_the_delete_gc_cannot_resurrect_a_deleted_item(client, index, processor):
    # GIVEN an item inserted (v1) and deleted (v2) through the real processor
    apply(processor, insert("a", T0), remove("a", T0 + 1))

    # WHEN the INSERT is replayed after OpenSearch's delete GC (gc_deletes 0 s on this index)
    forget_deletes(client, index)
    apply(processor, insert("a", T0))

    # THEN the item stays deleted through the read alias; the tombstone holds the higher version
    assert index_documents(_url(client), f"{index}-live") == {}
    tombstone = physical(client, index, "a")
    assert tombstone["_version"] == (T0 + 1) << COUNTER_BITS
    assert tombstone["_source"] == {"pk": "a", "_cdc_deleted": True, "_cdc_deleted_at": T0 + 1}

    # AND a re-insert (a newer change) replaces the tombstone
    apply(processor, insert("a", T0), remove("a", T0 + 1), insert("a", T0 + 2, payload="again"))
    assert index_documents(_url(client), f"{index}-live") == {"a": {"pk": "a", "payload": "again"}}


def test_contrast_a_plain_bulk_delete_is_resurrected_by_the_same_late_replay(client, index):
    # GIVEN a document deleted the old way, by a _bulk delete at the higher version
    version = T0 << COUNTER_BITS
    meta = {"_index": index, "_id": "b", "version_type": "external"}
    client.bulk(body=[{"index": {**meta, "version": version}}, {"pk": "b"}])
    client.bulk(body=[{"delete": {**meta, "version": version + 1}}])

    # WHEN the stale index arrives after the delete's GC
    forget_deletes(client, index)
    answer = client.bulk(body=[{"index": {**meta, "version": version}}, {"pk": "b"}])

    # THEN it is accepted: the deleted document is back (what tombstones prevent)
    assert answer["items"][0]["index"]["status"] == 201
    assert index_documents(_url(client), f"{index}-live") == {"b": {"pk": "b"}}


def test_the_read_alias_never_shows_deleted_items_while_the_index_keeps_their_tombstones(client, index, processor):
    # GIVEN five items of which two are deleted
    apply(processor, *(insert(f"i{n}", T0) for n in range(5)), remove("i1", T0 + 1), remove("i3", T0 + 1))

    # WHEN the read alias and the physical index are searched
    live = index_documents(_url(client), f"{index}-live")
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"query": {"match_all": {}}, "size": 100})["hits"]["hits"]

    # THEN the alias shows only live items (a plain match_all and a count too), the index all five
    assert sorted(live) == ["i0", "i2", "i4"]
    alias_hits = client.search(index=f"{index}-live", body={"query": {"match_all": {}}, "size": 100})["hits"]["hits"]
    assert sorted(hit["_id"] for hit in alias_hits) == ["i0", "i2", "i4"]
    assert client.count(index=f"{index}-live")["count"] == 3
    assert sorted(hit["_id"] for hit in hits if hit["_source"].get("_cdc_deleted")) == ["i1", "i3"]
    assert len(hits) == 5


def test_bootstrap_is_idempotent(client, index):
    assert ensure_index(client, index, f"{index}-live", SCHEMA) is False
    aliases = client.indices.get_alias(index=index)[index]["aliases"]
    assert aliases[f"{index}-live"]["filter"] == {"bool": {"must_not": {"term": {"_cdc_deleted": True}}}}
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert mapping["_cdc_deleted_at"] == {"type": "date", "format": "epoch_second"}


class _ReinsertAfterSearch:
    """A client whose search returns, then a re-insert of ``pk`` lands before the reaper's _bulk."""

    def __init__(self, client: OpenSearch, processor: BatchProcessor, record: dict) -> None:
        self._client, self._processor, self._record = client, processor, record
        self.indices = client.indices

    def search(self, **kwargs):
        answer = self._client.search(**kwargs)
        apply(self._processor, self._record)
        return answer

    def bulk(self, **kwargs):
        return self._client.bulk(**kwargs)


def test_the_reaper_deletes_only_tombstones_older_than_the_retention(client, index, processor):
    # GIVEN tombstones deleted two days ago and half a day ago, and a live item deleted never
    apply(
        processor,
        insert("old", T0),
        insert("young", T0),
        insert("live", T0),
        remove("old", T0 + 1),
        remove("young", T0 + DAY + DAY // 2),
    )
    client.indices.refresh(index=index)
    now = T0 + 2 * DAY + 10

    # WHEN the reaper runs with a one-day retention (a clock at `now`)
    result = Reaper(client, index, retention_seconds=DAY, clock=lambda: now).reap_once()

    # THEN only the old tombstone is gone; the young one and the live item stay
    assert result == ReapResult(deleted=1, kept=0, failed=0, more=False)
    client.indices.refresh(index=index)
    assert sorted(hit["_id"] for hit in _all(client, index)) == ["live", "young"]

    # AND a second pass (or another worker's) finds nothing more to do
    assert Reaper(client, index, retention_seconds=DAY, clock=lambda: now).reap_once().deleted == 0


def test_the_reaper_never_deletes_a_document_re_inserted_after_its_search(client, index, processor):
    # GIVEN an old tombstone, and a re-insert of its item landing between the reaper's search and delete
    apply(processor, insert("x", T0), remove("x", T0 + 1))
    client.indices.refresh(index=index)
    racing = _ReinsertAfterSearch(client, processor, insert("x", T0 + 2, payload="back"))

    # WHEN the reaper runs
    result = Reaper(racing, index, retention_seconds=DAY, clock=lambda: T0 + 3 * DAY).reap_once()

    # THEN its conditional delete answers 409 and the re-inserted item stays
    assert result == ReapResult(deleted=0, kept=1, failed=0, more=False)
    assert index_documents(_url(client), f"{index}-live") == {"x": {"pk": "x", "payload": "back"}}


def _all(client: OpenSearch, index: str) -> list[dict]:
    return client.search(index=index, body={"query": {"match_all": {}}, "size": 100})["hits"]["hits"]


def _url(client: OpenSearch) -> str:
    host = client.transport.hosts[0]
    return f"http://{host['host']}:{host['port']}"
