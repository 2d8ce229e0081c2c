"""Dead letters sent to SQS and S3 (moto server), from the real BatchProcessor and from a worker,
read back by ``consumer redrive``; and a destination that refuses writes makes the shard wait.

What was dead-lettered is read back from the queue or the bucket and must be exactly what the file
destination writes: the record's identity and keys, its shaped image, shard id, sequence number,
error and attempts.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import replace

import boto3
import orjson
import pytest
from prometheus_client import CollectorRegistry

from consumer.config import load_settings
from consumer.errors import ConfigError
from consumer.leases.model import Lease
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.pipeline.attributes import item_to_json
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.pipeline.letters import letter_for
from consumer.runtime.clients import opensearch_client
from consumer.sink.dlq import SQS_MAX_MESSAGE_BYTES, DeadLetterObjects, DeadLetterQueue
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor
from tests.support.commands import consumer
from tests.support.emulators import aws_env
from tests.support.factories import poison_batch, stream_record, unindexable_image
from tests.support.fault_proxy import FaultProxy
from tests.support.tables import create_table, index_documents, table_documents
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration
SCHEMA = KeySchema((KeyAttribute("pk", "S"),))


def aws_client(moto, service):
    env = aws_env(moto.url)
    return boto3.client(
        service,
        endpoint_url=moto.url,
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def sqs(moto):
    return aws_client(moto, "sqs")


@pytest.fixture
def s3(moto):
    return aws_client(moto, "s3")


@pytest.fixture
def queue_name():
    return f"dlq-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def bucket():
    return f"dlq-{uuid.uuid4().hex[:12]}"


def processor(osmem, table_name, dead_letters):
    settings, _ = load_settings({"CDC_TABLE_NAME": table_name, "CDC_OPENSEARCH_URL": osmem.url})
    metrics = Metrics(CollectorRegistry())
    sink = OpenSearchSink(opensearch_client(settings), table_name, metrics, 0.01, 0.05)
    return BatchProcessor(SCHEMA, sink, dead_letters, metrics), metrics


def receive_all(sqs, url):
    """Every message of the queue, deleted as read, as parsed JSON."""
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(orjson.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def read_objects(s3, bucket, prefix=""):
    """Key → the JSON lines of each object under ``prefix``."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        item["Key"]: [
            orjson.loads(line) for line in s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().splitlines()
        ]
        for item in listed
    }


def expected_letters(batch):
    """(sequence number, key) of the dead letters of a poison_batch, in the order written."""
    return [batch[2]["dynamodb"]["SequenceNumber"], batch[1]["dynamodb"]["SequenceNumber"]]


def assert_whole_letters(letters, batch):
    assert [letter["sequence_number"] for letter in letters] == expected_letters(batch)
    assert all(letter["shard_id"] == "shard-1" and letter["attempts"] == 1 for letter in letters)
    assert "eventName 'UPSERT'" in letters[0]["error"] and letters[1]["error"].startswith("400 ")
    assert letters[0]["record"]["eventName"] == "UPSERT"
    assert letters[1]["document"] == item_to_json(batch[1]["dynamodb"]["NewImage"])
    assert letters[1]["record"]["dynamodb"]["Keys"] == batch[1]["dynamodb"]["Keys"]
    assert letters[1]["record"]["eventID"] == batch[1]["eventID"] and "raw_record" not in letters[1]


def test_poison_records_arrive_whole_in_sqs(sqs, queue_name, osmem, table_name):
    # GIVEN a queue named by its name (resolved with GetQueueUrl) and a batch with two poison records
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    observed = []
    queue = DeadLetterQueue.connect(
        sqs, queue_name, lambda operation, outcome, _seconds: observed.append((operation, outcome))
    )
    processor_, _ = processor(osmem, table_name, queue)
    batch = poison_batch()

    # WHEN the batch is processed
    result = processor_.process("shard-1", batch, 0, threading.Event())

    # THEN the good records apply, each poison record is one whole message, and the batch settles
    assert sorted(index_documents(osmem.url, table_name)) == ["a", "d"]
    assert_whole_letters(receive_all(sqs, url), batch)
    assert result.last_sequence_number == batch[-1]["dynamodb"]["SequenceNumber"]
    assert observed == [("get_queue_url", "ok"), ("send_message_batch", "ok")]


