"""Which leases a worker takes: toward ceil(active / live workers), never from a live owner."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.leases.taker import LeaseState, leases_to_steal, leases_to_take, target_per_worker

ME = "worker-me"
OTHERS = ("worker-a", "worker-b", "worker-c")


@st.composite
def lease_tables(draw: st.DrawFn) -> tuple[list[LeaseState], frozenset[str]]:
    """A view of the lease table (random owners, expiry, ends) and the keys this worker holds."""
    rows = draw(
        st.lists(st.tuples(st.sampled_from([None, ME, *OTHERS]), st.booleans(), st.integers(0, 4)), max_size=30)
    )
    leases = [
        LeaseState(f"shardId-{i:04d}", owner, expired=expired, ended=ended == 0)
        for i, (owner, expired, ended) in enumerate(rows)
    ]
    mine = [lease.lease_key for lease in leases if lease.owner == ME]
    held = draw(st.frozensets(st.sampled_from(mine))) if mine else frozenset()
    return draw(st.permutations(leases)), held


def is_free(lease: LeaseState, held: frozenset[str]) -> bool:
    """Takeable: not ended, not held, and unowned, expired, or a leftover of this worker's id."""
    return (
        not lease.ended and lease.lease_key not in held and (lease.owner is None or lease.expired or lease.owner == ME)
    )


@given(lease_tables())
@settings(max_examples=300)
def test_taking_respects_the_target_and_the_owners(table):
    # GIVEN any lease table view and the leases this worker holds
    leases, held = table
    by_key = {lease.lease_key: lease for lease in leases}
    target = target_per_worker(leases, ME)

    # WHEN the worker decides what to take
    taken = leases_to_take(leases, ME, held)

    # THEN it takes each lease at most once, none it holds, and no more than it needs for its target
    assert len(taken) == len(set(taken))
    assert not set(taken) & held
    assert len(taken) <= max(0, target - len(held))
    for key in taken:
        lease = by_key[key]
        # never a lease another worker owns and keeps renewing
        assert lease.owner in (None, ME) or lease.expired
        # never a finished shard
        assert not lease.ended


@given(lease_tables())
@settings(max_examples=300)
def test_a_worker_below_its_target_takes_every_free_lease_it_needs(table):
    # GIVEN any lease table view
    leases, held = table
    free = [lease for lease in leases if is_free(lease, held)]
    wanted = max(0, target_per_worker(leases, ME) - len(held))

    # WHEN the worker decides what to take
    taken = leases_to_take(leases, ME, held)

    # THEN it takes as many free leases as it can up to its target: it does not sit idle below it
    assert len(taken) == min(len(free), wanted)


@given(lease_tables())
@settings(max_examples=100)
def test_the_target_is_active_leases_over_live_workers(table):
    # GIVEN any lease table view
    leases, _ = table
    active = [lease for lease in leases if not lease.ended]
    live = {lease.owner for lease in active if lease.owner and not lease.expired} | {ME}

    # WHEN the target is computed THEN it is ceil(active / live), this worker counted as live
    assert target_per_worker(leases, ME) == math.ceil(len(active) / len(live))


@given(st.integers(1, 60), st.booleans())
@settings(max_examples=60)
def test_a_single_worker_takes_every_free_lease(count, previously_owned):
    # GIVEN a lone worker and N leases that are unowned, or whose owner died (expired)
    leases = [
        LeaseState(
            f"shardId-{i:03d}", "dead-worker" if previously_owned else None, expired=previously_owned, ended=False
        )
        for i in range(count)
    ]

    # WHEN it decides what to take THEN it takes all N, in key order
    assert leases_to_take(leases, ME, frozenset()) == [lease.lease_key for lease in leases]


