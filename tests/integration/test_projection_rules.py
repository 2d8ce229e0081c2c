"""Projection rules end to end: a worker with TTL marking, a filter and masking reads a stream."""

from __future__ import annotations

import pytest

from tests.support.tables import create_table, index_documents
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration


def item(pk: str, status: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"N": "1"}, "status": {"S": status}, "email": {"S": f"{pk}@example.com"}}


def test_ttl_marking_filters_and_masking_shape_the_index(
    ddb, osmem, stream_server, table_name, worker_env, start_worker
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
        # removals carry no NewImage: let them through with a second pattern (patterns are OR'ed)
        "CDC_FILTER_PATTERNS": '[{"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": "closed"}]}}}},'
        ' {"eventName": ["REMOVE"]}]',
        "CDC_MASK_FIELDS": "email",
    }
    worker = start_worker(env)
    wait_until(lambda: worker.metric("cdc_records_processed_total") == 5, timeout=60, what="every record settled")

    # THEN the expired item stays, marked; the deleted one is gone; the closed one never came; emails are masked
    documents = index_documents(osmem.url, table_name)
    assert sorted(documents) == ["a|1"]
    assert documents["a|1"]["_ttl_expired"] is True
    assert documents["a|1"]["email"].startswith("sha256:")
    assert worker.metric('cdc_records_processed_total{event="INSERT",outcome="filtered"}') == 1
