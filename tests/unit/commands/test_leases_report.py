"""``consumer leases``: each lease's state, age and lag, the table's order and shape, and the JSON."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from consumer.commands.leases_report import (
    LeaseRow,
    format_duration,
    generation_heading,
    lease_rows,
    render_json,
    render_table,
    short_checkpoint,
    summary,
)
from consumer.leases.model import LATEST, SHARD_END, TRIM_HORIZON, Lease
from consumer.pipeline.generations import Generation, ReindexProgress
from tests.support.factories import lease

NOW = 1_700_000_000.0
FAILOVER = 10.0
SEQUENCE = "6200000000002513011398"


def timed(
    base: Lease,
    updated_ago: float | None = None,
    checkpointed_ago: float | None = None,
    record_ago: float | None = None,
) -> Lease:
    """``base`` with its wall-clock attributes set to so many seconds before NOW."""
    return replace(
        base,
        last_updated_at=None if updated_ago is None else NOW - updated_ago,
        checkpointed_at=None if checkpointed_ago is None else NOW - checkpointed_ago,
        checkpoint_record_at=None if record_ago is None else NOW - record_ago,
    )


def row_of(one: Lease) -> LeaseRow:
    [row] = lease_rows([one], NOW, FAILOVER)
    return row


# --- state --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "state"),
    [
        (timed(lease(owner="w-a"), updated_ago=2), "owned"),
        (timed(lease(owner="w-a"), updated_ago=FAILOVER), "owned"),  # not older than the failover time
        (timed(lease(owner="w-a"), updated_ago=FAILOVER + 0.5), "expired"),
        (lease(owner="w-a"), "owned"),  # age unknown: never shown as expired
        (timed(lease(owner=None), updated_ago=3600), "unowned"),
        (lease(owner=None), "unowned"),
        (timed(lease(owner="w-a", checkpoint=SHARD_END), updated_ago=3600), "ended"),
        (lease(owner=None, checkpoint=SHARD_END), "ended"),
    ],
    ids=["fresh", "at-failover", "stale", "age-unknown", "unowned", "unowned-no-age", "ended-held", "ended-free"],
)
def test_the_state_of_a_lease(given, state):
    # GIVEN a lease WHEN it becomes a row THEN its state follows owner, checkpoint and wall-clock age
    assert row_of(given).state == state


def test_the_age_is_the_time_since_the_last_write_and_unknown_shows_a_question_mark():
    # GIVEN one lease written 4.25 s ago and one never stamped
    rows = lease_rows([timed(lease("a", owner="w"), updated_ago=4.25), lease("b", owner="w")], NOW, FAILOVER)

    # THEN the first is 4.25 s old, the second's age is unknown and shown as "?"
    assert [row.age_seconds for row in rows] == [4.25, None]
    assert format_duration(rows[1].age_seconds) == "?"


def test_the_lag_is_measured_at_the_last_checkpoint_when_both_times_are_known():
    # GIVEN a lease checkpointed 3 s ago at a record created 10 s ago, and one without a record time
    lagging = timed(lease("a", owner="w", checkpoint=SEQUENCE), updated_ago=1, checkpointed_ago=3, record_ago=10)
    unknown = timed(lease("b", owner="w", checkpoint=SEQUENCE), updated_ago=1, checkpointed_ago=3)

    # WHEN they become rows
    rows = lease_rows([lagging, unknown], NOW, FAILOVER)

    # THEN the lag is 7 s for the first and unknown ("—" in the table) for the second
    assert [row.lag_seconds for row in rows] == [7.0, None]
    assert "7.0s" in render_table(rows).splitlines()[1]
    assert render_table(rows).splitlines()[2].split()[-2] == "—"


def test_clock_skew_never_shows_a_negative_age_or_lag():
    # GIVEN a lease stamped by a worker whose clock runs ahead of ours and behind DynamoDB's
    ahead = timed(lease(owner="w"), updated_ago=-5, checkpointed_ago=-5, record_ago=-6)

    # THEN age and lag are clamped at zero
    row = row_of(ahead)
    assert (row.age_seconds, row.lag_seconds) == (0.0, 0.0)


def test_the_row_carries_owner_switches_counter_and_sorted_parents():
    given = lease("c", owner="w", counter=9, parents=("p2", "p1"), owner_switches=3)
    row = row_of(given)
    assert (row.owner_switches, row.counter, row.parents) == (3, 9, ("p1", "p2"))


# --- order --------------------------------------------------------------------------------------


def test_parents_come_before_children_then_by_key():
    # GIVEN a lineage whose keys sort the other way: c ← b ← a, and an unrelated z
    leases = [
        lease("a", parents=("b",)),
        lease("z"),
        lease("b", parents=("c",)),
        lease("c", checkpoint=SHARD_END),
    ]

    # WHEN they become rows THEN each generation comes after its parents, keys order the rest
    assert [row.shard for row in lease_rows(leases, NOW, FAILOVER)] == ["c", "z", "b", "a"]


def test_a_parent_without_a_lease_does_not_push_its_child_back():
    # GIVEN a child whose parent lease was already deleted
    leases = [lease("b", parents=("gone",)), lease("a")]
    assert [row.shard for row in lease_rows(leases, NOW, FAILOVER)] == ["a", "b"]


def test_a_parent_cycle_still_lists_every_lease_once():
    # GIVEN a corrupt table where two leases name each other as parent
    leases = [lease("a", parents=("b",)), lease("b", parents=("a",))]
    assert sorted(row.shard for row in lease_rows(leases, NOW, FAILOVER)) == ["a", "b"]


# --- formatting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0, "0.0s"),
        (4.2, "4.2s"),
        (59.9, "59.9s"),
        (59.96, "1m00s"),
        (190, "3m10s"),
        (3599.4, "59m59s"),
        (2 * 3600 + 5 * 60 + 30, "2h05m"),
        (3 * 86400 + 4 * 3600, "3d04h"),
        (None, "?"),
    ],
)
def test_durations_are_short_and_human(seconds, shown):
    assert format_duration(seconds) == shown


@pytest.mark.parametrize(
    ("checkpoint", "shown"),
    [
        (TRIM_HORIZON, TRIM_HORIZON),
        (LATEST, LATEST),
        (SHARD_END, SHARD_END),
        (SEQUENCE, "…2513011398"),
        ("12345678901", "12345678901"),  # already short
    ],
)
def test_long_sequence_numbers_are_shortened_in_the_table(checkpoint, shown):
    assert short_checkpoint(checkpoint) == shown


def test_the_table_has_a_header_aligned_columns_and_a_summary():
    # GIVEN leases of every state
    leases = [
        timed(lease("shardId-parent", owner="worker-a", checkpoint=SHARD_END), updated_ago=7300),
        timed(
            lease("shardId-child", owner="worker-b", checkpoint=SEQUENCE, parents=("shardId-parent",)),
            updated_ago=2.1,
            checkpointed_ago=3,
            record_ago=7.2,
        ),
        timed(lease("shardId-stuck", owner="worker-a", owner_switches=2), updated_ago=190),
        lease("shardId-new"),
    ]

    # WHEN rendered as a table
    lines = render_table(lease_rows(leases, NOW, FAILOVER)).splitlines()

    # THEN a header, one aligned line per lease, a blank line and the summary
    assert lines[0].split() == ["SHARD", "OWNER", "STATE", "CHECKPOINT", "PARENT", "AGE", "LAG", "SWITCHES"]
    assert [line.split() for line in lines[1:5]] == [
        ["shardId-new", "—", "unowned", "TRIM_HORIZON", "—", "?", "—", "0"],
        ["shardId-parent", "worker-a", "ended", "SHARD_END", "—", "2h01m", "—", "0"],
        ["shardId-stuck", "worker-a", "expired", "TRIM_HORIZON", "—", "3m10s", "—", "2"],
        ["shardId-child", "worker-b", "owned", "…2513011398", "shardId-parent", "2.1s", "4.2s", "0"],
    ]
    assert len({line.index(line.split()[2]) for line in lines[:5]}) == 1  # STATE starts in one column
    assert len({len(line) for line in lines[:5]}) == 1  # right-aligned SWITCHES ends in one column
    assert lines[5] == ""
    assert lines[6] == "4 leases: 1 owned by 1 worker (worker-b: 1), 1 ended, 1 unowned, 1 expired"


def test_an_empty_table_still_has_its_header_and_summary():
    assert render_table([]).splitlines() == [
        "SHARD  OWNER  STATE  CHECKPOINT  PARENT  AGE  LAG  SWITCHES",
        "",
        "0 leases: 0 owned, 0 ended, 0 unowned, 0 expired",
    ]


def test_the_summary_counts_owned_leases_per_worker():
    # GIVEN three owned leases over two workers, and an expired one of a third worker
    leases = [
        timed(lease("a", owner="w-b"), updated_ago=1),
        timed(lease("b", owner="w-a"), updated_ago=1),
        timed(lease("c", owner="w-b"), updated_ago=1),
        timed(lease("d", owner="w-c"), updated_ago=60),
    ]

    # THEN only owned leases count towards workers, listed by name
    assert summary(lease_rows(leases, NOW, FAILOVER)) == (
        "4 leases: 3 owned by 2 workers (w-a: 1, w-b: 2), 0 ended, 0 unowned, 1 expired"
    )


# --- JSON ---------------------------------------------------------------------------------------


def test_json_has_full_checkpoints_and_round_trips_to_the_rows():
    # GIVEN rows with a sequence checkpoint, parents and unknown times
    rows = lease_rows(
        [
            timed(lease("a", owner="w", checkpoint=SEQUENCE, parents=("p",)), updated_ago=1.5, checkpointed_ago=2),
            lease("p", checkpoint=SHARD_END),
        ],
        NOW,
        FAILOVER,
    )

    # WHEN rendered as JSON and parsed back
    parsed = json.loads(render_json(rows))

    # THEN every field is there, the checkpoint is whole, unknowns are null, and the rows come back
    assert parsed[1] == {
        "shard": "a",
        "owner": "w",
        "state": "owned",
        "checkpoint": SEQUENCE,
        "parents": ["p"],
        "age_seconds": 1.5,
        "lag_seconds": None,
        "owner_switches": 0,
        "counter": 0,
        "generation": None,
    }
    assert [LeaseRow(**{**item, "parents": tuple(item["parents"])}) for item in parsed] == rows


def test_json_of_no_leases_is_an_empty_array():
    assert json.loads(render_json([])) == []


def test_a_generation_heading_names_its_lease_table_and_where_its_reindex_stands():
    live = Generation(1, "f1", {}, "orders-leases", "live", NOW - 900, live_since=NOW - 900)
    building = Generation(2, "f2", {}, "orders-leases-g2", "building", NOW - 600)
    assert generation_heading(live, NOW) == "generation 1 (live), lease table orders-leases"
    assert "reindex: not started (last moved 10m00s ago): run `consumer reindex`" in generation_heading(building, NOW)
    filling = replace(building, progress=ReindexProgress("fill", 120_000, NOW - 4))
    assert generation_heading(filling, NOW) == (
        "generation 2 (building), lease table orders-leases-g2; reindex: fill, 120,000 items filled (last moved 4.0s ago)"
    )
    rows = lease_rows([lease("a", owner="w")], NOW, FAILOVER, generation=2)
    assert json.loads(render_json(rows))[0]["generation"] == 2
