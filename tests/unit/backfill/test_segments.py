"""Backfill segments as leases, their checkpoints, and the no-gap check (pure)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.backfill.segments import (
    decode_position,
    default_segments,
    encode_position,
    parse_key,
    segment_key,
    segment_leases,
)
from consumer.errors import ConfigError
from consumer.leases.model import LATEST, SHARD_END, TRIM_HORIZON
from consumer.runtime.backfill_job import check_no_gap
from tests.support.factories import lease, shard

scan_keys = st.dictionaries(
    st.sampled_from(["pk", "sk"]),
    st.one_of(
        st.text(min_size=1).map(lambda s: {"S": s}),
        st.integers().map(lambda n: {"N": str(n)}),
        st.binary(min_size=1).map(lambda b: {"B": base64.b64encode(b).decode()}),  # wire form
    ),
    min_size=1,
)


@given(scan_keys)
def test_a_scan_position_survives_its_checkpoint_binary_values_included(key):
    # a LastEvaluatedKey as it comes off the wire goes back as the ExclusiveStartKey unchanged
    assert decode_position(encode_position(key)) == key


def test_a_segment_starts_at_the_beginning_and_ends_with_shard_end():
    assert decode_position(TRIM_HORIZON) is None
    assert encode_position(None) == SHARD_END and encode_position({}) == SHARD_END
    with pytest.raises(ValueError, match="not a Scan key"):
        decode_position('"just text"')


def test_segment_leases_are_keyed_by_segment_and_total_and_refuse_an_impossible_count():
    leases = segment_leases(3)
    assert [item.lease_key for item in leases] == ["backfill:0/3", "backfill:1/3", "backfill:2/3"]
    assert all(item.checkpoint == TRIM_HORIZON and item.owner is None for item in leases)
    assert parse_key(segment_key(7, 9)) == (7, 9)
    for impossible in (0, 1_000_001):
        with pytest.raises(ConfigError, match="CDC_BACKFILL_SEGMENTS"):
            segment_leases(impossible)


@pytest.mark.parametrize(("size", "segments"), [(0, 1), (10**6, 1), (300 * 2**20, 2), (10**12, 64)])
def test_the_default_is_one_segment_per_256_mib_between_1_and_64(size, segments):
    assert default_segments(size) == segments


def test_the_backfill_waits_until_every_open_shard_is_leased_from_where_the_scan_begins():
    shards = [shard("closed", closed=True), shard("a", parent="closed"), shard("b")]
    # GIVEN no leases, a lease missing, a lease at LATEST never read: refused, saying what to do
    with pytest.raises(ConfigError, match="start the workers"):
        check_no_gap([], shards)
    with pytest.raises(ConfigError, match="start the workers"):
        check_no_gap([lease("a")], shards)
    with pytest.raises(ConfigError, match="CDC_INITIAL_POSITION=TRIM_HORIZON"):
        check_no_gap([lease("a"), lease("b", checkpoint=LATEST)], shards)
    # AND every open shard leased at TRIM_HORIZON or read already: accepted (segments do not count)
    check_no_gap([lease("a"), lease("b", checkpoint="6200000000002513011398"), lease("backfill:0/1")], shards)
