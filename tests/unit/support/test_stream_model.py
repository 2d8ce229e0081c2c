"""The pure model behind the test stream server: sequence numbers, shard ids, topology, routing,
trimming and read positions, without HTTP."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.factories import stream_record
from tests.support.strategies import dynamo_decimals, spelling_of
from tests.support.stream_model import (
    HASH_SPACE,
    InvalidRequest,
    ResourceNotFound,
    StreamModel,
    TrimmedDataAccess,
)
from tests.support.stream_records import partition_hash, wire_value

KEY_SCHEMA = [{"AttributeName": "pk", "KeyType": "HASH"}]
NOW = 1_700_000_000.5


def model(shard_count: int = 1, view_type: str = "NEW_AND_OLD_IMAGES") -> StreamModel:
    return StreamModel("orders", KEY_SCHEMA, view_type, shard_count, clock=lambda: NOW)


def change(pk: str, event: str = "INSERT", **kwargs: object) -> dict:
    keys = {"pk": {"S": pk}}
    return stream_record(event=event, keys=keys, new_image={**keys, "n": {"N": "1"}}, **kwargs)


def test_sequence_numbers_are_long_strictly_increasing_and_never_contiguous() -> None:
    # GIVEN a stream of four shards WHEN 200 changes are appended
    stream = model(shard_count=4)
    numbers = [int(stream.append(change(f"k{n}")).sequence_number) for n in range(200)]
    # THEN every number is 22 digits, above 2^63 - 1, larger than the previous, with a gap
    assert all(len(str(number)) == 22 and number > 2**63 - 1 for number in numbers)
    assert all(later - earlier > 1 for earlier, later in zip(numbers, numbers[1:], strict=False))


def test_shard_ids_look_real_and_sort_in_creation_order() -> None:
    # GIVEN a stream whose clock never moves WHEN its shards split
    stream = model(shard_count=3)
    for shard in stream.shards():
        stream.split(shard.shard_id)
    ids = [shard.shard_id for shard in stream.shards()]
    # THEN ids have DynamoDB's shape, are unique, and listing order puts parents before children
    assert all(re.fullmatch(r"shardId-\d{20}-[0-9a-f]{8}", shard_id) for shard_id in ids)
    assert len(set(ids)) == 9 and ids == sorted(ids)
    for shard in stream.shards():
        assert shard.parent_shard_id is None or ids.index(shard.parent_shard_id) < ids.index(shard.shard_id)


def test_initial_shards_partition_the_hash_space() -> None:
    # GIVEN a stream of seven shards THEN their ranges are contiguous and cover [0, 2^128)
    ranges = [shard.hash_range for shard in model(shard_count=7).shards()]
    assert ranges[0][0] == 0 and ranges[-1][1] == HASH_SPACE - 1
    assert all(left[1] + 1 == right[0] for left, right in zip(ranges, ranges[1:], strict=False))


def test_closing_sets_the_ending_number_to_the_last_record_or_the_start() -> None:
    # GIVEN one shard with a record and one without
    stream = model(shard_count=2)
    full, empty = stream.shards()
    keys = next({"pk": {"S": f"k{n}"}} for n in range(100) if stream.shard_for({"pk": {"S": f"k{n}"}}) == full.shard_id)
    last = stream.append(stream_record(keys=keys)).sequence_number
    # WHEN both close
    stream.close(full.shard_id)
    stream.close(empty.shard_id)
    # THEN the full one ends at its record, the empty one where it started; their keys have nowhere to go
    assert stream.shard(full.shard_id).ending_sequence_number == last
    assert stream.shard(empty.shard_id).ending_sequence_number == empty.starting_sequence_number
    with pytest.raises(ValueError, match="no open shard"):
        stream.append(stream_record(keys=keys))


def test_the_view_type_decides_which_images_are_kept() -> None:
    # GIVEN a KEYS_ONLY stream WHEN a MODIFY with both images is appended
    stream = model(view_type="KEYS_ONLY")
    stream.append(change("a", event="MODIFY"))
    (record,) = stream.records()
    # THEN only the keys remain, and the record says which view it has
    assert "NewImage" not in record["dynamodb"] and "OldImage" not in record["dynamodb"]
    assert record["dynamodb"]["StreamViewType"] == "KEYS_ONLY"


def test_records_are_stored_in_wire_form_with_whole_seconds() -> None:
    # GIVEN a boto3-form TTL delete with a binary key attribute and a millisecond timestamp
    keys = {"pk": {"B": b"\x00\xff"}}
    record = stream_record(event="REMOVE", keys=keys, old_image=keys, second=NOW, ttl=True)
    # WHEN it is appended
    stream = model()
    stream.append(record)
    (stored,) = stream.records()
    # THEN bytes are base64 text, the time is rounded down to the second, the identity kept
    assert stored["dynamodb"]["Keys"] == {"pk": {"B": "AP8="}}
    assert stored["dynamodb"]["ApproximateCreationDateTime"] == int(NOW)
    assert stored["userIdentity"] == {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    assert wire_value(dt.datetime.fromtimestamp(NOW, dt.UTC)) == NOW


@given(dynamo_decimals().flatmap(lambda value: st.tuples(spelling_of(value), spelling_of(value))))
@settings(max_examples=200)
def test_equal_keys_route_alike_however_their_numbers_are_spelled(spellings: tuple[str, str]) -> None:
    # GIVEN two spellings of one number in a key THEN the key hashes alike
    left, right = spellings
    assert partition_hash({"sk": {"N": left}}) == partition_hash({"sk": {"N": right}})


@given(st.lists(st.tuples(st.integers(0, 19), st.sampled_from(["append", "append", "append", "split", "rollover"]))))
@settings(max_examples=100)
def test_every_change_of_a_key_stays_in_one_lineage_in_order(steps: list[tuple[int, str]]) -> None:
    # GIVEN random appends of 20 keys interleaved with splits and rollovers of the key's shard
    stream = model(shard_count=2)
    written: dict[int, list[str]] = {}
    for key, action in steps:
        keys = {"pk": {"S": f"k{key}"}}
        if action == "append":
            written.setdefault(key, []).append(stream.append(stream_record(keys=keys)).sequence_number)
        elif action == "split" and len(stream.shards()) < 40:
            stream.split(stream.shard_for(keys))
        elif action == "rollover":
            stream.rollover(stream.shard_for(keys))
    # WHEN the records are grouped by key, shard by shard
    parents = {shard.shard_id: shard.parent_shard_id for shard in stream.shards()}
    placed: dict[str, tuple[str, str]] = {}
    for shard_id in parents:
        for record in stream.records(shard_id):
            placed[record["dynamodb"]["SequenceNumber"]] = (record["dynamodb"]["Keys"]["pk"]["S"], shard_id)
    # THEN each key's changes sit in shards that descend from one another, in write order
    for key, numbers in written.items():
        shards = [placed[number][1] for number in numbers]
        assert all(placed[number][0] == f"k{key}" for number in numbers)
        for earlier, later in zip(shards, shards[1:], strict=False):
            assert earlier in _ancestry(parents, later)


def _ancestry(parents: dict[str, str | None], shard_id: str | None) -> set[str]:
    chain = set()
    while shard_id:
        chain.add(shard_id)
        shard_id = parents.get(shard_id)
    return chain


def test_positions_follow_the_iterator_types() -> None:
    # GIVEN a shard with three records
    stream = model()
    shard_id = stream.shards()[0].shard_id
    numbers = [stream.append(change(f"k{n}")).sequence_number for n in range(3)]

    def first_read(iterator_type: str, number: str | None = None) -> list[str]:
        position = stream.iterator_position(shard_id, iterator_type, number)
        return [r["dynamodb"]["SequenceNumber"] for r in stream.read(shard_id, position).records]

    # THEN each iterator type starts where DynamoDB Streams says
    assert first_read("TRIM_HORIZON") == numbers
    assert first_read("LATEST") == []
    assert first_read("AT_SEQUENCE_NUMBER", numbers[1]) == numbers[1:]
    assert first_read("AFTER_SEQUENCE_NUMBER", numbers[1]) == numbers[2:]
    for bad in ("12", str(int(numbers[1]) + 1), None):
        with pytest.raises(InvalidRequest):
            stream.iterator_position(shard_id, "AT_SEQUENCE_NUMBER", bad)
    with pytest.raises(InvalidRequest):
        stream.iterator_position(shard_id, "AT_TIMESTAMP")
    with pytest.raises(ResourceNotFound):
        stream.iterator_position("shardId-00000000000000000000-00000000", "LATEST")


def test_reads_respect_the_limit_the_byte_cap_and_the_shard_end() -> None:
    # GIVEN a closed shard of five records
    stream = model()
    shard_id = stream.shards()[0].shard_id
    for n in range(5):
        stream.append(change(f"k{n}"))
    stream.rollover(shard_id)
    start = stream.iterator_position(shard_id, "TRIM_HORIZON")
    # WHEN read with a limit, with a tiny byte cap, and to its end
    limited = stream.read(shard_id, start, limit=2)
    capped = stream.read(shard_id, start, max_bytes=1)
    last = stream.read(
        shard_id,
        stream.iterator_position(shard_id, "AT_SEQUENCE_NUMBER", stream.records()[4]["dynamodb"]["SequenceNumber"]),
    )
    # THEN the limit holds, the cap still returns one record, and the end has no next position
    assert len(limited.records) == 2 and limited.next_position is not None
    assert len(capped.records) == 1
    assert len(last.records) == 1 and last.next_position is None


@pytest.mark.parametrize("criterion", ["before", "count", "older_than"])
def test_trimming_removes_the_oldest_records_and_moves_the_horizon(criterion: str) -> None:
    # GIVEN a shard of six records, the first three appended an hour earlier
    now = [NOW]
    stream = StreamModel("orders", KEY_SCHEMA, clock=lambda: now[0])
    shard_id = stream.shards()[0].shard_id
    numbers = []
    for n in range(6):
        numbers.append(stream.append(change(f"k{n}")).sequence_number)
        if n == 2:
            now[0] += 3600
    before = stream.iterator_position(shard_id, "TRIM_HORIZON")
    # WHEN the three oldest are trimmed, by any criterion
    arguments = {
        "before": {"before_sequence_number": numbers[3]},
        "count": {"count": 3},
        "older_than": {"older_than": NOW + 1},
    }
    assert stream.trim(**arguments[criterion]) == 3
    # THEN TRIM_HORIZON starts at the fourth, and older positions are trimmed data
    horizon = stream.iterator_position(shard_id, "TRIM_HORIZON")
    assert [r["dynamodb"]["SequenceNumber"] for r in stream.read(shard_id, horizon).records] == numbers[3:]
    with pytest.raises(TrimmedDataAccess):
        stream.read(shard_id, before)
    with pytest.raises(TrimmedDataAccess):
        stream.iterator_position(shard_id, "AT_SEQUENCE_NUMBER", numbers[2])
    assert stream.iterator_position(shard_id, "AFTER_SEQUENCE_NUMBER", numbers[2]) == horizon


def test_trim_needs_exactly_one_criterion() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        model().trim(count=1, older_than=NOW)
