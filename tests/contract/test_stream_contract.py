"""One suite of basic DynamoDB Streams behaviours, run against moto server and the test stream server.

Where the two overlap (one open shard, no faults) they must answer alike, so the stream server
cannot drift from the wire behaviour that boto3, ``StreamsApi`` and the consumer rely on.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from consumer.errors import ShardNotFoundError
from consumer.leases.model import TRIM_HORIZON
from consumer.pipeline.records import StreamRecord
from consumer.shards.api import AFTER_SEQUENCE_NUMBER, StreamsApi
from tests.support.stream_backends import KEY_SCHEMA, StreamBackend, key_of, unknown_arn

SHARD_ID = re.compile(r"shardId-\d{20}-[0-9a-f]{8}")
MAX_PAGES = 50


def item(pk: str, sk: int = 1, **attributes: dict[str, Any]) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}, **attributes}


def only_shard(backend: StreamBackend) -> str:
    return backend.streams.describe_stream(StreamArn=backend.arn)["StreamDescription"]["Shards"][0]["ShardId"]


def iterator(backend: StreamBackend, iterator_type: str, sequence_number: str | None = None) -> str:
    kwargs = {"SequenceNumber": sequence_number} if sequence_number else {}
    answer = backend.streams.get_shard_iterator(
        StreamArn=backend.arn, ShardId=only_shard(backend), ShardIteratorType=iterator_type, **kwargs
    )
    return answer["ShardIterator"]


def read_to_end(backend: StreamBackend, shard_iterator: str) -> tuple[list[dict[str, Any]], str | None]:
    """Every record from ``shard_iterator`` up to the first empty page; and that page's next iterator."""
    records: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        page = backend.streams.get_records(ShardIterator=shard_iterator)
        records.extend(page["Records"])
        if not page["Records"] or "NextShardIterator" not in page:
            return records, page.get("NextShardIterator")
        shard_iterator = page["NextShardIterator"]
    raise AssertionError(f"no empty page within {MAX_PAGES} reads")


def write_history(backend: StreamBackend) -> list[tuple[str, str]]:
    """INSERT a, INSERT b, MODIFY a, REMOVE b, INSERT c: the (eventName, pk) each record must show."""
    backend.put(item("a", payload={"S": "1"}))
    backend.put(item("b", payload={"S": "1"}))
    backend.put(item("a", payload={"S": "2"}))
    backend.delete(key_of(item("b")))
    backend.put(item("c", payload={"S": "1"}))
    return [("INSERT", "a"), ("INSERT", "b"), ("MODIFY", "a"), ("REMOVE", "b"), ("INSERT", "c")]


def seqs(records: list[dict[str, Any]]) -> list[int]:
    return [int(record["dynamodb"]["SequenceNumber"]) for record in records]


