"""OpenSearch failures, injected at the HTTP level by a proxy in front of OpenSearch (osmem-server and a real node).

Retriable failures (5xx, 429, for a whole request or single items) are retried until applied;
a poison record is dead-lettered whole and the rest of its batch still applies; a stop during
retries abandons the batch without acknowledging it; a worker never checkpoints a record whose
write OpenSearch has not acknowledged.
"""

from __future__ import annotations

import json
import threading

import pytest
from prometheus_client import CollectorRegistry

from consumer.config import load_settings
from consumer.errors import Interrupted
from consumer.leases.model import TRIM_HORIZON, Lease
from consumer.observability.metrics import Metrics
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.runtime.clients import opensearch_client
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.opensearch import NO_LIMITS, OpenSearchSink, RetryLimits
from consumer.sink.processor import BatchProcessor
from tests.support.factories import poison_batch, stream_record
from tests.support.tables import create_table, index_documents, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engines]
SCHEMA = KeySchema((KeyAttribute("pk", "S"),))


def make_pipeline(proxy, table_name, tmp_path, limits=NO_LIMITS):
    """A processor writing through the proxy into index ``table_name``, with fast retries."""
    settings, _ = load_settings({"CDC_TABLE_NAME": table_name, "CDC_OPENSEARCH_URL": proxy.url})
    metrics = Metrics(CollectorRegistry())
    sink = OpenSearchSink(
        opensearch_client(settings), table_name, metrics, retry_base_seconds=0.01, retry_cap_seconds=0.05, limits=limits
    )
    dead_letters = DeadLetterFile(tmp_path / "dead-letters.jsonl")
    return BatchProcessor(SCHEMA, sink, dead_letters, metrics), metrics, dead_letters.path


@pytest.fixture
def pipeline(proxy, table_name, tmp_path):
    return make_pipeline(proxy, table_name, tmp_path)


def records(count, prefix="item"):
    return [
        stream_record("INSERT", keys={"pk": {"S": f"{prefix}-{i}"}}, second=1_700_000_000 + i) for i in range(count)
    ]


def test_whole_request_5xx_is_retried_until_applied(pipeline, proxy, search_engine, table_name):
    processor, metrics, _ = pipeline
    proxy.fail_requests(503, count=2)
    result = processor.process("shard-1", records(20), 0, threading.Event())
    assert result.outcomes[("INSERT", "applied")] == 20
    assert proxy.failed_requests == 2
    assert metrics.registry.get_sample_value("cdc_sink_retries_total") == 40
    assert len(index_documents(search_engine.url, table_name)) == 20


def test_item_level_429_is_retried_until_applied(pipeline, proxy, search_engine, table_name):
    processor, _, _ = pipeline
    proxy.fail_items(429, count=1)
    result = processor.process("shard-1", records(10), 0, threading.Event())
    assert result.outcomes[("INSERT", "applied")] == 10
    assert proxy.bulk_requests == 2
    assert len(index_documents(search_engine.url, table_name)) == 10


def test_stop_during_retries_abandons_the_batch(pipeline, proxy, search_engine, table_name):
    processor, _, _ = pipeline
    proxy.fail_requests(503)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(Interrupted):
        processor.process("shard-1", records(5), 0, stop)
    assert index_documents(search_engine.url, table_name) == {}


def test_a_poison_record_is_dead_lettered_and_its_batch_still_applies(pipeline, search_engine, table_name):
    # GIVEN a batch where OpenSearch refuses one document (more fields than the index takes), and one
    # malformed record
    processor, metrics, dead_letter_path = pipeline
    good, conflicting, malformed, later = poison_batch()

    # WHEN it is processed
    result = processor.process("shard-1", [good, conflicting, malformed, later], 0, threading.Event())

    # THEN the good records apply, the others are dead-lettered whole, and the batch position moves on
    assert sorted(index_documents(search_engine.url, table_name)) == ["a", "d"]
    letters = [json.loads(line) for line in dead_letter_path.read_text().splitlines()]
    assert [letter["sequence_number"] for letter in letters] == [
        malformed["dynamodb"]["SequenceNumber"],
        conflicting["dynamodb"]["SequenceNumber"],
    ]
    assert all(letter["shard_id"] == "shard-1" for letter in letters)
    assert "eventName 'UPSERT'" in letters[0]["error"]
    assert letters[1]["error"].startswith("400 ") and "Limit of total fields" in letters[1]["error"]
    assert letters[1]["document"]["attribute_0"] == "x"
    assert result.last_sequence_number == later["dynamodb"]["SequenceNumber"]
    assert metrics.registry.get_sample_value("cdc_records_dead_lettered_total") == 2


