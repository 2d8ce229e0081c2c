"""What only the test stream server does about lineage: splits, rollovers, more than 100 shards,
the open-parent page and key routing, seen through boto3 and the consumer's ``StreamsApi``.
Failure modes are in test_stream_server_faults; what it shares with moto in test_stream_contract.
"""

from __future__ import annotations

import random
from typing import Any

from consumer.leases.model import TRIM_HORIZON
from consumer.pipeline.records import StreamRecord
from consumer.shards.api import StreamsApi
from consumer.shards.lineage import parents_first
from tests.support.stream_backends import put_revision, read_shard
from tests.support.stream_server import StreamServer


def test_list_shards_follows_pagination_past_100_shards(server: StreamServer, api: StreamsApi) -> None:
    # GIVEN a stream grown to 251 shards by 125 splits
    arn = server.create_stream("big")
    open_shards = [server.shards(arn)[0].shard_id]
    for _ in range(125):
        open_shards.extend(server.split(arn, open_shards.pop(0)))
    # WHEN the consumer lists its shards
    shards = api.list_shards(arn)
    # THEN it followed three DescribeStream pages and got every shard once, parents before children
    assert server.stats(arn).calls["DescribeStream"] == 3
    assert [shard.shard_id for shard in shards] == [shard.shard_id for shard in server.shards(arn)]
    assert len(shards) == 251 and len({shard.shard_id for shard in shards}) == 251
    assert parents_first(shards) == shards
    assert sum(not shard.is_closed for shard in shards) == 126


def test_a_full_last_page_is_followed_by_an_empty_one(server: StreamServer, api: StreamsApi) -> None:
    # GIVEN exactly 100 shards: the first page is full
    arn = server.create_stream("hundred", shard_count=100)
    # WHEN the consumer lists them
    shards = api.list_shards(arn)
    # THEN a full page named a LastEvaluatedShardId (AWS: "does not necessarily mean there is more data"),
    # and the empty page after it ended the listing
    assert len(shards) == 100
    assert server.stats(arn).calls["DescribeStream"] == 2


def test_split_closes_the_parent_and_opens_two_children(server: StreamServer, client: Any) -> None:
    # GIVEN a shard with three records
    arn = server.create_stream("orders")
    parent = server.shards(arn)[0]
    written = [put_revision(server, arn, f"item-{n}") for n in range(3)]
    # WHEN it splits
    left, right = server.split(arn, parent.shard_id)
    shards = {shard["ShardId"]: shard for shard in client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]}
    # THEN the parent ends at its last record, the children name it and start after it
    assert shards[parent.shard_id]["SequenceNumberRange"]["EndingSequenceNumber"] == written[-1]
    for child in (left, right):
        assert shards[child]["ParentShardId"] == parent.shard_id
        assert "EndingSequenceNumber" not in shards[child]["SequenceNumberRange"]
        assert int(shards[child]["SequenceNumberRange"]["StartingSequenceNumber"]) > int(written[-1])
    # AND the children split the parent's hash range between them
    low, high = server.stream(arn).shard(left).hash_range, server.stream(arn).shard(right).hash_range
    assert (low[0], high[1]) == parent.hash_range and low[1] + 1 == high[0]


def test_a_closed_shard_is_read_to_its_end_without_next_iterator(server: StreamServer, client: Any) -> None:
    # GIVEN a closed shard of five records
    arn = server.create_stream("orders")
    shard_id = server.shards(arn)[0].shard_id
    written = [put_revision(server, arn, f"item-{n}") for n in range(5)]
    server.rollover(arn, shard_id)
    # WHEN it is read two records at a time
    records, ended = read_shard(client, arn, shard_id, limit=2)
    # THEN every record comes back and the page holding the last one has no NextShardIterator
    assert [record["dynamodb"]["SequenceNumber"] for record in records] == written
    assert ended


def test_an_empty_closed_shard_ends_at_once(server: StreamServer, client: Any, api: StreamsApi) -> None:
    # GIVEN a shard that split before any record reached it
    arn = server.create_stream("orders")
    shard = server.shards(arn)[0]
    server.split(arn, shard.shard_id)
    # WHEN the consumer lists and reads it
    (listed,) = [s for s in api.list_shards(arn) if s.shard_id == shard.shard_id]
    page = api.get_records(api.get_shard_iterator(arn, shard.shard_id, TRIM_HORIZON), 1000)
    # THEN its range ends where it starts, and the first read is its end
    assert listed.ending_sequence_number == listed.starting_sequence_number
    assert page.records == [] and page.next_iterator is None


