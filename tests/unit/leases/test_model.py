"""The lease item: KCL attribute names, and a lossless round trip through DynamoDB's form."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.leases.model import LATEST, SHARD_END, TRIM_HORIZON, Lease
from tests.support.factories import lease

shard_ids = st.from_regex(r"shardId-[0-9]{20}-[0-9a-f]{8}", fullmatch=True)
checkpoints = st.one_of(st.sampled_from([TRIM_HORIZON, LATEST, SHARD_END]), st.integers(10**20, 10**40 - 1).map(str))
leases = st.builds(
    Lease,
    lease_key=shard_ids,
    owner=st.none() | st.text(min_size=1, max_size=40),
    counter=st.integers(0, 2**63 - 1),
    checkpoint=checkpoints,
    checkpoint_version=st.integers(0, 2**63 - 1),
    owner_switches_since_checkpoint=st.integers(0, 1000),
    parent_shard_ids=st.frozensets(shard_ids, max_size=2),
    child_shard_ids=st.frozensets(shard_ids, max_size=3),
)


@given(leases)
@settings(max_examples=200)
def test_a_lease_survives_the_round_trip_through_its_item(original):
    # GIVEN any lease WHEN written as an item and read back THEN it is the same lease
    assert Lease.from_item(original.to_item()) == original


def test_the_item_uses_the_kcl_attribute_names_and_types():
    # GIVEN a lease with every field set
    item = lease(
        "shardId-1",
        owner="worker-a",
        counter=7,
        checkpoint="6200000000002513011398",
        checkpoint_version=42,
        parents=("shardId-0",),
        children=("shardId-3", "shardId-2"),
        owner_switches=1,
    ).to_item()

    # WHEN it becomes an item THEN KCL's tools can read it: KCL names, N for counters, SS for lineage
    assert item == {
        "leaseKey": {"S": "shardId-1"},
        "leaseOwner": {"S": "worker-a"},
        "leaseCounter": {"N": "7"},
        "checkpoint": {"S": "6200000000002513011398"},
        "checkpointVersion": {"N": "42"},
        "ownerSwitchesSinceCheckpoint": {"N": "1"},
        "parentShardId": {"SS": ["shardId-0"]},
        "childShardIds": {"SS": ["shardId-2", "shardId-3"]},
    }


def test_an_unowned_lease_without_lineage_writes_no_empty_attributes():
    # GIVEN a fresh lease WHEN it becomes an item THEN it has no owner and no (illegal) empty sets
    item = lease("shardId-1").to_item()
    assert "leaseOwner" not in item
    assert "parentShardId" not in item
    assert "childShardIds" not in item


def test_an_item_written_by_the_kcl_without_our_attributes_is_read_with_defaults():
    # GIVEN a minimal item, as a KCL lease table may hold it
    item = {"leaseKey": {"S": "shardId-1"}, "leaseCounter": {"N": "3"}}

    # WHEN it is read THEN the missing attributes take their defaults
    assert Lease.from_item(item) == lease("shardId-1", counter=3, checkpoint=TRIM_HORIZON)


def test_bumped_increments_the_counter_and_applies_changes():
    # GIVEN a lease WHEN a write succeeded THEN the snapshot has counter + 1 and the changes
    before = lease("shardId-1", owner="a", counter=4)
    after = before.bumped(owner="b")
    assert (after.counter, after.owner, before.counter, before.owner) == (5, "b", 4, "a")


def test_sentinel_checkpoints_are_not_sequence_checkpoints():
    assert lease(checkpoint=SHARD_END).is_ended
    assert not lease(checkpoint="6200000000002513011398").is_ended
    assert [lease(checkpoint=c).has_sequence_checkpoint for c in (TRIM_HORIZON, LATEST, SHARD_END, "1")] == [
        False,
        False,
        False,
        True,
    ]