def test_more_than_ten_poison_records_are_sent_in_batches_of_ten(sqs, queue_name, osmem, table_name):
    # GIVEN 23 malformed records and a queue named by its URL
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    observed = []
    queue = DeadLetterQueue.connect(
        sqs, url, lambda operation, outcome, _seconds: observed.append((operation, outcome))
    )
    processor_, _ = processor(osmem, table_name, queue)
    batch = [stream_record("INSERT", keys={"pk": {"S": f"p{i}"}}) for i in range(23)]
    for record in batch:
        record["eventName"] = "UPSERT"

    # WHEN processed
    processor_.process("shard-1", batch, 0, threading.Event())

    # THEN all 23 arrive, one per message, through three SendMessageBatch calls
    letters = receive_all(sqs, url)
    assert sorted(letter["sequence_number"] for letter in letters) == sorted(
        r["dynamodb"]["SequenceNumber"] for r in batch
    )
    assert observed.count(("send_message_batch", "ok")) == 3


def test_an_oversize_letter_reaches_sqs_with_its_keys_and_sequence_number(sqs, queue_name, osmem, table_name):
    # GIVEN a malformed record whose image is over 256 KiB
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    processor_, _ = processor(osmem, table_name, DeadLetterQueue.connect(sqs, queue_name))
    huge = stream_record("INSERT", keys={"pk": {"S": "huge"}}, new_image={"blob": {"S": "x" * 300_000}})
    huge["eventName"] = "UPSERT"

    # WHEN processed
    processor_.process("shard-1", [huge], 0, threading.Event())

    # THEN a message under the limit names the record, its keys and sequence number, and the error
    (letter,) = receive_all(sqs, url)
    assert len(orjson.dumps(letter)) <= SQS_MAX_MESSAGE_BYTES
    assert letter["sequence_number"] == huge["dynamodb"]["SequenceNumber"]
    assert letter["record"]["dynamodb"]["Keys"] == {"pk": {"S": "huge"}}
    assert letter["record"]["eventID"] == huge["eventID"] and "left out" in letter["record"]["note"]
    assert "eventName 'UPSERT'" in letter["error"]


def test_poison_records_arrive_whole_in_s3_and_a_retry_overwrites(s3, bucket, osmem, table_name):
    # GIVEN a bucket and prefix
    s3.create_bucket(Bucket=bucket)
    objects = DeadLetterObjects.connect(s3, bucket, "orders/dlq")
    processor_, _ = processor(osmem, table_name, objects)
    batch = poison_batch()

    # WHEN the same batch is processed twice (a retry after a failed checkpoint)
    processor_.process("shard-1", batch, 0, threading.Event())
    processor_.process("shard-1", batch, 0, threading.Event())

    # THEN one JSON-lines object, keyed by the shard and the letters' sequence range, holds them whole
    found = read_objects(s3, bucket, "orders/dlq/")
    low, high = sorted(expected_letters(batch), key=int)
    assert list(found) == [f"orders/dlq/shard-1/{low}-{high}.jsonl"]
    assert_whole_letters(found[f"orders/dlq/shard-1/{low}-{high}.jsonl"], batch)
    head = s3.head_object(Bucket=bucket, Key=f"orders/dlq/shard-1/{low}-{high}.jsonl")
    assert head["ContentType"] == "application/x-ndjson"


def test_a_missing_queue_or_bucket_is_a_config_error_naming_it(sqs, s3):
    # GIVEN neither exists WHEN connecting THEN ConfigError names each
    with pytest.raises(ConfigError, match="SQS queue 'no-such-queue' does not exist"):
        DeadLetterQueue.connect(sqs, "no-such-queue")
    with pytest.raises(ConfigError, match="S3 bucket 'no-such-bucket-x1' does not exist"):
        DeadLetterObjects.connect(s3, "no-such-bucket-x1")


