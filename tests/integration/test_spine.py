"""The spine, end to end: a worker process streams a moto table into OpenSearch (osmem-server and a real node).

Every test ends by comparing the whole index with the whole table: same ids, same documents,
nothing extra.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest

from consumer.leases.model import Lease
from tests.support.tables import create_table, index_documents, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engines, pytest.mark.long]


def converged(ddb: Any, table: str, opensearch_url: str) -> bool:
    return index_documents(opensearch_url, table) == table_documents(ddb, table)


def assert_index_equals_table(ddb: Any, table: str, opensearch_url: str) -> None:
    expected = table_documents(ddb, table)
    actual = index_documents(opensearch_url, table)
    assert sorted(set(actual) - set(expected)) == [], "documents in the index that the table does not have"
    assert sorted(set(expected) - set(actual)) == [], "items of the table missing from the index"
    different = sorted(doc_id for doc_id in expected if expected[doc_id] != actual[doc_id])
    assert different == [], f"documents differing from their items, e.g. {different[:1]}"


def leases(ddb: Any, table: str) -> list[Lease]:
    items = ddb.scan(TableName=f"{table}-cdc-leases", ConsistentRead=True)["Items"]
    return [Lease.from_item(item) for item in items]


def stream_records(moto_url: str, table: str) -> list[dict[str, Any]]:
    """Every record of the table's (single-shard, moto) stream, read directly."""
    kwargs = {
        "endpoint_url": moto_url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    streams = boto3.client("dynamodbstreams", **kwargs)
    arn = boto3.client("dynamodb", **kwargs).describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    records: list[dict[str, Any]] = []
    while True:
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        if not page["Records"]:
            return records
        records.extend(page["Records"])
        iterator = page["NextShardIterator"]


def test_index_converges_to_table_and_sigterm_hands_the_lease_back(
    ddb, moto, search_engine, table_name, worker_env, start_worker
):
    # GIVEN a table with thousands of mixed changes: repeats, deletes, re-inserts, every type
    create_table(ddb, table_name)
    counts = write_random_history(ddb, table_name, changes=3000, seed=1)
    assert counts["delete"] > 300

    # WHEN one worker runs until it has caught up
    worker = start_worker(worker_env)
    wait_until(lambda: converged(ddb, table_name, search_engine.url), timeout=120, what="index to equal table")

    # THEN the index equals the table, and SIGTERM exits 0 with the lease released at the last record
    assert_index_equals_table(ddb, table_name, search_engine.url)
    records = stream_records(moto.url, table_name)
    wait_until(
        lambda: worker.metric("cdc_records_processed_total") == len(records),
        timeout=30,
        what="every record to have an outcome",
    )
    assert worker.terminate() == 0
    (lease,) = leases(ddb, table_name)
    assert lease.owner is None
    assert lease.checkpoint == records[-1]["dynamodb"]["SequenceNumber"]
    assert lease.checkpoint_version > 0


def test_sigkill_mid_stream_then_a_new_worker_converges(ddb, search_engine, table_name, worker_env, start_worker):
    # GIVEN a worker applying a history while a writer keeps writing
    create_table(ddb, table_name)
    write_random_history(ddb, table_name, changes=1500, seed=2)
    first = start_worker(worker_env, "first")
    writer = threading.Thread(target=write_random_history, args=(ddb, table_name, 1500, 3))
    writer.start()
    wait_until(lambda: first.metric("cdc_records_processed_total") >= 500, timeout=60, what="first batches applied")

    # WHEN it is killed without warning mid-stream, and a different worker starts after more writes
    first.kill()
    writer.join()
    write_random_history(ddb, table_name, changes=500, seed=4)
    second = start_worker(worker_env, "second")

    # THEN the second worker takes the expired lease and the index converges: nothing lost or stale
    wait_until(lambda: converged(ddb, table_name, search_engine.url), timeout=120, what="index to equal table")
    assert_index_equals_table(ddb, table_name, search_engine.url)
    (lease,) = leases(ddb, table_name)
    assert lease.owner == "second-1"
    assert second.terminate() == 0


def test_restart_resumes_after_the_checkpoint(ddb, moto, search_engine, table_name, worker_env, start_worker):
    # GIVEN a worker that applied a history and stopped cleanly
    create_table(ddb, table_name)
    write_random_history(ddb, table_name, changes=400, seed=5)
    before = len(stream_records(moto.url, table_name))
    first = start_worker(worker_env, "first")
    wait_until(lambda: first.metric("cdc_records_processed_total") == before, timeout=60, what="history applied")
    assert first.terminate() == 0
    (stopped,) = leases(ddb, table_name)

    # WHEN more changes arrive and a new worker starts
    write_random_history(ddb, table_name, changes=150, seed=6)
    new_records = len(stream_records(moto.url, table_name)) - before
    second = start_worker(worker_env, "second")
    wait_until(lambda: second.metric("cdc_records_processed_total") == new_records, timeout=60, what="new records")

    # THEN it read exactly the new records, from an iterator after the checkpoint
    assert second.metric("cdc_records_read_total") == new_records
    (acquired, *_) = second.events("shard_iterator_acquired")
    assert acquired["position"] == stopped.checkpoint
    assert_index_equals_table(ddb, table_name, search_engine.url)


def test_initial_position_latest_skips_the_past(ddb, search_engine, table_name, worker_env, start_worker):
    # GIVEN changes made before the consumer ever ran
    create_table(ddb, table_name)
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "old"}, "sk": {"N": "1"}})

    # WHEN a worker starts at LATEST and new changes follow
    worker = start_worker({**worker_env, "CDC_INITIAL_POSITION": "LATEST"})
    wait_until(lambda: worker.events("shard_iterator_acquired"), timeout=30, what="reading to start")
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "new"}, "sk": {"N": "1"}})

    # THEN only the new change is indexed
    wait_until(lambda: index_documents(search_engine.url, table_name), timeout=30, what="the new change indexed")
    assert sorted(index_documents(search_engine.url, table_name)) == ["new|1"]


