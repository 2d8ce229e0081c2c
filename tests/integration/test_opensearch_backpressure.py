"""A real 429: an OpenSearch node whose write thread pool cannot keep up rejects bulk items, and the
consumer backs off and converges (what the fault proxy can only imitate)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from opensearchpy import OpenSearch
from prometheus_client import CollectorRegistry

from consumer.observability.metrics import Metrics
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.index_setup import ensure_index
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor
from tests.support.factories import stream_record
from tests.support.opensearch_node import OpenSearchNode
from tests.support.tables import index_documents

pytestmark = pytest.mark.integration
SCHEMA = KeySchema((KeyAttribute("pk", "S"),))
WRITERS = 6
BATCHES = 4
BATCH_SIZE = 150


@pytest.fixture(scope="module")
def overloaded_node() -> Iterator[OpenSearchNode]:
    """A node with one write thread and a queue of two: a fourth concurrent shard bulk is rejected."""
    node = OpenSearchNode.start(settings={"thread_pool.write.size": "1", "thread_pool.write.queue_size": "2"})
    yield node
    assert node.stop() == 0, "SIGTERM must close the node and exit 0"


def test_the_overloaded_node_rejects_concurrent_bulk_items_with_429(overloaded_node):
    # GIVEN 24 bulk requests of 50 documents to a one-shard index, 8 at a time
    client = OpenSearch(hosts=[overloaded_node.url], pool_maxsize=8)
    client.indices.create(index="busy", body={"settings": {"number_of_shards": 1}})

    def bulk(batch: int) -> list[dict]:
        lines = [line for i in range(50) for line in ({"index": {"_id": f"{batch}-{i}"}}, {"n": i})]
        return client.bulk(index="busy", body=lines)["items"]

    with ThreadPoolExecutor(8) as pool:
        items = [item["index"] for batch in pool.map(bulk, range(24)) for item in batch]

    # THEN some items are rejected with a real 429 (2.19 names it rejected_execution_exception;
    # older versions es_rejected_execution_exception), the rest created
    outcomes = Counter((item["status"], item.get("error", {}).get("type")) for item in items)
    assert outcomes[(429, "rejected_execution_exception")] > 0, outcomes
    assert set(outcomes) <= {(201, None), (429, "rejected_execution_exception")}, outcomes


def test_real_429s_are_backed_off_until_every_record_is_applied(overloaded_node, tmp_path):
    # GIVEN six writers (a worker's shard consumers) sharing one sink to a one-shard index
    client = OpenSearch(hosts=[overloaded_node.url], timeout=60)
    index = "backpressure"
    client.indices.create(index=index, body={"settings": {"number_of_shards": 1}})
    ensure_index(client, index, f"{index}-live", SCHEMA)
    metrics = Metrics(CollectorRegistry())
    sink = OpenSearchSink(client, index, metrics, retry_base_seconds=0.05, retry_cap_seconds=0.5)
    processor = BatchProcessor(SCHEMA, sink, DeadLetterFile(tmp_path / "dead-letters.jsonl"), metrics)

    def write(writer: int) -> None:
        version = 0
        for batch in range(BATCHES):
            records = [
                stream_record("INSERT", keys={"pk": {"S": f"w{writer}-{batch}-{i}"}}, second=1_800_000_000 + batch)
                for i in range(BATCH_SIZE)
            ]
            version = processor.process(f"shard-{writer}", records, version, threading.Event()).version

    # WHEN they all push bulk requests at once
    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)

    # THEN OpenSearch rejected items with 429 (retried, never dead-lettered), and every record is indexed
    try:
        assert not any(thread.is_alive() for thread in threads)
        assert metrics.registry.get_sample_value("cdc_sink_retries_total") > 0
        assert metrics.registry.get_sample_value("cdc_records_dead_lettered_total") == 0
        assert metrics.registry.get_sample_value("cdc_sink_available") == 1  # throttling is not an outage
        assert len(index_documents(overloaded_node.url, index)) == WRITERS * BATCHES * BATCH_SIZE
    finally:
        processor.close()
