"""The index equals the table whatever the delivery history — property-tested against osmem-server and a real OpenSearch node.

Hypothesis draws a history of changes to a few items (puts, deletes, re-inserts, many within one
second) on a stream whose shard may split mid-history (children routed by key), and a delivery
schedule over it, as the real service could experience it:

* batches of random sizes, each applied by the real ``BatchProcessor`` with the version clock
  threaded through, children only after their parent, starting from the parent's final clock;
* restarts at random batch boundaries: the shard is re-read from an earlier checkpoint with the
  clock stored with it (duplicates);
* zombie writes: an earlier batch applied again, late, from its original checkpoint;
* late replays after tombstone GC: ``index.gc_deletes`` is 0 s, so OpenSearch has forgotten every
  delete's version by the time the zombies write.

Whatever was drawn, the index seen through the read alias must equal the final table state.
"""

from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch
from prometheus_client import CollectorRegistry

from consumer.observability.metrics import Metrics
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.index_setup import ensure_index
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor
from tests.support.histories import final_table, histories, shards_of
from tests.support.tables import forget_deletes, index_documents

pytestmark = [pytest.mark.integration, pytest.mark.engines]
SCHEMA = KeySchema((KeyAttribute("pk", "S"),))
_indices = itertools.count()


@pytest.fixture(scope="module")
def client(search_engine) -> OpenSearch:
    return OpenSearch(hosts=[search_engine.url])


@given(
    changes=histories(),
    split=st.floats(0, 1) | st.none(),
    data=st.data(),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_index_equals_the_table_whatever_the_delivery_history(
    client, search_engine, tmp_path, changes, split, data
):
    # GIVEN a fresh index whose delete tombstones OpenSearch forgets at once (gc_deletes 0 s)
    index = f"history-{next(_indices)}"
    client.indices.create(index=index, body={"settings": {"index": {"gc_deletes": "0s"}}})
    ensure_index(client, index, f"{index}-live", SCHEMA)
    metrics = Metrics(CollectorRegistry())
    processor = BatchProcessor(
        SCHEMA, OpenSearchSink(client, index, metrics), DeadLetterFile(tmp_path / f"{index}.jsonl"), metrics
    )
    split_at = None if split is None else int(split * len(changes))
    parent, *children = shards_of(changes, split_at)
    stop = threading.Event()
    zombies: list[tuple[list[dict], int]] = []

    def deliver(records: list[dict], start_version: int) -> int:
        """Deliver a shard in random batches with random restarts; returns its final clock."""
        checkpoints = [(0, start_version)]  # (records settled, clock) after each batch
        position, version, restarts = 0, start_version, 0
        while position < len(records):
            size = data.draw(st.integers(1, 8), label="batch size")
            batch = records[position : position + size]
            zombies.append((batch, version))
            version = processor.process("shard", batch, version, stop).version
            position += len(batch)
            checkpoints.append((position, version))
            if restarts < 3 and data.draw(st.booleans(), label="crash here?"):  # resume from an older checkpoint
                position, version = data.draw(st.sampled_from(checkpoints), label="restart from")
                restarts += 1
        return version

    # WHEN the lineage is delivered: the parent, then each child from the parent's final clock,
    # and then some earlier batches are replayed late by zombies, after the tombstones' GC
    parent_end = deliver(parent, 0)
    for child in children:
        deliver(child, parent_end)
    late = data.draw(st.lists(st.sampled_from(zombies), max_size=4), label="zombies") if zombies else []
    if late:
        forget_deletes(client, index)
    for batch, version in late:
        processor.process("shard", batch, version, stop)

    # THEN the index, as applications read it, equals the table
    try:
        documents = index_documents(search_engine.url, index)
        assert {doc_id: {k: doc[k] for k in ("pk", "revision")} for doc_id, doc in documents.items()} == final_table(
            changes
        )
    finally:
        processor.close()
        client.indices.delete(index=index)