def test_metrics_show_per_shard_lag_and_records_by_outcome(
    ddb, moto, search_engine, table_name, worker_env, start_worker
):
    # GIVEN a worker that applied a small history
    create_table(ddb, table_name)
    write_random_history(ddb, table_name, changes=50, seed=7)
    records = stream_records(moto.url, table_name)
    worker = start_worker(worker_env)
    wait_until(lambda: worker.metric("cdc_records_processed_total") == len(records), timeout=60, what="records applied")

    # WHEN /metrics is scraped
    samples = worker.metrics()

    # THEN lag is reported per held shard and every record has an outcome
    age = [name for name in samples if name.startswith("cdc_shard_iterator_age_seconds{shard_id=")]
    since = [name for name in samples if name.startswith("cdc_shard_time_since_last_read_seconds{shard_id=")]
    assert len(age) == 1 and len(since) == 1
    assert_index_equals_table(ddb, table_name, search_engine.url)
    assert samples["cdc_leases_held"] == 1
    # AND the worker set up the filtered read alias applications search: it shows the table, no tombstones
    assert index_documents(search_engine.url, f"{table_name}-live") == table_documents(ddb, table_name)


def test_a_new_lease_table_for_an_existing_index_is_warned_about(
    ddb, moto, search_engine, table_name, worker_env, start_worker
):
    # GIVEN an index built by a worker whose lease table is then deleted (a reset)
    create_table(ddb, table_name)
    write_random_history(ddb, table_name, changes=30, seed=8)
    first = start_worker(worker_env, "first")
    wait_until(lambda: converged(ddb, table_name, search_engine.url), timeout=60, what="index to equal table")
    assert first.terminate() == 0
    assert not first.events("lease_table_created_for_existing_index")  # a first start is no reset
    ddb.delete_table(TableName=f"{table_name}-cdc-leases")

    # WHEN a worker starts again
    second = start_worker(worker_env, "second")
    wait_until(lambda: second.events("shard_task_started"), timeout=60, what="reading to start")

    # THEN it warns and says what to do, and replaying the whole stream leaves the index as it was
    (warning,) = second.events("lease_table_created_for_existing_index")
    assert "consumer audit --repair" in warning["action"]
    records = stream_records(moto.url, table_name)
    wait_until(lambda: second.metric("cdc_records_read_total") == len(records), timeout=60, what="full replay")
    assert_index_equals_table(ddb, table_name, search_engine.url)
