"""Dead letters sent to SQS and S3 (moto server), from the real BatchProcessor and from a worker.

What was dead-lettered is read back from the queue or the bucket and must be exactly what the file
destination writes: the whole record, shard id, sequence number, error and attempts.
"""

from __future__ import annotations

import threading
import uuid

import boto3
import orjson
import pytest
from prometheus_client import CollectorRegistry

from consumer.clients import opensearch_client
from consumer.config import load_settings
from consumer.doc_ids import KeyAttribute, KeySchema
from consumer.errors import ConfigError
from consumer.leases.model import Lease
from consumer.observability.metrics import Metrics
from consumer.processor import BatchProcessor
from consumer.sink.dlq import SQS_MAX_MESSAGE_BYTES, DeadLetterObjects, DeadLetterQueue
from consumer.sink.opensearch import OpenSearchSink
from tests.support.emulators import aws_env
from tests.support.factories import poison_batch, stream_record
from tests.support.tables import create_table, index_documents
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
    assert letters[1]["record"]["dynamodb"]["NewImage"] == batch[1]["dynamodb"]["NewImage"]
    assert letters[1]["record"]["eventID"] == batch[1]["eventID"]


def test_poison_records_arrive_whole_in_sqs(sqs, queue_name, osmem, table_name):
    # GIVEN a queue named by its name (resolved with GetQueueUrl) and a batch with two poison records
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    observed = []
    queue = DeadLetterQueue.connect(sqs, queue_name, lambda operation, outcome: observed.append((operation, outcome)))
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
    queue = DeadLetterQueue.connect(sqs, url, lambda operation, outcome: observed.append((operation, outcome)))
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
    # GIVEN a bucket as the destination, and a table whose second item conflicts with the first's mapping
    s3.create_bucket(Bucket=bucket)
    create_table(ddb, table_name)
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "n": {"N": "1"}})
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "b"}, "sk": {"N": "1"}, "n": {"M": {"x": {"S": "y"}}}})
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
    assert letter["record"]["dynamodb"]["NewImage"]["n"] == {"M": {"x": {"S": "y"}}}

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