def test_a_worker_dead_letters_to_s3_and_checkpoints_past_the_letter(
    ddb, s3, bucket, osmem, table_name, worker_env, start_worker
):
    # GIVEN a bucket as the destination, and a table whose second item no index can hold
    s3.create_bucket(Bucket=bucket)
    create_table(ddb, table_name)
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "n": {"N": "1"}})
    ddb.put_item(TableName=table_name, Item=unindexable_image({"pk": {"S": "b"}, "sk": {"N": "1"}}))
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "c"}, "sk": {"N": "1"}, "n": {"N": "3"}})
    env = {**worker_env, "CDC_DEAD_LETTER_DESTINATION": f"s3://{bucket}/cdc"}
    env.pop("CDC_DEAD_LETTER_PATH")

    # WHEN a worker runs
    worker = start_worker(env, "s3-dlq")
    wait_until(lambda: read_objects(s3, bucket, "cdc/"), timeout=60, what="a dead-letter object in S3")
    wait_until(lambda: sorted(index_documents(osmem.url, table_name)) == ["a|1", "c|1"], timeout=60, what="a and c")

    # THEN the letter holds item b's whole record, and the shard's checkpoint moved past it
    ((key, letters),) = read_objects(s3, bucket, "cdc/").items()
    (letter,) = letters
    assert key == f"cdc/{letter['shard_id']}/{letter['sequence_number']}-{letter['sequence_number']}.jsonl"
    assert letter["record"]["dynamodb"]["Keys"]["pk"] == {"S": "b"} and letter["error"].startswith("400 ")
    assert letter["document"]["attribute_0"] == "x"

    def checkpoint():
        (lease,) = [Lease.from_item(i) for i in ddb.scan(TableName=f"{table_name}-cdc-leases")["Items"]]
        return lease.checkpoint

    wait_until(
        lambda: checkpoint().isdigit() and int(checkpoint()) > int(letter["sequence_number"]),
        timeout=30,
        what="checkpoint past the dead letter",
    )
    assert worker.events("dead_letter_destination")[0]["destination"] == f"s3://{bucket}/cdc"
    assert worker.terminate() == 0


@pytest.mark.parametrize(
    ("destination", "named"),
    [
        ("sqs:no-such-queue", "SQS queue 'no-such-queue' does not exist"),
        ("s3://no-such-bucket-x2/p", "no-such-bucket-x2"),
    ],
)
def test_a_worker_with_a_missing_queue_or_bucket_exits_2_naming_it(
    ddb, table_name, worker_env, start_worker, destination, named
):
    # GIVEN a valid table but a destination that does not exist
    create_table(ddb, table_name)

    # WHEN a worker starts
    worker = start_worker({**worker_env, "CDC_DEAD_LETTER_DESTINATION": destination}, "missing-dlq")
    code = worker.wait(timeout=60)

    # THEN it exits 2 and the message names the queue or bucket
    assert code == 2
    assert named in worker.log_path.read_text()


def table_with_letters(ddb, table_name, count):
    """A table of ``count`` items and their dead letters (as a worker writes them), one per item."""
    create_table(ddb, table_name)
    letters = []
    for i in range(count):
        key = {"pk": {"S": f"item-{i}"}, "sk": {"N": "1"}}
        ddb.put_item(TableName=table_name, Item={**key, "n": {"N": str(i)}})
        letters.append(letter_for("shard-1", stream_record("INSERT", keys=key), "400 refused"))
    return letters