def test_rollover_opens_one_child_with_the_same_hash_range(server: StreamServer, api: StreamsApi) -> None:
    # GIVEN a stream of two shards
    arn = server.create_stream("orders", shard_count=2)
    first, second = server.shards(arn)
    # WHEN the first rolls over and a change routed to it is written
    child = server.rollover(arn, first.shard_id)
    keys = next(
        {"pk": {"S": f"k{n}"}} for n in range(1000) if server.stream(arn).shard_for({"pk": {"S": f"k{n}"}}) == child
    )
    appended = server.put_change(arn, "INSERT", keys, new_image=keys)
    # THEN the child covers the parent's keys, names it, and receives its changes
    assert server.stream(arn).shard(child).hash_range == first.hash_range
    listed = {shard.shard_id: shard for shard in api.list_shards(arn)}
    assert listed[child].parent_shard_id == first.shard_id and listed[first.shard_id].is_closed
    assert not listed[second.shard_id].is_closed
    assert appended.shard_id == child


def test_the_open_parent_page_shows_a_split_parent_as_open(server: StreamServer, client: Any, api: StreamsApi) -> None:
    # GIVEN a parent with a record, split, and DescribeStream scripted to show the open-parent page
    arn = server.create_stream("orders")
    parent = server.shards(arn)[0].shard_id
    put_revision(server, arn, "a")
    children = server.split(arn, parent)
    server.open_parent_page(True)
    # WHEN the consumer lists the shards
    listed = {shard.shard_id: shard for shard in api.list_shards(arn)}
    # THEN the parent looks open although its children are listed
    assert not listed[parent].is_closed
    assert all(listed[child].parent_shard_id == parent for child in children)
    # AND reading it still reaches its end; turning the page off shows its end again
    records, ended = read_shard(client, arn, parent)
    assert len(records) == 1 and ended
    server.open_parent_page(False)
    assert {shard.shard_id: shard for shard in api.list_shards(arn)}[parent].is_closed


def test_routing_keeps_every_change_of_a_key_in_one_lineage_in_order(server: StreamServer, client: Any) -> None:
    # GIVEN 600 changes of 40 keys written while shards split and roll over at random moments
    rng = random.Random(7)
    arn = server.create_stream("orders", shard_count=3)
    revisions: dict[str, int] = {}
    for step in range(600):
        pk = f"key-{rng.randrange(40)}"
        revisions[pk] = revisions.get(pk, -1) + 1
        put_revision(server, arn, pk, revisions[pk])
        if step % 60 == 59:
            victim = rng.choice([shard.shard_id for shard in server.shards(arn) if not shard.is_closed])
            (server.split if rng.random() < 0.5 else server.rollover)(arn, victim)
    # WHEN every shard is read over the wire
    parents = {shard.shard_id: shard.parent_shard_id for shard in server.shards(arn)}
    seen: dict[str, list[tuple[int, str]]] = {}
    for shard_id in parents:
        for record in read_shard(client, arn, shard_id)[0]:
            pk = record["dynamodb"]["Keys"]["pk"]["S"]
            seen.setdefault(pk, []).append((int(record["dynamodb"]["NewImage"]["revision"]["N"]), shard_id))
    # THEN each key's changes all arrived, and each later change sits in the same shard or a descendant
    assert sum(len(changes) for changes in seen.values()) == 600
    for pk, changes in seen.items():
        changes.sort()
        assert [revision for revision, _ in changes] == list(range(revisions[pk] + 1))
        for (_, earlier), (_, later) in zip(changes, changes[1:], strict=False):
            assert earlier in _lineage(parents, later), f"{pk}: {later} does not descend from {earlier}"


def _lineage(parents: dict[str, str | None], shard_id: str | None) -> list[str]:
    chain = []
    while shard_id:
        chain.append(shard_id)
        shard_id = parents.get(shard_id)
    return chain


def test_describe_stream_filters_child_shards(server: StreamServer, client: Any) -> None:
    # GIVEN a parent split into two children
    arn = server.create_stream("orders")
    parent = server.shards(arn)[0].shard_id
    children = server.split(arn, parent)
    # WHEN DescribeStream asks for the children of the parent
    description = client.describe_stream(StreamArn=arn, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": parent})
    # THEN exactly they are listed
    assert [shard["ShardId"] for shard in description["StreamDescription"]["Shards"]] == list(children)


def test_a_ttl_delete_carries_the_service_identity(server: StreamServer, api: StreamsApi) -> None:
    # GIVEN an item removed by TTL
    arn = server.create_stream("orders")
    keys = {"pk": {"S": "expired"}}
    server.put_change(arn, "REMOVE", keys, old_image={**keys, "ttl": {"N": "1700000000"}}, ttl=True)
    # WHEN the consumer reads it
    shard_id = server.shards(arn)[0].shard_id
    (record,) = api.get_records(api.get_shard_iterator(arn, shard_id, TRIM_HORIZON), 1000).records
    # THEN it carries the DynamoDB service principal under the API model's names, and decodes as a TTL delete
    assert record["userIdentity"] == {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    assert StreamRecord.from_wire(record).is_ttl_delete
