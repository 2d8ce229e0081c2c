"""Projection rules end to end: a worker with TTL marking, a state filter and keyed masking reads a
stream; and, for random histories and random filters, the live index equals the filtered table."""

from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch
from prometheus_client import CollectorRegistry

from consumer.observability.metrics import Metrics
from consumer.pipeline.attributes import item_to_json
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.pipeline.projection_rules import ProjectionRules
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.index_setup import ensure_index
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor
from tests.support.factories import one_index, stream_record
from tests.support.tables import create_table, index_documents
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engines]
SCHEMA = KeySchema((KeyAttribute("pk", "S"),))
T0 = 1_800_000_000


def item(pk: str, status: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"N": "1"}, "status": {"S": status}, "email": {"S": f"{pk}@example.com"}}


def test_ttl_marking_filters_and_masking_shape_the_index(
    ddb, search_engine, stream_server, table_name, worker_env, start_worker
):
    # GIVEN a stream with inserts (one closed), a TTL expiry of "a" and a user delete of "b"
    create_table(ddb, table_name)  # the key schema comes from the table
    key_schema = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    arn = stream_server.create_stream(table_name, key_schema=key_schema)
    for pk, status in [("a", "active"), ("b", "active"), ("c", "closed")]:
        stream_server.put_change(arn, "INSERT", {"pk": {"S": pk}, "sk": {"N": "1"}}, new_image=item(pk, status))
    stream_server.put_change(
        arn, "REMOVE", {"pk": {"S": "a"}, "sk": {"N": "1"}}, old_image=item("a", "active"), ttl=True
    )
    stream_server.put_change(arn, "REMOVE", {"pk": {"S": "b"}, "sk": {"N": "1"}}, old_image=item("b", "active"))

    # WHEN a worker projects it with TTL marking, a status filter and a masked email
    env = {
        **worker_env,
        "CDC_STREAM_ARN": arn,
        "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": stream_server.url,
        "CDC_TTL_DELETES": "mark",
        # a state filter: the index holds the items that are not closed (a REMOVE is judged on its OldImage)
        "CDC_FILTER_PATTERNS": '{"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": "closed"}]}}}}',
        "CDC_MASK_FIELDS": "email",
        "CDC_MASK_KEY": "a-test-key-of-16-bytes",
    }
    worker = start_worker(env)
    wait_until(lambda: worker.metric("cdc_records_processed_total") == 5, timeout=60, what="every record settled")

    # THEN the expired item stays, marked; the deleted one is gone; the closed one never came; emails are masked
    documents = index_documents(search_engine.url, table_name)
    assert sorted(documents) == ["a|1"]
    assert documents["a|1"]["_ttl_expired"] is True
    assert documents["a|1"]["email"].startswith("hmac-sha256:")
    assert worker.metric('cdc_records_processed_total{event="INSERT",outcome="filtered",route="none"}') == 1


STATUSES = ["active", "closed", "pending"]
FILTERS = [
    {"dynamodb": {"NewImage": {"status": {"S": ["active"]}}}},
    {"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": ["closed"]}]}}}},
    {"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">", 5]}]}}}},
    {"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "k1"}]}}, "NewImage": {"status": {"S": ["pending"]}}}},
]
_indices = itertools.count()


@given(
    changes=st.lists(
        st.tuples(st.sampled_from([f"k{i}" for i in range(5)]), st.sampled_from([*STATUSES, None]), st.integers(0, 9)),
        max_size=30,
    ),
    pattern=st.sampled_from(FILTERS),
    old_images=st.booleans(),
    replays=st.integers(0, 3),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_live_index_equals_the_filtered_table_whatever_the_history_and_filter(
    search_engine, tmp_path, changes, pattern, old_images, replays
):
    # GIVEN a history of puts and deletes (status None) on a stream with or without old images, and a filter
    client = OpenSearch(hosts=[search_engine.url])
    index = f"filtered-{next(_indices)}"
    ensure_index(client, index, f"{index}-live", SCHEMA)
    metrics = Metrics(CollectorRegistry())
    rules = ProjectionRules(patterns=(pattern,))
    processor = BatchProcessor(
        SCHEMA,
        OpenSearchSink(client, index, metrics),
        DeadLetterFile(tmp_path / f"{index}.jsonl"),
        metrics,
        routing=one_index(rules, index),
    )
    table: dict[str, dict] = {}
    records = []
    for second, (pk, status, n) in enumerate(changes):
        keys = {"pk": {"S": pk}}
        old = table.get(pk)
        if status is None:
            if old is None:
                continue
            records.append(stream_record("REMOVE", keys=keys, old_image=old, second=T0 + second))
            del table[pk]
        else:
            new = {**keys, "status": {"S": status}, "n": {"N": str(n)}}
            event = "MODIFY" if old else "INSERT"
            records.append(stream_record(event, keys=keys, new_image=new, old_image=old, second=T0 + second))
            table[pk] = new
        if not old_images:
            records[-1]["dynamodb"].pop("OldImage", None)

    # WHEN it is applied in batches, with earlier batches replayed
    try:
        version = 0
        batches = [records[i : i + 4] for i in range(0, len(records), 4)]
        starts = []
        for batch in batches:
            starts.append(version)
            version = processor.process("shard", batch, version, threading.Event()).version
        for i in range(min(replays, len(batches))):
            processor.process("shard", batches[i], starts[i], threading.Event())

        # THEN the live index holds exactly the items of the table that match the filter, as they are
        expected = {
            pk: item_to_json(image) for pk, image in table.items() if rules.state_matches({"pk": image["pk"]}, image)
        }
        assert index_documents(search_engine.url, index) == expected
    finally:
        processor.close()
        client.indices.delete(index=index)
