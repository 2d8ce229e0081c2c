"""The pool as one scan shows it: each lease in exactly one state, and the live workers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.leases.model import SHARD_END, TRIM_HORIZON, Lease
from consumer.leases.pool import LEASE_STATES, lease_states, live_workers


def _lease(key: str, owner: str | None = None, checkpoint: str = TRIM_HORIZON, parents: tuple[str, ...] = (), **extra):
    return Lease(key, owner=owner, counter=1, checkpoint=checkpoint, parent_shard_ids=frozenset(parents), **extra)


def test_each_state_is_named_by_what_the_lease_is_waiting_for():
    # GIVEN one lease in each state
    leases = [
        _lease("owned", owner="w1"),
        _lease("expired", owner="w2"),
        _lease("unowned"),
        _lease("parent", owner="w1", checkpoint="49600000000000000000000000001"),
        _lease("child", parents=("parent",)),
        _lease("ended", checkpoint=SHARD_END),
        _lease("vanished", checkpoint=SHARD_END, end_reason="vanished"),
    ]
    # WHEN the scan is counted (the lease "expired" not renewed for the failover time)
    states = lease_states(leases, {"expired": True})

    # THEN a child waits while its parent reads; ended and vanished shards are told apart
    assert states == {"owned": 2, "expired": 1, "unowned": 1, "waiting": 1, "ended": 1, "vanished": 1}
    # AND the live workers are the owners of unexpired leases and this worker
    assert live_workers(leases, {"expired": True}, "w9") == len({"w1", "w9"})


@given(
    st.lists(
        st.tuples(st.sampled_from([None, "w1", "w2"]), st.booleans(), st.booleans(), st.booleans()),
        max_size=30,
    )
)
def test_every_lease_is_counted_once_whatever_the_table(rows):
    leases = [
        _lease(
            f"s{i}",
            owner=owner,
            checkpoint=SHARD_END if ended else TRIM_HORIZON,
            parents=(f"s{i - 1}",) if child else (),
        )
        for i, (owner, ended, child, _) in enumerate(rows)
    ]
    expired = {f"s{i}": flag for i, (_, _, _, flag) in enumerate(rows)}
    states = lease_states(leases, expired)
    assert set(states) == set(LEASE_STATES)
    assert sum(states.values()) == len(leases)
