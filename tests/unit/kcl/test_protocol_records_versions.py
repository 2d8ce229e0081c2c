"""The pure parts of the KCL mode: multilang records back to stream records, where a shard's clock
starts, and protocol lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.errors import RecordError
from consumer.kcl.protocol import ProtocolError, decode_message
from consumer.kcl.records import wire_record
from consumer.kcl.versions import parent_ids, starting_version
from consumer.pipeline.records import StreamRecord
from tests.support.factories import stream_record
from tests.support.kcl_daemon_side import kcl_record

events = st.sampled_from(["INSERT", "MODIFY", "REMOVE"])
# DynamoDB's timestamps have millisecond precision (the adapter sends whole milliseconds)
seconds = st.integers(1_000_000_000_000, 4_000_000_000_000).map(lambda ms: ms / 1000)


@given(event=events, second=seconds, ttl=st.booleans())
def test_a_multilang_record_reads_as_the_stream_record_it_wraps(event, second, ttl):
    # GIVEN a stream record as GetRecords has it, wrapped as the adapter hands it to multilang
    # (milliseconds, empty objects for the images the event has not)
    original = stream_record(event, second=second, ttl=ttl and event == "REMOVE", wire_timestamp=True)
    wrapped = kcl_record(original)

    # THEN it decodes to the same record: keys, images, sequence number, second, TTL flag
    decoded = StreamRecord.from_wire(wire_record(wrapped["data"], wrapped["sequenceNumber"]))
    expected = StreamRecord.from_wire(original)
    assert (decoded.keys, decoded.new_image, decoded.old_image) == (
        expected.keys,
        expected.new_image,
        expected.old_image,
    )
    assert (decoded.sequence_number, decoded.approximate_second, decoded.is_ttl_delete) == (
        expected.sequence_number,
        expected.approximate_second,
        expected.is_ttl_delete,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not base64 !", "not base64 of a JSON stream record"),
        ("bm90IGpzb24=", "not base64 of a JSON stream record"),  # "not json"
        ("WzEsMl0=", "JSON but not a DynamoDB stream record"),  # [1,2]
    ],
)
def test_data_that_is_no_stream_record_is_refused_by_name_with_its_sequence_number(data, message):
    raw = wire_record(data, "123")
    assert raw["dynamodb"]["SequenceNumber"] == "123"
    with pytest.raises(RecordError, match=message):
        StreamRecord.from_wire(raw)


def lease(checkpoint: str, version: int | None = None, at: str | None = None, parents: list[str] = ()) -> dict:
    item = {"leaseKey": {"S": "s"}, "checkpoint": {"S": checkpoint}}
    if version is not None:
        item["checkpointVersion"] = {"N": str(version)}
    if at is not None:
        item["checkpointVersionAt"] = {"S": at}
    if parents:
        item["parentShardId"] = {"SS": parents}
    return item


def test_the_clock_starts_from_the_stored_version_else_the_parents_else_zero():
    assert starting_version(lease("100", 7, "100"), {}).version == 7
    ahead = starting_version(lease("100", 9, "200"), {})
    assert ahead.version == 9 and "ahead of checkpoint 100" in ahead.reason
    parents = {"p1": lease("SHARD_END", 5, "SHARD_END"), "p2": lease("SHARD_END", 11, "SHARD_END")}
    assert starting_version(lease("TRIM_HORIZON", parents=["p1", "p2"]), parents).version == 11
    assert starting_version(lease("TRIM_HORIZON", parents=["p1"]), {"p1": None}).version == 0
    assert starting_version(lease("TRIM_HORIZON"), {}).version == 0
    assert parent_ids(lease("x", parents=["b", "a"])) == ["a", "b"]
    assert parent_ids({"parentShardId": {"S": "a"}}) == ["a"] and parent_ids(None) == []


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("{", "not JSON"),
        ('["initialize"]', "not a multilang message"),
        ('{"shardId": "s"}', "not a multilang message"),
        ('{"action": "initialize"}', "malformed 'initialize' message"),
        ('{"action": "bogus"}', "malformed 'bogus' message"),
        ('{"action": "shutdown", "reason": "LATER"}', "reason 'LATER'"),
    ],
)
def test_a_line_that_is_no_protocol_message_is_named(line, error):
    with pytest.raises(ProtocolError, match=error):
        decode_message(line)


def test_kcl1_shutdown_reasons_become_shard_ended_and_lease_lost():
    assert decode_message('{"action": "shutdown", "reason": "TERMINATE"}').translated.action == "shardEnded"
    assert decode_message('{"action": "shutdown", "reason": "ZOMBIE"}').translated.action == "leaseLost"