def test_a_lease_left_under_this_workers_id_by_a_previous_process_is_taken_back():
    # GIVEN a restarted worker (same CDC_WORKER_ID) whose old process still shows as owner, unexpired
    leases = [LeaseState("shardId-1", ME, expired=False, ended=False)]

    # WHEN it decides what to take in its first cycle THEN it takes the lease back at once instead of
    # waiting for expiry (as the KCL reclaims a worker's leases at start-up)
    assert leases_to_take(leases, ME, frozenset()) == ["shardId-1"]

    # WHEN such a lease shows up later, unexpired THEN a live process with this id holds it: not taken
    assert leases_to_take(leases, ME, frozenset(), reclaim_own=False) == []
    assert leases_to_steal(leases, ME, frozenset(), reclaim_own=False) == []
    expired = [LeaseState("shardId-1", ME, expired=True, ended=False)]
    assert leases_to_take(expired, ME, frozenset(), reclaim_own=False) == ["shardId-1"]


def test_a_balanced_pool_takes_nothing():
    # GIVEN four leases split two and two between two live workers, and a third worker that joins
    leases = [
        LeaseState("s1", "worker-a", expired=False, ended=False),
        LeaseState("s2", "worker-a", expired=False, ended=False),
        LeaseState("s3", "worker-b", expired=False, ended=False),
        LeaseState("s4", "worker-b", expired=False, ended=False),
    ]

    # WHEN the newcomer decides what to take THEN nothing: no free lease, no thrash
    assert leases_to_take(leases, ME, frozenset()) == []


def test_the_leases_of_a_dead_worker_are_shared_not_grabbed():
    # GIVEN worker-a alive with two leases, and worker-b dead (its two leases expired)
    leases = [
        LeaseState("s1", "worker-a", expired=False, ended=False),
        LeaseState("s2", "worker-a", expired=False, ended=False),
        LeaseState("s3", "worker-b", expired=True, ended=False),
        LeaseState("s4", "worker-b", expired=True, ended=False),
    ]

    # WHEN a new worker decides THEN it takes its share, ceil(4 / 2) = 2, both of the dead worker's
    assert leases_to_take(leases, ME, frozenset()) == ["s3", "s4"]


def test_ended_leases_neither_count_toward_the_target_nor_get_taken():
    # GIVEN one open lease and many finished ones, all unowned
    leases = [LeaseState("open", None, expired=False, ended=False)] + [
        LeaseState(f"done-{i}", None, expired=False, ended=True) for i in range(5)
    ]

    # WHEN a worker decides THEN it takes just the open one
    assert target_per_worker(leases, ME) == 1
    assert leases_to_take(leases, ME, frozenset()) == ["open"]


# --- stealing -------------------------------------------------------------------------------------


def owned(counts: dict[str, int]) -> list[LeaseState]:
    """A table where each worker owns ``count`` unexpired leases."""
    return [
        LeaseState(f"shard-{owner}-{i:03}", owner, expired=False, ended=False)
        for owner, count in counts.items()
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("counts", "stealer", "victim", "stolen_count"),
    [
        ({"a": 8, "new": 0}, "new", "a", 4),  # victim above target (4): takes what it needs at once
        ({"a": 2, "b": 2, "new": 0}, "new", "a", 1),  # victim at target (2), stealer needs 2: the KCL rule
        ({"a": 3, "b": 5, "new": 1}, "new", "b", 2),  # the most loaded is the victim, left at the target
        ({"a": 1000, "new": 0}, "new", "a", 500),  # a worker joining a big pool is balanced in one cycle
    ],
)
def test_a_worker_below_target_steals_from_the_most_loaded_without_taking_it_below_target(
    counts, stealer, victim, stolen_count
):
    table = owned(counts)
    held = frozenset(lease.lease_key for lease in table if lease.owner == stealer)
    assert leases_to_take(table, stealer, held) == []
    stolen = leases_to_steal(table, stealer, held, random.Random(1))
    assert len(stolen) == stolen_count
    assert {next(lease.owner for lease in table if lease.lease_key == key) for key in stolen} == {victim}


