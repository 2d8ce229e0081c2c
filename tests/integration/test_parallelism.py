"""Per-key ordered parallelism inside a batch (CDC_PARALLELIZATION_FACTOR), observed on the wire."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest
from prometheus_client import CollectorRegistry

from consumer.config import load_settings
from consumer.observability.metrics import Metrics
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.runtime.clients import opensearch_client
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor
from tests.support.factories import stream_record
from tests.support.tables import index_documents

pytestmark = pytest.mark.integration


def test_a_parallel_batch_keeps_each_items_changes_together_and_in_order(proxy, osmem, table_name, tmp_path):
    # GIVEN a processor with parallelism 4 and a batch of 400 changes to 40 items, 10 each, interleaved
    settings, _ = load_settings({"CDC_TABLE_NAME": table_name, "CDC_OPENSEARCH_URL": proxy.url})
    metrics = Metrics(CollectorRegistry())
    sink = OpenSearchSink(opensearch_client(settings), table_name, metrics)
    processor = BatchProcessor(
        KeySchema((KeyAttribute("pk", "S"),)), sink, DeadLetterFile(tmp_path / "dlq.jsonl"), metrics, parallelism=4
    )
    batch = [
        stream_record(
            "MODIFY",
            keys={"pk": {"S": f"item-{n % 40}"}},
            new_image={"pk": {"S": f"item-{n % 40}"}, "revision": {"N": str(n)}},
            second=1_700_000_000,
        )
        for n in range(400)
    ]

    # WHEN it is processed
    try:
        result = processor.process("shard-1", batch, 0, threading.Event())
    finally:
        processor.close()

    # THEN it went out as 4 concurrent bulk requests, each item's 10 changes in one request in order,
    # and every item ends at its last change
    assert proxy.bulk_requests == 4
    assert result.outcomes[("MODIFY", "applied")] == 400
    revisions = defaultdict(list)
    for entry in proxy.ledger:
        revisions[entry.doc_id].append(entry.revision)
    assert all(seen == sorted(seen) and len(seen) == 10 for seen in revisions.values())
    documents = index_documents(osmem.url, table_name)
    assert {doc_id: doc["revision"] for doc_id, doc in documents.items()} == {f"item-{i}": 360 + i for i in range(40)}


def test_the_parallelization_factor_is_per_shard_so_busy_shards_do_not_share_it(proxy, osmem, table_name, tmp_path):
    # GIVEN a worker's processor for 6 shard threads with parallelism 2, and OpenSearch answering
    # each bulk request after 2 s (long enough for every shard's requests to arrive while the first
    # is held, even on a loaded machine)
    settings, _ = load_settings({"CDC_TABLE_NAME": table_name, "CDC_OPENSEARCH_URL": proxy.url})
    metrics = Metrics(CollectorRegistry())
    sink = OpenSearchSink(opensearch_client(settings), table_name, metrics)
    schema = KeySchema((KeyAttribute("pk", "S"),))
    processor = BatchProcessor(
        schema, sink, DeadLetterFile(tmp_path / "dlq.jsonl"), metrics, parallelism=2, concurrent_batches=6
    )
    proxy.stall(2.0, None)

    def shard(number: int) -> None:
        batch = [stream_record("INSERT", keys={"pk": {"S": f"s{number}-{i}"}}) for i in range(20)]
        processor.process(f"shard-{number}", batch, 0, threading.Event())

    # WHEN six shards apply a batch at once
    threads = [threading.Thread(target=shard, args=(number,)) for number in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        processor.close()

    # THEN each shard had its two requests in flight together: 12 at once, none waiting for a shared
    # pool (as Lambda's ParallelizationFactor: concurrent batches per shard)
    assert proxy.max_in_flight == 12
    assert len(index_documents(osmem.url, table_name)) == 120
