"""MotoFeed: a moto table (the truth) feeds the stream server's stream, record for record, in order."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.emulators import MotoServer
from tests.support.moto_feed import MotoFeed
from tests.support.stream_backends import KEY_SCHEMA
from tests.support.stream_records import partition_hash
from tests.support.stream_server import StreamServer, streams_client
from tests.support.tables import create_table, write_random_history

MAX_PAGES = 200


@pytest.fixture
def feeds() -> Iterator[list[MotoFeed]]:
    """Feeds started by a test; all stopped at teardown."""
    started: list[MotoFeed] = []
    yield started
    for feed in started:
        feed.stop()


def read_all(client: Any, arn: str, shard_id: str) -> list[dict[str, Any]]:
    shard_iterator = client.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")
    shard_iterator = shard_iterator["ShardIterator"]
    records: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        page = client.get_records(ShardIterator=shard_iterator)
        records.extend(page["Records"])
        if not page["Records"] or "NextShardIterator" not in page:
            return records
        shard_iterator = page["NextShardIterator"]
    raise AssertionError(f"shard {shard_id} not read within {MAX_PAGES} pages")


def moto_records(ddb: Any, moto_url: str, table_name: str) -> list[dict[str, Any]]:
    client = streams_client(moto_url)
    arn = ddb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    shard_id = client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    return read_all(client, arn, shard_id)


def essence(record: dict[str, Any]) -> tuple[Any, ...]:
    body = record["dynamodb"]
    return (record["eventID"], record["eventName"], body["Keys"], body.get("NewImage"), body.get("OldImage"))


def test_the_feed_carries_every_moto_record_in_order(
    ddb: Any, moto: MotoServer, stream_server: StreamServer, table_name: str, feeds: list[MotoFeed]
) -> None:
    # GIVEN a moto table with a random history of puts and deletes, fed into a one-shard stream
    create_table(ddb, table_name)
    arn = stream_server.create_stream(table_name, KEY_SCHEMA)
    write_random_history(ddb, table_name, changes=80, seed=3)
    feeds.append(MotoFeed(stream_server, arn, moto.url, table_name).start())
    # WHEN the feed catches up, and more is written while it runs
    feeds[0].wait_caught_up(timeout=20)
    write_random_history(ddb, table_name, changes=40, seed=4)
    copied = feeds[0].wait_caught_up(timeout=20)
    # THEN the server's stream holds moto's records, same order and content, own sequence numbers
    truth = moto_records(ddb, moto.url, table_name)
    shard_id = stream_server.shards(arn)[0].shard_id
    fed = read_all(stream_server.client(), arn, shard_id)
    assert copied == len(truth) == len(fed)
    assert [essence(record) for record in fed] == [essence(record) for record in truth]
    numbers = [int(record["dynamodb"]["SequenceNumber"]) for record in fed]
    assert numbers == sorted(set(numbers)) and numbers[0] > 2**63 - 1
    for ours, theirs in zip(fed, truth, strict=True):
        second = ours["dynamodb"]["ApproximateCreationDateTime"].timestamp()
        assert second == math.floor(theirs["dynamodb"]["ApproximateCreationDateTime"].timestamp())


def test_the_feed_keeps_each_items_order_across_splits(
    ddb: Any, moto: MotoServer, stream_server: StreamServer, table_name: str, feeds: list[MotoFeed]
) -> None:
    # GIVEN a moto table fed into a two-shard stream
    create_table(ddb, table_name)
    arn = stream_server.create_stream(table_name, KEY_SCHEMA, shard_count=2)
    feed = MotoFeed(stream_server, arn, moto.url, table_name).start()
    feeds.append(feed)
    # WHEN changes are written before and after both shards split
    write_random_history(ddb, table_name, changes=60, seed=5, keyspace=30)
    feed.wait_caught_up(timeout=20)
    for shard in stream_server.shards(arn):
        stream_server.split(arn, shard.shard_id)
    write_random_history(ddb, table_name, changes=60, seed=6, keyspace=30)
    feed.wait_caught_up(timeout=20)
    # THEN per item, reading parents before children gives moto's order of its changes
    client = stream_server.client()
    fed = [record for shard in stream_server.shards(arn) for record in read_all(client, arn, shard.shard_id)]
    truth = moto_records(ddb, moto.url, table_name)
    assert len(fed) == len(truth) == feed.copied
    assert _by_item(fed) == _by_item(truth)
    children = [shard.shard_id for shard in stream_server.shards(arn) if shard.parent_shard_id]
    assert sum(bool(stream_server.records(arn, child)) for child in children) >= 2


def _by_item(records: list[dict[str, Any]]) -> dict[int, list[str]]:
    """eventIDs per item, in the order given ("1.5" and "1.50" are the same DynamoDB key)."""
    changes: dict[int, list[str]] = {}
    for record in records:
        changes.setdefault(partition_hash(record["dynamodb"]["Keys"]), []).append(record["eventID"])
    return changes


def test_a_stopped_feed_copies_nothing_more(
    ddb: Any, moto: MotoServer, stream_server: StreamServer, table_name: str, feeds: list[MotoFeed]
) -> None:
    # GIVEN a feed that caught up and was stopped
    create_table(ddb, table_name)
    arn = stream_server.create_stream(table_name, KEY_SCHEMA)
    feed = MotoFeed(stream_server, arn, moto.url, table_name).start()
    feeds.append(feed)
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    feed.wait_caught_up(timeout=20)
    feed.stop()
    # WHEN the table changes again
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "b"}, "sk": {"N": "1"}})
    # THEN the server's stream is unchanged, and waiting on the stopped feed says so
    assert len(stream_server.records(arn)) == 1
    with pytest.raises(RuntimeError):
        feed.wait_caught_up(timeout=5)


def test_a_failing_feed_reports_its_error(
    ddb: Any, moto: MotoServer, stream_server: StreamServer, table_name: str, feeds: list[MotoFeed]
) -> None:
    # GIVEN a feed into a stream whose only shard was closed: no shard can take a change
    create_table(ddb, table_name)
    arn = stream_server.create_stream(table_name, KEY_SCHEMA)
    stream_server.close(arn, stream_server.shards(arn)[0].shard_id)
    feeds.append(MotoFeed(stream_server, arn, moto.url, table_name).start())
    # WHEN the table changes
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    # THEN waiting on the feed raises the pump's error instead of hanging
    with pytest.raises(RuntimeError, match="no open shard"):
        feeds[0].wait_caught_up(timeout=20)