@pytest.mark.parametrize(
    "counts",
    [
        {"a": 2, "b": 1, "new": 1},  # stealer needs one, most loaded at target: balanced enough
        {"a": 3, "b": 3, "new": 2},  # within one of everyone
        {"a": 1, "new": 1},
    ],
)
def test_no_steal_once_owners_differ_by_at_most_one(counts):
    table = owned(counts)
    held = frozenset(lease.lease_key for lease in table if lease.owner == "new")
    assert leases_to_steal(table, "new", held) == []


def test_no_steal_while_a_free_lease_exists():
    table = [*owned({"a": 6}), LeaseState("free", None, expired=False, ended=False)]
    assert leases_to_steal(table, "new", frozenset()) == []


@st.composite
def pools(draw: st.DrawFn) -> tuple[int, dict[str, int], list[str]]:
    """A lease count, an initial ownership (some leases possibly free) and the workers present."""
    workers = [f"w{i}" for i in range(draw(st.integers(1, 6)))]
    total = draw(st.integers(0, 40))
    initial = {}
    for i in range(total):
        initial[f"shard-{i:03}"] = draw(st.sampled_from([None, *workers]))
    return total, initial, workers


def run_pool(initial: dict[str, str | None], workers: list[str], order: random.Random, cycles: int) -> list[int]:
    """Simulate taker cycles (workers in random order, writes applied at once, as conditional writes
    let exactly one worker win). Returns the number of ownership changes per cycle."""
    owners = dict(initial)
    changes_per_cycle = []
    for _ in range(cycles):
        changes = 0
        for worker in order.sample(workers, len(workers)):
            table = [LeaseState(key, owner, expired=False, ended=False) for key, owner in sorted(owners.items())]
            held = frozenset(key for key, owner in owners.items() if owner == worker)
            keys = leases_to_take(table, worker, held) or leases_to_steal(table, worker, held, order)
            for key in keys:
                owners[key] = worker
                changes += 1
        changes_per_cycle.append(changes)
    counts = [sum(1 for owner in owners.values() if owner == worker) for worker in workers]
    assert None not in owners.values(), "a lease was left without owner"
    assert max(counts) - min(counts) <= 1, f"unbalanced: {counts}"
    return changes_per_cycle


@given(pools(), st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_a_stable_pool_converges_to_within_one_lease_and_then_stops_changing(pool, order):
    # GIVEN any initial ownership and a stable set of workers
    total, initial, workers = pool
    # WHEN every worker runs its taker cycle, many times
    cycles = 2 * total + 4
    changes = run_pool(initial, workers, order, cycles)
    # THEN owners differ by at most one lease (checked in run_pool) and the last cycles change nothing
    assert changes[-2:] == [0, 0]


@given(pools(), st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_every_steal_narrows_the_spread(pool, order):
    # GIVEN any table WHEN a worker decides to steal THEN its victim holds at least two more than it,
    # the victim is the most loaded, and the victim is never below the target
    total, initial, workers = pool
    table = [LeaseState(key, owner, expired=False, ended=False) for key, owner in sorted(initial.items())]
    for worker in workers:
        held = frozenset(key for key, owner in initial.items() if owner == worker)
        stolen = leases_to_steal(table, worker, held, order)
        if not stolen:
            continue
        (victim,) = {initial[key] for key in stolen}
        counts = {w: sum(1 for o in initial.values() if o == w) for w in workers}
        assert counts[victim] >= len(held) + 2
        assert counts[victim] == max(count for w, count in counts.items() if w != worker)
        # after the steal the victim is still at or above the target, and the stealer not above it
        target = target_per_worker(table, worker)
        assert counts[victim] - len(stolen) >= min(target, counts[victim] - 1)
        assert len(held) + len(stolen) <= target
        assert counts[victim] - len(stolen) >= len(held) + len(stolen) - 1