def test_redrive_reads_an_sqs_queue_and_deletes_only_settled_messages(
    ddb, sqs, queue_name, table_name, worker_env, search_engine
):
    # GIVEN 25 dead letters in a queue, for items the table holds, plus one message no one can read
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    DeadLetterQueue.connect(sqs, queue_name).write(table_with_letters(ddb, table_name, 25))
    sqs.send_message(QueueUrl=url, MessageBody="{not a letter")
    env = {**worker_env, "CDC_DEAD_LETTER_DESTINATION": f"sqs:{queue_name}"}

    # WHEN redrive runs as a dry run THEN it plans every letter and leaves the queue as it was
    dry = consumer({**env, "CDC_LOG_LEVEL": "INFO"}, "redrive", "--dry-run")
    assert dry.returncode == 3, dry.stderr  # the unreadable message needs attention
    # AND its progress (a log line off a terminal) counts against the queue's size, asked up front
    logged = [orjson.loads(line) for line in dry.stderr.splitlines() if line.startswith("{")]
    (progress, *_) = [line for line in logged if line["event"] == "redrive_progress"]
    assert progress["expected_items"] == 26
    assert "dry run: 26 dead letters" in dry.stdout and "25 to index" in dry.stdout
    assert index_documents(search_engine.url, table_name) == {}

    # WHEN it applies (reading the configured destination)
    applied = consumer(env, "redrive", "--apply", "--visibility-timeout", "60")

    # THEN every item is indexed from the table, settled messages are deleted, the unreadable one stays
    assert applied.returncode == 3, applied.stderr
    assert "26 dead letters" in applied.stdout and "25 applied" in applied.stdout and "1 unreadable" in applied.stdout
    assert index_documents(search_engine.url, table_name) == table_documents(ddb, table_name)

    # AND --json reports what is left as JSON Lines: one object per letter, then the summary
    report = consumer(env, "redrive", "--dry-run", "--json")
    assert report.returncode == 3, report.stderr
    *letters, last = [orjson.loads(line) for line in report.stdout.splitlines()]
    assert [letter["outcome"].split(":")[0] for letter in letters] == ["unreadable"]
    assert last["summary"]["entries"] == 1 and last["summary"]["unreadable"] == 1
    assert last["summary"]["applied_changes"] is False and last["summary"]["complete"] is True
    assert [orjson.loads(m["Body"]) if m["Body"].startswith('{"') else m["Body"] for m in receive_raw(sqs, url)] == [
        "{not a letter"
    ]


