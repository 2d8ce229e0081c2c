"""The failure modes only the test stream server produces: trimming, iterator expiry, throttling,
invalid requests and the 1 MB page cap, seen through boto3 and the consumer's ``StreamsApi``.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from consumer.errors import IteratorExpiredError, ShardNotFoundError, ThrottledError, TrimmedDataError
from consumer.leases.model import TRIM_HORIZON
from consumer.runtime.clients import aws_clients
from consumer.shards.api import StreamsApi
from tests.support.emulators import aws_env
from tests.support.stream_backends import FakeClock, error_code, put_revision, read_shard
from tests.support.stream_server import StreamServer


def test_trimming_moves_the_horizon_and_old_positions_are_lost(server: StreamServer, client: Any) -> None:
    # GIVEN ten records and an iterator taken at TRIM_HORIZON before trimming
    arn = server.create_stream("orders")
    shard_id = server.shards(arn)[0].shard_id
    written = [put_revision(server, arn, f"item-{n}") for n in range(10)]
    stale = client.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    # WHEN the four oldest records are trimmed
    assert server.trim(arn, count=4) == 4
    # THEN TRIM_HORIZON starts at the fifth record, and resuming after the fourth loses nothing
    records, _ = read_shard(client, arn, shard_id)
    assert [record["dynamodb"]["SequenceNumber"] for record in records] == written[4:]
    after = client.get_shard_iterator(
        StreamArn=arn, ShardId=shard_id, ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=written[3]
    )
    assert (
        client.get_records(ShardIterator=after["ShardIterator"])["Records"][0]["dynamodb"]["SequenceNumber"]
        == written[4]
    )
    # AND positions inside the trimmed part answer TrimmedDataAccessException
    with pytest.raises(ClientError) as caught:
        client.get_shard_iterator(
            StreamArn=arn, ShardId=shard_id, ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=written[2]
        )
    assert error_code(caught) == "TrimmedDataAccessException"
    with pytest.raises(ClientError) as caught:
        client.get_records(ShardIterator=stale)
    assert error_code(caught) == "TrimmedDataAccessException"
    # AND the consumer's StreamApi reports it as TrimmedDataError
    with pytest.raises(TrimmedDataError):
        StreamsApi(client).get_records(stale, 1000)


def test_trimming_by_age_and_dropping_ended_shards(server: StreamServer, clock: FakeClock, api: StreamsApi) -> None:
    # GIVEN a record written a day ago in a shard that has since rolled over, and a fresh one
    arn = server.create_stream("orders")
    parent = server.shards(arn)[0].shard_id
    put_revision(server, arn, "old")
    child = server.rollover(arn, parent)
    clock.advance(24 * 3600)
    put_revision(server, arn, "new")
    # WHEN records older than 24 h are trimmed, dropping shards left empty
    removed = server.trim(arn, older_than=clock() - 24 * 3600 + 1, drop_closed=True)
    # THEN the old shard is gone from the listing and from reads; the child remains with its record
    assert removed == 1
    assert [shard.shard_id for shard in api.list_shards(arn)] == [child]
    with pytest.raises(ShardNotFoundError):
        api.get_shard_iterator(arn, parent, TRIM_HORIZON)


def test_expire_iterators_makes_every_outstanding_iterator_expire(server: StreamServer, api: StreamsApi) -> None:
    # GIVEN an iterator on a shard with a record
    arn = server.create_stream("orders")
    shard_id = server.shards(arn)[0].shard_id
    put_revision(server, arn, "a")
    shard_iterator = api.get_shard_iterator(arn, shard_id, TRIM_HORIZON)
    # WHEN the server expires iterators
    server.expire_iterators()
    # THEN the old one answers ExpiredIteratorException (IteratorExpiredError), a new one reads
    with pytest.raises(IteratorExpiredError):
        api.get_records(shard_iterator, 1000)
    assert len(api.get_records(api.get_shard_iterator(arn, shard_id, TRIM_HORIZON), 1000).records) == 1


def test_an_iterator_expires_fifteen_minutes_after_it_was_issued(
    server: StreamServer, clock: FakeClock, client: Any
) -> None:
    # GIVEN an iterator, and a next iterator issued 14 minutes later
    arn = server.create_stream("orders")
    shard_id = server.shards(arn)[0].shard_id
    first = client.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType="LATEST")["ShardIterator"]
    clock.advance(14 * 60)
    second = client.get_records(ShardIterator=first)["NextShardIterator"]
    # WHEN two more minutes pass
    clock.advance(2 * 60)
    # THEN the first has expired and the second still reads
    with pytest.raises(ClientError) as caught:
        client.get_records(ShardIterator=first)
    assert error_code(caught) == "ExpiredIteratorException"
    assert "NextShardIterator" in client.get_records(ShardIterator=second)


def test_throttling_answers_limit_exceeded_for_the_scripted_reads(server: StreamServer, api: StreamsApi) -> None:
    # GIVEN two shards, and the next two reads of the first throttled
    arn = server.create_stream("orders", shard_count=2)
    first, second = (shard.shard_id for shard in server.shards(arn))
    server.throttle(2, shard_id=first)
    iterators = {shard: api.get_shard_iterator(arn, shard, TRIM_HORIZON) for shard in (first, second)}
    # WHEN the consumer reads (its client has no retries here)
    # THEN the first shard throttles twice (ThrottledError), then reads; the second never throttles
    for _ in range(2):
        with pytest.raises(ThrottledError):
            api.get_records(iterators[first], 1000)
        api.get_records(iterators[second], 1000)
    api.get_records(iterators[first], 1000)
    assert server.stats(arn).get_records_by_shard == {first: 3, second: 2}


def test_the_consumers_stream_client_surfaces_every_throttle(
    server: StreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the consumer's own stream client (no botocore retries: the worker's throttle gate backs off)
    for name, value in {**aws_env(server.url), "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": server.url}.items():
        monkeypatch.setenv(name, value)
    arn = server.create_stream("orders")
    shard_id = server.shards(arn)[0].shard_id
    api = StreamsApi(aws_clients("us-east-1").streams)
    shard_iterator = api.get_shard_iterator(arn, shard_id, TRIM_HORIZON)
    server.throttle(2)
    # WHEN the consumer reads three times
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(api.get_records(shard_iterator, 1000).next_iterator is not None)
        except ThrottledError:
            outcomes.append("throttled")
    # THEN each throttle reached the consumer (so each is counted and shared), and one call each
    assert outcomes == ["throttled", "throttled", True]
    assert server.stats(arn).calls["GetRecords"] == 3


def test_invalid_requests_answer_like_dynamodb_streams(server: StreamServer, client: Any) -> None:
    # GIVEN two shards, one with a record
    arn = server.create_stream("orders", shard_count=2)
    first, second = (shard.shard_id for shard in server.shards(arn))
    keys = next(
        {"pk": {"S": f"k{n}"}} for n in range(1000) if server.stream(arn).shard_for({"pk": {"S": f"k{n}"}}) == first
    )
    seq = server.put_change(arn, "INSERT", keys, new_image=keys).sequence_number
    calls = {
        "ResourceNotFoundException": lambda: client.get_shard_iterator(
            StreamArn=arn, ShardId="shardId-00000000000000000000-00000000", ShardIteratorType="LATEST"
        ),
        "ValidationException": lambda: client.get_shard_iterator(  # the record's number, on the other shard
            StreamArn=arn, ShardId=second, ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=seq
        ),
    }
    invalid = [
        lambda: client.get_shard_iterator(
            StreamArn=arn, ShardId=first, ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber="9" * 30
        ),
        lambda: client.get_records(ShardIterator="not-an-iterator"),
        lambda: client.get_records(
            ShardIterator=client.get_shard_iterator(StreamArn=arn, ShardId=first, ShardIteratorType="LATEST")[
                "ShardIterator"
            ],
            Limit=1001,
        ),
        lambda: client.describe_stream(StreamArn=arn, Limit=101),
    ]
    # WHEN each is sent  THEN each answers its DynamoDB Streams error code
    for code, call in [*calls.items(), *(("ValidationException", call) for call in invalid)]:
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == code


def test_a_page_holds_about_one_megabyte_at_most(server: StreamServer, client: Any) -> None:
    # GIVEN five records of about 300 KB each
    arn = server.create_stream("orders")
    shard_id = server.shards(arn)[0].shard_id
    for n in range(5):
        keys = {"pk": {"S": f"big-{n}"}}
        server.put_change(arn, "INSERT", keys, new_image={**keys, "blob": {"S": "x" * 300_000}})
    # WHEN the shard is read without a Limit
    records, _ = read_shard(client, arn, shard_id)
    first = client.get_records(
        ShardIterator=client.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
    )
    # THEN the first page stops below 1 MB, and paging still returns all five
    assert sum(record["dynamodb"]["SizeBytes"] for record in first["Records"]) <= 1024 * 1024
    assert len(first["Records"]) == 3
    assert len(records) == 5