def test_worker_never_checkpoints_past_unacknowledged_writes(
    ddb, search_engine, proxy, table_name, worker_env, start_worker
):
    # GIVEN OpenSearch answering 503 to every bulk request, and a history to apply
    create_table(ddb, table_name)
    write_random_history(ddb, table_name, changes=100, seed=11)
    proxy.fail_requests(503)
    env = {**worker_env, "CDC_OPENSEARCH_URL": proxy.url, "CDC_RETRY_MAX_DELAY_SECONDS": "0.2"}

    # WHEN a worker reads the records but cannot write them, then is stopped
    worker = start_worker(env, "blocked")
    wait_until(
        lambda: worker.metric("cdc_records_read_total") > 0 and proxy.failed_requests >= 3,
        timeout=60,
        what="reads and failed writes",
    )
    assert worker.terminate() == 0

    # THEN the checkpoint never moved and the lease was handed back
    (lease,) = [Lease.from_item(i) for i in ddb.scan(TableName=f"{table_name}-cdc-leases")["Items"]]
    assert (lease.checkpoint, lease.owner) == (TRIM_HORIZON, None)
    assert [event["reason"] for event in worker.events("shard_task_stopped")] == ["interrupted"]

    # AND once OpenSearch recovers, a new worker applies everything
    proxy.heal()
    start_worker(env, "healed")
    wait_until(
        lambda: index_documents(search_engine.url, table_name) == table_documents(ddb, table_name),
        timeout=60,
        what="index to equal table",
    )


@pytest.mark.parametrize(
    ("limits", "attempts"),
    [(RetryLimits(max_attempts=3), 3), (RetryLimits(max_record_age_seconds=60), 1)],
    ids=["max-attempts", "max-record-age"],
)
def test_exhausted_retries_dead_letter_the_batch_and_the_shard_moves_on(
    proxy, search_engine, table_name, tmp_path, limits, attempts
):
    # GIVEN OpenSearch failing every request, and retry limits (the factory's records are from 2023: old)
    processor, metrics, dead_letter_path = make_pipeline(proxy, table_name, tmp_path, limits)
    proxy.fail_requests(503)
    batch = records(4)

    # WHEN the batch is processed
    result = processor.process("shard-1", batch, 0, threading.Event())

    # THEN after exactly the allowed attempts its records are dead-lettered with that count, and the
    # batch settles (the shard's checkpoint may move past it)
    assert proxy.failed_requests == attempts
    letters = [json.loads(line) for line in dead_letter_path.read_text().splitlines()]
    assert [letter["attempts"] for letter in letters] == [attempts] * 4
    assert all("gave up after" in letter["error"] for letter in letters)
    assert result.last_sequence_number == batch[-1]["dynamodb"]["SequenceNumber"]
    assert metrics.registry.get_sample_value("cdc_records_dead_lettered_total") == 4


def test_a_record_that_makes_processing_crash_is_dead_lettered_and_the_shard_moves_on(
    pipeline, search_engine, table_name
):
    # GIVEN a record crafted to raise an unexpected exception in decoding (a stand-in for a bug):
    # its SizeBytes is infinite, which int() refuses with OverflowError
    processor, metrics, dead_letter_path = pipeline
    crashing = stream_record("INSERT", keys={"pk": {"S": "boom"}})
    crashing["dynamodb"]["SizeBytes"] = float("inf")
    after = stream_record("INSERT", keys={"pk": {"S": "after"}})

    # WHEN it is processed with a good record after it
    result = processor.process("shard-1", [crashing, after], 0, threading.Event())

    # THEN it is dead-lettered with the exception's class and message, and the batch still settles
    (letter,) = [json.loads(line) for line in dead_letter_path.read_text().splitlines()]
    assert letter["error"].startswith("OverflowError: ") and letter["record"]["dynamodb"]["Keys"] == {
        "pk": {"S": "boom"}
    }
    assert sorted(index_documents(search_engine.url, table_name)) == ["after"]
    assert result.last_sequence_number == after["dynamodb"]["SequenceNumber"]