def test_redrive_stopped_by_sigterm_hands_its_messages_back_at_once(
    ddb, sqs, queue_name, table_name, worker_env, search_engine
):
    # GIVEN 60 dead letters in a queue and an OpenSearch that answers each _bulk only after 2 s
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    DeadLetterQueue.connect(sqs, queue_name).write(table_with_letters(ddb, table_name, 60))
    proxy = FaultProxy(search_engine.url)
    proxy.stall(2.0)
    env = {
        "PATH": "/usr/bin:/bin",
        **worker_env,
        "CDC_DEAD_LETTER_DESTINATION": f"sqs:{queue_name}",
        "CDC_OPENSEARCH_URL": proxy.url,
    }
    try:
        # WHEN a redrive (visibility timeout 300 s) is stopped by SIGTERM while it holds messages
        redrive = subprocess.Popen(
            [sys.executable, "-m", "consumer", "redrive", "--apply", "--visibility-timeout", "300"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: hidden(sqs, url) > 0, 60, "messages received by the redrive")
        redrive.send_signal(signal.SIGTERM)
        output, errors = redrive.communicate(timeout=60)
    finally:
        proxy.stop()

    # THEN it stops at its next chunk, says so, and every message it did not settle is visible again
    # at once (not after 300 s): a second run goes on with them
    assert redrive.returncode == 3, errors[-2000:]
    assert "stopped before the end" in output
    left = receive_raw(sqs, url)
    redriven = len(index_documents(search_engine.url, table_name))
    assert len(left) + redriven >= 60 and left, (len(left), redriven)
    assert hidden(sqs, url) == 0


def hidden(sqs, url):
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"])


def receive_raw(sqs, url):
    messages = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", []):
        messages += batch
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return messages


def test_redrive_reads_every_object_under_an_s3_prefix_or_one_key(
    ddb, s3, bucket, table_name, worker_env, search_engine
):
    # GIVEN dead letters written to S3 as workers write them, in two objects of two shards
    s3.create_bucket(Bucket=bucket)
    letters = table_with_letters(ddb, table_name, 6)
    objects = DeadLetterObjects.connect(s3, bucket, "cdc")
    objects.write(letters[:4])
    objects.write([replace(letter, shard_id="shard-2") for letter in letters[4:]])
    (one_key,) = [key for key in read_objects(s3, bucket, "cdc/") if "/shard-2/" in key]

    # WHEN redrive reads one key THEN only its letters are redriven
    single = consumer(worker_env, "redrive", f"s3://{bucket}/{one_key}", "--apply")
    assert single.returncode == 0, single.stderr
    assert sorted(index_documents(search_engine.url, table_name)) == ["item-4|1", "item-5|1"]

    # WHEN it reads the prefix, twice THEN every letter is redriven (applied, or stale when the item
    # was already indexed with that repair version: a redrive within the same second), none is
    # refused, and the index equals the table both times
    for _ in range(2):
        whole = consumer({**worker_env, "CDC_LOG_LEVEL": "INFO"}, "redrive", f"s3://{bucket}/cdc", "--apply")
        assert whole.returncode == 0, whole.stderr
        # AND its progress counts against a total estimated from the listing and the first object
        logged = [orjson.loads(line) for line in whole.stderr.splitlines() if line.startswith("{")]
        assert [line["expected_items"] for line in logged if line["event"] == "redrive_progress"][:1] == [6]
        summary = re.search(r"6 dead letters in \S+: (\d+) applied, (\d+) stale, 0 poison, 0 unreadable", whole.stdout)
        assert summary and int(summary[1]) + int(summary[2]) == 6, whole.stdout
        assert index_documents(search_engine.url, table_name) == table_documents(ddb, table_name)
    assert len(read_objects(s3, bucket, "cdc/")) == 2  # S3 is only read

    # AND a prefix without objects is a clear error
    missing = consumer(worker_env, "redrive", f"s3://{bucket}/nothing-here")
    assert missing.returncode == 2 and "no dead-letter objects under" in missing.stderr


def test_a_destination_that_refuses_writes_makes_the_shard_wait_until_it_takes_them(s3, bucket, osmem, table_name):
    # GIVEN an S3 destination whose bucket does not exist (yet), and a batch with poison records
    settings, _ = load_settings({"CDC_TABLE_NAME": table_name, "CDC_OPENSEARCH_URL": osmem.url})
    metrics = Metrics(CollectorRegistry())
    health = Health(stall_after_seconds=60)
    health.mark_synced()
    health.beat()
    sink = OpenSearchSink(opensearch_client(settings), table_name, metrics, 0.01, 0.05)
    processor_ = BatchProcessor(SCHEMA, sink, DeadLetterObjects(s3, bucket, "cdc"), metrics, health=health)
    batch = poison_batch()
    results = []
    thread = threading.Thread(target=lambda: results.append(processor_.process("shard-1", batch, 0, threading.Event())))

    # WHEN the batch is processed
    thread.start()

    # THEN it does not settle: the writes fail and are counted, readiness says why
    errors = 'cdc_dead_letter_writes_total{destination="s3",outcome="error"}'
    wait_until(lambda: sample(metrics, errors) >= 3, timeout=30, what="failed dead-letter writes")
    assert thread.is_alive() and results == []
    ready, reason = health.readiness()
    assert not ready and "dead-letter destination s3 refuses writes" in reason

    # WHEN the bucket appears THEN the letters are written, the batch settles and readiness recovers
    s3.create_bucket(Bucket=bucket)
    thread.join(timeout=30)
    assert results and results[0].last_sequence_number == batch[-1]["dynamodb"]["SequenceNumber"]
    assert_whole_letters(next(iter(read_objects(s3, bucket, "cdc/").values())), batch)
    assert health.readiness() == (True, "ok")
    assert sample(metrics, 'cdc_dead_letter_writes_total{destination="s3",outcome="ok"}') == 1


def sample(metrics, text):
    name, _, labels = text.partition("{")
    pairs = dict(part.split("=") for part in labels.rstrip("}").split(",")) if labels else {}
    return metrics.registry.get_sample_value(name, {k: v.strip('"') for k, v in pairs.items()}) or 0
