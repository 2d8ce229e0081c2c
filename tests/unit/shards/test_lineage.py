"""Shard lineage: which leases to create, in which order, and when a child may start."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.leases.model import LATEST, SHARD_END, TRIM_HORIZON
from consumer.shards.api import Shard
from consumer.shards.lineage import (
    has_progressed,
    leases_to_delete,
    new_leases,
    parents_first,
    plan_leases,
    start_version,
)
from tests.support.factories import lease, shard
from tests.support.lineage_sim import HOUR, SimPool, SimStream
from tests.support.version_clock import VersionClock


@st.composite
def shard_forests(draw: st.DrawFn) -> list[Shard]:
    """Shards of a stream in random listing order, with ids whose order says nothing of lineage:
    each has no parent, an earlier-born shard as parent, or a parent that is no longer listed
    (trimmed); a shard with children is closed; leaves may be either (DescribeStream pages can show
    a parent as still open)."""
    count = draw(st.integers(1, 25))
    names = [f"shardId-{n:03d}" for n in draw(st.permutations(range(count)))]  # names[i]: the i-th born
    parents: list[str | None] = []
    for i in range(count):
        choice = draw(st.integers(-2, i - 1))
        parents.append(None if choice == -2 else "shardId-trimmed" if choice == -1 else names[choice])
    has_children = {parent for parent in parents if parent}
    shards = [
        shard(name, parent, closed=name in has_children or draw(st.booleans()))
        for name, parent in zip(names, parents, strict=True)
    ]
    return draw(st.permutations(shards))


def positions(ordered: list) -> dict[str, int]:
    return {item.shard_id if isinstance(item, Shard) else item.lease_key: i for i, item in enumerate(ordered)}


# --- ordering --------------------------------------------------------------------------------


@given(shard_forests())
@settings(max_examples=200)
def test_parents_first_puts_every_shard_after_its_listed_parent(shards):
    # GIVEN shards listed in any order WHEN ordered
    ordered = parents_first(shards)

    # THEN it is the same shards, each after its parent when the parent is listed
    assert sorted(s.shard_id for s in ordered) == sorted(s.shard_id for s in shards)
    at = positions(ordered)
    for s in ordered:
        if s.parent_shard_id in at:
            assert at[s.parent_shard_id] < at[s.shard_id]


# --- TRIM_HORIZON ----------------------------------------------------------------------------


@given(shard_forests())
@settings(max_examples=200)
def test_trim_horizon_leases_every_shard_with_its_parent_parents_first(shards):
    # GIVEN a stream and an empty lease table, starting at TRIM_HORIZON
    # WHEN leases are planned
    created = new_leases(shards, [], TRIM_HORIZON)

    # THEN every shard gets one unowned lease at TRIM_HORIZON naming its parent, parents before children
    by_id = {s.shard_id: s for s in shards}
    assert sorted(lease.lease_key for lease in created) == sorted(by_id)
    at = positions(created)
    for lease_ in created:
        parent = by_id[lease_.lease_key].parent_shard_id
        assert lease_.checkpoint == TRIM_HORIZON
        assert lease_.owner is None
        assert lease_.parent_shard_ids == (frozenset({parent}) if parent else frozenset())
        if parent in at:
            assert at[parent] < at[lease_.lease_key]


@given(shard_forests(), st.data())
@settings(max_examples=200)
def test_shards_that_already_have_a_lease_get_no_new_one(shards, data):
    # GIVEN some shards already leased
    existing = data.draw(st.sets(st.sampled_from([s.shard_id for s in shards])))

    # WHEN leases are planned THEN only the others get one
    planned = new_leases(shards, [lease(key) for key in existing], TRIM_HORIZON)
    created = {new.lease_key for new in planned}
    assert created == {s.shard_id for s in shards} - existing


# --- LATEST ----------------------------------------------------------------------------------


def test_latest_at_bootstrap_leases_only_open_shards_at_latest():
    # GIVEN a closed parent with an open child, and an open shard of another lineage, nothing leased
    shards = [
        shard("shardId-0", closed=True),
        shard("shardId-1", parent="shardId-0"),
        shard("shardId-2"),
    ]

    # WHEN leases are planned at LATEST
    created = new_leases(shards, [], LATEST)

    # THEN the open shards are leased at LATEST; the closed one, entirely older than the start, is skipped
    assert [(lease.lease_key, lease.checkpoint) for lease in created] == [("shardId-1", LATEST), ("shardId-2", LATEST)]
    assert created[0].parent_shard_ids == {"shardId-0"}


def test_latest_leases_children_of_leased_parents_from_their_start():
    # GIVEN a LATEST consumer that leased shardId-1; it has since split into two children
    shards = [
        shard("shardId-1", closed=True),
        shard("shardId-2", parent="shardId-1"),
        shard("shardId-3", parent="shardId-1", closed=True),
        shard("shardId-4", parent="shardId-3"),
    ]

    # WHEN leases are planned again
    created = new_leases(shards, [lease("shardId-1")], LATEST)

    # THEN every descendant starts at TRIM_HORIZON, closed or not: all its records are newer than the start
    assert [(lease.lease_key, lease.checkpoint) for lease in created] == [
        ("shardId-2", TRIM_HORIZON),
        ("shardId-3", TRIM_HORIZON),
        ("shardId-4", TRIM_HORIZON),
    ]


def test_latest_at_bootstrap_with_a_parent_shown_open_reads_its_child_from_the_start():
    # GIVEN a DescribeStream page that still shows a parent as open although it has a child
    shards = [shard("shardId-0"), shard("shardId-1", parent="shardId-0")]

    # WHEN leases are planned at LATEST
    created = new_leases(shards, [], LATEST)

    # THEN the parent starts at LATEST and the child at TRIM_HORIZON, after the parent: nothing is skipped
    assert [(lease.lease_key, lease.checkpoint) for lease in created] == [
        ("shardId-0", LATEST),
        ("shardId-1", TRIM_HORIZON),
    ]


@given(shard_forests())
@settings(max_examples=200)
def test_latest_at_bootstrap_rules_hold_for_any_stream(shards):
    # GIVEN any stream and an empty lease table WHEN leases are planned at LATEST
    created = {lease.lease_key: lease for lease in new_leases(shards, [], LATEST)}

    # THEN a shard whose parent is leased starts at TRIM_HORIZON; otherwise an open shard starts at
    # LATEST and a closed one gets no lease
    for s in parents_first(shards):
        if s.parent_shard_id in created:
            assert created[s.shard_id].checkpoint == TRIM_HORIZON
        elif not s.is_closed:
            assert created[s.shard_id].checkpoint == LATEST
        else:
            assert s.shard_id not in created


# --- start_version ---------------------------------------------------------------------------


def test_a_child_waits_while_an_existing_parent_is_not_at_shard_end():
    # GIVEN a child whose parent lease is still being read
    child = lease("child", parents=("parent",))
    leases = {"parent": lease("parent", checkpoint="6200000000002513011398", checkpoint_version=99), "child": child}

    # WHEN its start is asked THEN there is none yet
    assert start_version(child, leases) is None


@given(
    st.integers(0, 2**62),
    st.lists(st.tuples(st.integers(0, 2**62), st.sampled_from([SHARD_END, TRIM_HORIZON, "1234"]), st.booleans())),
)
@settings(max_examples=200)
def test_start_version_waits_for_every_existing_parent_and_starts_above_them_all(own, parents):
    # GIVEN a lease with parents, each with a clock and checkpoint, some of whose leases are gone
    keys = [f"parent-{i}" for i in range(len(parents))]
    child = lease("child", checkpoint_version=own, parents=keys)
    existing = {
        key: lease(key, checkpoint=checkpoint, checkpoint_version=version)
        for key, (version, checkpoint, exists) in zip(keys, parents, strict=True)
        if exists
    }

    # WHEN its start is asked
    start = start_version(child, {**existing, "child": child})

    # THEN it waits while any existing parent is unfinished; otherwise it starts at the highest clock
    if any(parent.checkpoint != SHARD_END for parent in existing.values()):
        assert start is None
    else:
        assert start == max([own, *(parent.checkpoint_version for parent in existing.values())])


def test_a_split_in_the_parents_last_second_still_gives_the_child_higher_versions():
    # GIVEN a parent that ended with three changes in second S, checkpointed at SHARD_END with its clock
    parent_clock = VersionClock()
    parent_versions = [parent_clock.tick(1_700_000_000) for _ in range(3)]
    parent = lease("parent", checkpoint=SHARD_END, checkpoint_version=parent_clock.last)
    child = lease("child", parents=("parent",))

    # WHEN the child's clock starts where lineage says and versions a change of the same second S
    child_clock = VersionClock(start_version(child, {"parent": parent, "child": child}))
    first_child_version = child_clock.tick(1_700_000_000)

    # THEN the child's change wins over every parent change
    assert first_child_version > max(parent_versions)


# --- clean-up of ended leases -----------------------------------------------------------------


def test_an_ended_parent_is_deleted_once_every_child_progressed_and_no_grandparent_remains():
    # GIVEN a finished parent whose two children both checkpointed past their start
    leases = [
        lease("p", checkpoint=SHARD_END),
        lease("c1", checkpoint="6200000000002513011398", parents=("p",)),
        lease("c2", checkpoint=SHARD_END, parents=("p",)),
    ]
    # WHEN clean-up is planned THEN only the parent goes
    assert [gone.lease_key for gone in leases_to_delete(leases)] == ["p"]


@pytest.mark.parametrize(
    "leases",
    [
        pytest.param([lease("p", checkpoint=SHARD_END), lease("c", parents=("p",))], id="child-not-started"),
        pytest.param([lease("p", checkpoint=SHARD_END)], id="no-child-lease-yet"),
        pytest.param(
            [lease("p", checkpoint=SHARD_END, owner="w1"), lease("c", checkpoint=SHARD_END, parents=("p",))],
            id="still-owned",
        ),
    ],
)
def test_ended_leases_are_kept_while_anything_still_needs_them(leases):
    assert leases_to_delete(leases) == []


def test_lineages_are_cleaned_up_oldest_first():
    # GIVEN grandparent → parent → child, all progressed
    leases = [
        lease("g", checkpoint=SHARD_END),
        lease("p", checkpoint=SHARD_END, parents=("g",)),
        lease("c", checkpoint="6200000000002513011398", parents=("p",)),
    ]
    # WHEN clean-up is planned THEN the parent waits until the grandparent is gone
    assert [gone.lease_key for gone in leases_to_delete(leases)] == ["g"]
    assert [gone.lease_key for gone in leases_to_delete(leases[1:])] == ["p"]


def test_a_cleaned_up_parent_still_listed_by_describe_stream_is_never_leased_again():
    # GIVEN a parent whose lease was deleted after its child progressed; DescribeStream still lists it
    shards = [shard("p", closed=True), shard("c", parent="p")]
    existing = [lease("c", checkpoint="6200000000002513011398", parents=("p",))]

    # WHEN leases are planned THEN the parent is not leased again (it would replay old changes)
    assert new_leases(shards, existing, TRIM_HORIZON) == []


def test_a_parent_whose_child_has_not_started_is_leased():
    shards = [shard("p", closed=True), shard("c", parent="p")]
    existing = [lease("c", parents=("p",))]
    assert [new.lease_key for new in new_leases(shards, existing, TRIM_HORIZON)] == ["p"]


# --- production depth: generations, clean-ups, trimming listings, several workers -------------


@given(
    seed=st.integers(0, 2**32),
    partitions=st.integers(1, 4),
    generations=st.integers(1, 8),
    initial_position=st.sampled_from([TRIM_HORIZON, LATEST]),
    workers=st.integers(1, 3),
)
@settings(max_examples=150, deadline=None)
def test_every_shard_is_leased_at_most_once_over_the_pools_life(
    seed, partitions, generations, initial_position, workers
):
    # GIVEN partitions rolling over and splitting for up to 8 generations, records on some shards,
    # listings that drop ancestors 24 h after they close, and a pool of workers that sync, read and
    # clean up in random interleavings
    rng = random.Random(seed)
    stream = SimStream(rng)
    pool = SimPool(stream, initial_position)
    for _ in range(partitions):
        stream.new_shard(None, 0)
    now = 0.0
    for _ in range(generations * 4):
        now += rng.uniform(0.5, 3) * HOUR
        for shard_id in stream.open_shards():
            if rng.random() < 0.6:
                stream.write(shard_id)
            if rng.random() < 0.3:
                stream.close(shard_id, now, children=rng.choice([1, 1, 1, 2]))
        for _ in range(workers):  # each worker's coordination step, in a random order
            for step in rng.sample(["sync", "read", "clean_up"], 3):
                pool.sync(now) if step == "sync" else getattr(pool, step)()

    # WHEN the pool catches up
    for _ in range(generations * 2 + 2):
        pool.sync(now)
        pool.read()
        pool.clean_up()

    # THEN no shard was ever leased twice (each is read from its start at most once), every open
    # shard has a lease, an ended lease is kept only while a child has not started from it (an idle
    # child read nothing yet, so its parent could be needed again), and when every shard carried
    # records the lease table holds at most two leases per open shard
    assert max(pool.created.values(), default=1) == 1
    open_shards = stream.open_shards()
    assert set(open_shards) <= set(pool.table)
    for ended in (held for held in pool.table.values() if held.checkpoint == SHARD_END):
        children = [held for held in pool.table.values() if ended.lease_key in held.parent_shard_ids]
        assert (
            not children
            or not all(has_progressed(child) for child in children)
            or (ended.parent_shard_ids & set(pool.table))
        ), ended.lease_key
    if all(shard.has_records for shard in stream.shards.values()):
        assert len(pool.table) <= 2 * len(open_shards)


def test_a_day_of_rollovers_keeps_the_lease_table_small():
    # GIVEN 50 partitions rolling over about every 4 h for 48 simulated hours, most of them busy,
    # a shard sync and clean-up every minute
    rng = random.Random(7)
    stream = SimStream(rng)
    pool = SimPool(stream)
    for _ in range(50):
        stream.new_shard(None, 0)
    next_rollover = {shard_id: rng.uniform(0, 4) * HOUR for shard_id in stream.open_shards()}
    largest, listed_most = 0, 0
    for minute in range(48 * 60):
        now = minute * 60.0
        for shard_id in list(next_rollover):
            if rng.random() < 0.8:
                stream.write(shard_id)
            if now >= next_rollover[shard_id]:
                del next_rollover[shard_id]
                for child in stream.close(shard_id, now):
                    next_rollover[child] = now + rng.uniform(3.5, 4.5) * HOUR
        pool.sync(now)
        pool.read()
        pool.clean_up()
        largest = max(largest, len(pool.table))
        listed_most = max(listed_most, len(stream.listing(now)))

    # THEN DescribeStream lists about six generations, while the lease table never holds more than
    # two leases per open shard, and no shard was leased twice
    assert listed_most >= 5 * 50
    assert largest <= 2 * 50
    assert max(pool.created.values()) == 1


@pytest.mark.parametrize(
    ("shards", "kind"),
    [
        ([shard("shardId-a", parent="shardId-b"), shard("shardId-b", parent="shardId-a")], "cycle"),
        ([shard(""), shard("shardId-ok")], "bad_id"),
        ([shard("shardId-ok"), shard("shardId-ok")], "duplicate"),
    ],
)
def test_a_corrupt_listing_is_reported_and_the_rest_still_decided(shards, kind):
    # GIVEN a listing with a cycle in its parent links, an empty id, or a shard listed twice,
    # next to an ordinary open shard
    listing = [*shards, shard("shardId-00000000000000000001-0000abcd")]
    # WHEN leases are planned THEN the anomaly is reported and the ordinary shard is still leased
    plan = plan_leases(listing, [], TRIM_HORIZON)
    assert kind in {anomaly.kind for anomaly in plan.anomalies}
    assert "shardId-00000000000000000001-0000abcd" in {lease.lease_key for lease in plan.leases}
    assert all(lease.lease_key not in ("shardId-a", "shardId-b", "") for lease in plan.leases)


def test_a_grandparent_still_listed_after_two_clean_ups_is_never_leased_again():
    # GIVEN grandparent and parent leases cleaned up after the grandchild progressed; all still listed
    shards = [shard("g", closed=True), shard("p", parent="g", closed=True), shard("c", parent="p")]
    existing = [lease("c", checkpoint="6200000000002513011398", parents=("p",))]
    # WHEN leases are planned THEN neither old shard is leased (each would be read from its start again)
    assert new_leases(shards, existing, TRIM_HORIZON) == []
    assert new_leases(shards, existing, LATEST) == []