def test_describe_stream_has_the_real_shape_and_one_page(backend: StreamBackend) -> None:
    # GIVEN a fresh table stream with one open shard
    # WHEN it is described with the default page size
    description = backend.streams.describe_stream(StreamArn=backend.arn)["StreamDescription"]
    # THEN every documented field is there, typed as boto3 types it, and there is no further page
    assert description["StreamArn"] == backend.arn
    assert backend.arn.endswith("/stream/" + description["StreamLabel"])
    assert description["StreamStatus"] == "ENABLED"
    assert description["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert description["TableName"] == backend.table_name
    assert description["KeySchema"] == KEY_SCHEMA
    assert isinstance(description["CreationRequestDateTime"], dt.datetime)
    assert "LastEvaluatedShardId" not in description
    (shard,) = description["Shards"]
    assert SHARD_ID.fullmatch(shard["ShardId"])
    assert "ParentShardId" not in shard
    start = shard["SequenceNumberRange"]["StartingSequenceNumber"]
    assert start.isdigit() and 21 <= len(start) <= 40
    assert "EndingSequenceNumber" not in shard["SequenceNumberRange"]


def test_list_streams_filters_by_table(backend: StreamBackend) -> None:
    # GIVEN a table with a stream
    # WHEN the streams of that table are listed
    streams = backend.streams.list_streams(TableName=backend.table_name)["Streams"]
    # THEN exactly its stream is named, with table and label
    assert [stream["StreamArn"] for stream in streams] == [backend.arn]
    assert streams[0]["TableName"] == backend.table_name
    assert backend.arn.endswith("/stream/" + streams[0]["StreamLabel"])


def test_trim_horizon_reads_every_record_in_write_order(backend: StreamBackend) -> None:
    # GIVEN five changes of three items
    expected = write_history(backend)
    # WHEN the shard is read from TRIM_HORIZON
    records, _ = read_to_end(backend, iterator(backend, "TRIM_HORIZON"))
    # THEN every change is there, in write order, with strictly increasing numeric sequence numbers
    assert [(record["eventName"], record["dynamodb"]["Keys"]["pk"]["S"]) for record in records] == expected
    numbers = seqs(records)
    assert numbers == sorted(set(numbers))
    assert all(21 <= len(str(number)) <= 40 for number in numbers)
    start = backend.streams.describe_stream(StreamArn=backend.arn)["StreamDescription"]["Shards"][0]
    assert numbers[0] >= int(start["SequenceNumberRange"]["StartingSequenceNumber"])


def test_after_sequence_number_resumes_right_after_the_record(backend: StreamBackend) -> None:
    # GIVEN five records and the sequence number of the second
    write_history(backend)
    records, _ = read_to_end(backend, iterator(backend, "TRIM_HORIZON"))
    # WHEN reading resumes AFTER_SEQUENCE_NUMBER of it
    resumed, _ = read_to_end(
        backend, iterator(backend, "AFTER_SEQUENCE_NUMBER", records[1]["dynamodb"]["SequenceNumber"])
    )
    # THEN the third record comes first, and nothing is skipped
    assert seqs(resumed) == seqs(records)[2:]


def test_at_sequence_number_includes_the_record(backend: StreamBackend) -> None:
    # GIVEN five records and the sequence number of the fourth
    write_history(backend)
    records, _ = read_to_end(backend, iterator(backend, "TRIM_HORIZON"))
    # WHEN reading starts AT_SEQUENCE_NUMBER of it
    resumed, _ = read_to_end(backend, iterator(backend, "AT_SEQUENCE_NUMBER", records[3]["dynamodb"]["SequenceNumber"]))
    # THEN that record comes first
    assert seqs(resumed) == seqs(records)[3:]


def test_latest_sees_only_later_records(backend: StreamBackend) -> None:
    # GIVEN two records written before a LATEST iterator is taken
    backend.put(item("old-1"))
    backend.put(item("old-2"))
    latest = iterator(backend, "LATEST")
    # WHEN one more item is written and the iterator is read
    backend.put(item("new"))
    records, _ = read_to_end(backend, latest)
    # THEN only the later record is seen
    assert [record["dynamodb"]["Keys"]["pk"]["S"] for record in records] == ["new"]


def test_limit_is_respected_and_the_next_iterator_continues(backend: StreamBackend) -> None:
    # GIVEN five records
    write_history(backend)
    shard_iterator = iterator(backend, "TRIM_HORIZON")
    sizes = []
    # WHEN they are read two at a time
    for _ in range(3):
        page = backend.streams.get_records(ShardIterator=shard_iterator, Limit=2)
        sizes.append(len(page["Records"]))
        shard_iterator = page["NextShardIterator"]
    # THEN pages hold 2, 2 and 1 records
    assert sizes == [2, 2, 1]


def test_an_open_shard_always_gives_a_next_iterator(backend: StreamBackend) -> None:
    # GIVEN a shard read to its current end
    backend.put(item("a"))
    _, after_end = read_to_end(backend, iterator(backend, "TRIM_HORIZON"))
    # WHEN the empty page's iterator is read again after a new write
    assert after_end is not None
    empty = backend.streams.get_records(ShardIterator=after_end)
    backend.put(item("b"))
    page = backend.streams.get_records(ShardIterator=empty["NextShardIterator"])
    # THEN the empty page still had a next iterator, and it delivers the new record
    assert empty["Records"] == []
    assert [record["dynamodb"]["Keys"]["pk"]["S"] for record in page["Records"]] == ["b"]
    assert "NextShardIterator" in page


def test_records_have_the_real_shape_per_event(backend: StreamBackend) -> None:
    # GIVEN an insert, a modify and a remove of one item holding a binary value
    backend.put(item("a", blob={"B": b"\x00\x01"}))
    backend.put(item("a", blob={"B": b"\x00\x02"}))
    backend.delete(key_of(item("a")))
    # WHEN the records are read through boto3
    insert, modify, remove = read_to_end(backend, iterator(backend, "TRIM_HORIZON"))[0]
    # THEN each carries the documented fields, typed as boto3 types them, and the images its event has
    for record in (insert, modify, remove):
        assert record["eventSource"] == "aws:dynamodb"
        assert record["awsRegion"] == "us-east-1"
        assert isinstance(record["eventID"], str) and record["eventID"]
        assert isinstance(record["eventVersion"], str)
        assert "userIdentity" not in record
        body = record["dynamodb"]
        assert body["Keys"] == key_of(item("a"))
        assert body["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert isinstance(body["SizeBytes"], int) and body["SizeBytes"] >= 1
        created = body["ApproximateCreationDateTime"]
        assert isinstance(created, dt.datetime) and created.tzinfo is not None
        assert abs(created.timestamp() - dt.datetime.now(dt.UTC).timestamp()) < 120
        assert StreamRecord.from_wire(record).sequence == int(body["SequenceNumber"])
    assert [record["eventName"] for record in (insert, modify, remove)] == ["INSERT", "MODIFY", "REMOVE"]
    assert insert["dynamodb"]["NewImage"]["blob"] == {"B": b"\x00\x01"} and "OldImage" not in insert["dynamodb"]
    assert modify["dynamodb"]["NewImage"]["blob"] == {"B": b"\x00\x02"}
    assert modify["dynamodb"]["OldImage"]["blob"] == {"B": b"\x00\x01"}
    assert remove["dynamodb"]["OldImage"]["blob"] == {"B": b"\x00\x02"} and "NewImage" not in remove["dynamodb"]


@pytest.mark.parametrize("operation", ["describe_stream", "get_shard_iterator"])
def test_an_unknown_stream_arn_is_resource_not_found(backend: StreamBackend, operation: str) -> None:
    # GIVEN the ARN of a stream of a table that does not exist
    arn = unknown_arn(backend.arn, backend.table_name)
    kwargs = {"StreamArn": arn}
    if operation == "get_shard_iterator":
        kwargs |= {"ShardId": only_shard(backend), "ShardIteratorType": "TRIM_HORIZON"}
    # WHEN it is used
    with pytest.raises(ClientError) as caught:
        getattr(backend.streams, operation)(**kwargs)
    # THEN the answer is ResourceNotFoundException, an HTTP 400
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_boto3_stream_api_lists_and_reads_the_stream(backend: StreamBackend) -> None:
    # GIVEN five records, read through the consumer's own StreamApi
    expected = write_history(backend)
    api = StreamsApi(backend.streams)
    # WHEN it lists the shards (following pagination) and reads, then resumes after the third record
    (shard,) = api.list_shards(backend.arn)
    page = api.get_records(api.get_shard_iterator(backend.arn, shard.shard_id, TRIM_HORIZON), 1000)
    third = page.records[2]["dynamodb"]["SequenceNumber"]
    resumed = api.get_records(api.get_shard_iterator(backend.arn, shard.shard_id, AFTER_SEQUENCE_NUMBER, third), 1000)
    # THEN the shard is open, every record decodes, in order, and the resume starts at the fourth
    assert SHARD_ID.fullmatch(shard.shard_id) and not shard.is_closed and shard.parent_shard_id is None
    decoded = [StreamRecord.from_wire(record) for record in page.records]
    assert [(record.event_name, record.keys["pk"]["S"]) for record in decoded] == expected
    assert page.next_iterator is not None
    assert [record["dynamodb"]["SequenceNumber"] for record in resumed.records] == [
        r.sequence_number for r in decoded[3:]
    ]


def test_boto3_stream_api_translates_an_unknown_stream(backend: StreamBackend) -> None:
    # GIVEN the consumer's StreamApi and the ARN of a stream that does not exist
    api = StreamsApi(backend.streams)
    # WHEN its shards are listed
    # THEN the botocore error is translated once, into ShardNotFoundError
    with pytest.raises(ShardNotFoundError):
        api.list_shards(unknown_arn(backend.arn, backend.table_name))
