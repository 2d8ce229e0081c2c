"""The lineage version clock (DESIGN §5): strictly increasing, replayable, in range.

The histories here are lists of ``Change(item, second)`` in shard order. ``ExternalIndex`` is
OpenSearch's ``version_type=external`` rule reduced to its essence, so the tests can check the
end state of the index under restarts, replays, zombies and splits.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.errors import RecordError
from consumer.pipeline.versioning import COUNTER_BITS, MAX_SECOND, MAX_VERSION, next_version
from tests.support.version_clock import VersionClock

NOW = 1_700_000_000


@dataclass(frozen=True)
class Change:
    """One stream record: a change of ``item`` at ``second`` (its ApproximateCreationDateTime)."""

    item: int
    second: int


@dataclass(frozen=True)
class Write:
    """One versioned write to the index; ``position`` is the change's place in the history."""

    item: int
    version: int
    position: int


class ExternalIndex:
    """``version_type=external``: a write lands only if its version is above the stored one (else 409)."""

    def __init__(self) -> None:
        self.docs: dict[int, tuple[int, int]] = {}  # item → (version, position of the change)
        self.dropped_newer: list[Write] = []  # 409s for a change newer than the one stored: lost updates

    def write(self, write: Write) -> bool:
        stored = self.docs.get(write.item)
        if stored is not None and stored[0] >= write.version:
            if write.position > stored[1]:
                self.dropped_newer.append(write)
            return False
        self.docs[write.item] = (write.version, write.position)
        return True

    def positions(self) -> dict[int, int]:
        return {item: position for item, (_, position) in self.docs.items()}


def latest_positions(history: list[Change]) -> dict[int, int]:
    """What the index must end with: each item's last change."""
    return {change.item: position for position, change in enumerate(history)}


def apply(writes: Iterable[Write]) -> ExternalIndex:
    index = ExternalIndex()
    for write in writes:
        index.write(write)
    return index


def tick_all(seconds: Iterable[int], start: int = 0) -> list[int]:
    clock = VersionClock(start)
    return [clock.tick(second) for second in seconds]


# Mostly equal or close seconds (bursts), with some skewed far back or ahead.
seconds = st.one_of(st.integers(NOW, NOW + 3), st.integers(NOW, NOW + 3), st.integers(0, MAX_SECOND))
second_histories = st.lists(seconds, min_size=1, max_size=60)
starts = st.one_of(st.just(0), st.integers(0, MAX_SECOND << COUNTER_BITS))
histories = st.lists(st.builds(Change, st.integers(0, 3), seconds), min_size=1, max_size=40)


# --- along one shard -------------------------------------------------------------------------


@given(second_histories, starts)
@settings(max_examples=300)
def test_versions_strictly_increase_along_a_shard_whatever_the_timestamps(history, start):
    # GIVEN any sequence of seconds — equal, decreasing, skewed — and any clock start
    # WHEN the shard's records are versioned
    versions = tick_all(history, start)

    # THEN every version is above the start and above the one before it
    assert all(later > earlier for earlier, later in zip([start, *versions], versions, strict=False))


@given(second_histories, starts, st.data())
@settings(max_examples=300)
def test_replay_from_any_checkpoint_reproduces_the_same_versions(history, start, data):
    # GIVEN a first pass over a shard, checkpointed (with its clock) after some record
    versions = tick_all(history, start)
    checkpoint = data.draw(st.integers(-1, len(history) - 1), label="checkpoint after record")
    stored_version = start if checkpoint < 0 else versions[checkpoint]

    # WHEN another worker resumes after the checkpoint from the stored version
    replayed = tick_all(history[checkpoint + 1 :], stored_version)

    # THEN it hands out exactly the versions of the first pass
    assert replayed == versions[checkpoint + 1 :]


@given(second_histories)
@settings(max_examples=200)
def test_timestamps_only_raise_the_clock(history):
    # GIVEN any history WHEN versioned THEN no version is below its record's second · 2^31
    for second, version in zip(history, tick_all(history), strict=True):
        assert version >= second << COUNTER_BITS


def test_a_failed_tick_leaves_the_clock_where_it_was():
    # GIVEN a clock that has versioned one record
    clock = VersionClock()
    first = clock.tick(NOW)

    # WHEN the next record has an impossible timestamp (it is dead-lettered)
    with pytest.raises(RecordError):
        clock.tick(-1)

    # THEN the clock did not move, so the following record gets the version a replay also gives it
    assert clock.last == first
    assert clock.tick(NOW) == next_version(first, NOW)


# --- across splits ---------------------------------------------------------------------------


@given(st.lists(second_histories, min_size=2, max_size=4), starts)
@settings(max_examples=200)
def test_a_child_clock_started_at_its_parent_last_version_is_above_every_parent_version(lineage, start):
    # GIVEN a lineage of shards (parent, child, grandchild ...), each started at the last version of
    # the one before, with splits that may happen within the same second as the parent's last record
    lineage = [lineage[0]] + [[parent[-1], *child] for parent, child in zip(lineage, lineage[1:], strict=False)]

    # WHEN each shard is versioned
    shard_versions = []
    for shard_seconds in lineage:
        shard_versions.append(tick_all(shard_seconds, shard_versions[-1][-1] if shard_versions else start))

    # THEN every version of a descendant is above every version of its ancestors
    for parent, child in zip(shard_versions, shard_versions[1:], strict=False):
        assert min(child) > max(parent)


# --- range -----------------------------------------------------------------------------------


@given(st.lists(st.integers(0, MAX_SECOND), min_size=1, max_size=60), starts)
@settings(max_examples=200)
def test_versions_fit_a_java_long_for_every_second_in_range(history, start):
    # GIVEN seconds anywhere in 0 … MAX_SECOND (year 2106) and a start a real clock can reach
    # WHEN versioned THEN every version is within 0 … 2^63 - 1 (OpenSearch accepts it)
    assert all(0 <= version <= MAX_VERSION for version in tick_all(history, start))


@pytest.mark.parametrize("second", [-1, MAX_SECOND + 1, 2**32, 2**40, -(2**63)])
def test_seconds_out_of_range_raise_record_error(second):
    # GIVEN a record whose timestamp is before 1970 or after 2106
    # WHEN it is versioned THEN RecordError (dead-lettered) rather than a version OpenSearch rejects
    with pytest.raises(RecordError, match="second"):
        next_version(0, second)


def test_the_top_of_the_range_is_usable_and_one_past_it_raises_record_error():
    # GIVEN a clock one below 2^63 - 1 at the last representable second
    clock = VersionClock(MAX_VERSION - 1)

    # WHEN two more records are versioned
    # THEN the first gets exactly 2^63 - 1, and the second is refused rather than overflowing
    assert clock.tick(MAX_SECOND) == MAX_VERSION
    with pytest.raises(RecordError, match="exceeds"):
        clock.tick(MAX_SECOND)
    assert clock.last == MAX_VERSION


@pytest.mark.parametrize("start", [-1, MAX_VERSION + 1])
def test_a_clock_start_outside_the_java_long_range_is_refused(start):
    with pytest.raises(ValueError):
        VersionClock(start)


# --- the index under restarts, replays, zombies and splits -----------------------------------


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[Change], list[tuple[int, int]], int]:
    """A history, the runs over it (resume from which checkpoint, how far), and the final run's resume point."""
    history = draw(histories)
    runs = draw(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, len(history))), max_size=4))
    return history, runs, draw(st.integers(0, 1000))


@given(schedules(), st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_restarts_replays_and_zombies_leave_every_item_at_its_last_change(schedule, rng):
    # GIVEN a shard history and several runs over it: workers that crash after any record, resume
    # from any checkpoint written before (lagging checkpoints, replays), or keep writing after they
    # lost the lease (zombies); a final owner resumes from some checkpoint and reads to the end
    history, runs, final_resume = schedule
    checkpoints = [(0, 0)]  # (next position, clock value stored with the checkpoint)
    writes: list[Write] = []
    for resume, length in [*runs, (final_resume, len(history))]:
        position, stored = checkpoints[resume % len(checkpoints)]
        clock = VersionClock(stored)
        for i in range(position, min(len(history), position + length)):
            writes.append(Write(history[i].item, clock.tick(history[i].second), i))
            checkpoints.append((i + 1, clock.last))

    # WHEN all their writes reach the index in any order
    rng.shuffle(writes)

    # THEN no newer change was ever refused, and the index ends at each item's last change
    index = apply(writes)
    assert index.dropped_newer == []
    assert index.positions() == latest_positions(history)


@given(histories, st.data())
@settings(max_examples=200)
def test_after_a_lease_table_reset_changes_of_a_later_second_win(history, data):
    # GIVEN a shard versioned up to some record, then the lease table is lost: the clock restarts at 0
    reset = data.draw(st.integers(1, len(history)), label="reset before record")
    before = tick_all([change.second for change in history[:reset]])
    after = tick_all([change.second for change in history[reset:]], 0)

    # WHEN later records carry a second above every second seen before the reset
    newest_before = max(change.second for change in history[:reset])
    later = [v for change, v in zip(history[reset:], after, strict=True) if change.second > newest_before]

    # THEN their versions are above every version written before: a reset costs at most the
    # changes made within the second of the reset
    assert all(version > max(before) for version in later)


# --- the peer's failure mode (Data Prepper: second · 10^6 + a counter kept in process memory) -----


def data_prepper_versions(history: list[Change]) -> list[int]:
    """A model of the peer's scheme: ``second · 10^6 + n``, n counting the records this process has
    seen in that second. The count lives in memory only, so it is 0 again in a new process (after a
    crash or a lease move) and in every child shard."""
    versions, current, seen = [], None, 0
    for change in history:
        if current is None or change.second > current:
            current, seen = change.second, 0
        elif change.second == current:
            seen += 1
        versions.append(change.second * 1_000_000 + (seen if change.second == current else 0))
    return versions


def our_versions(history: list[Change], start: int = 0) -> list[int]:
    return tick_all([change.second for change in history], start)


def generated_history(rng: random.Random, length: int, items: int, per_second: int) -> list[Change]:
    """A busy table: a few hot items, about ``per_second`` changes per second."""
    second = NOW
    history = []
    for _ in range(length):
        second += rng.random() < 1 / per_second
        history.append(Change(rng.randrange(items), second))
    return history


def index_after_crash(history: list[Change], first_pass: list[int], checkpoint: int, resumed: list[int]):
    """The index after a worker wrote ``first_pass`` and died, and the next one wrote ``resumed``
    for the records from ``checkpoint`` on."""
    writes = [Write(history[i].item, version, i) for i, version in enumerate(first_pass)]
    writes += [Write(history[checkpoint + i].item, version, checkpoint + i) for i, version in enumerate(resumed)]
    return apply(writes)


def test_data_prepper_versions_drop_newer_updates_after_a_restart_and_ours_do_not():
    # GIVEN a generated busy history (~100 changes per second to 4 items), and a worker that
    # checkpointed and then crashed within the same busy second; the next owner resumes at the checkpoint
    history = generated_history(random.Random(5), length=400, items=4, per_second=100)
    busiest = Counter(change.second for change in history).most_common(1)[0][0]
    in_busiest = [i for i, change in enumerate(history) if change.second == busiest]
    checkpoint, crash = in_busiest[len(in_busiest) // 3], in_busiest[2 * len(in_busiest) // 3]

    # WHEN the peer versions the second pass with its in-memory count restarted, and ours from the stored clock
    peer_first = data_prepper_versions(history[:crash])
    peer = index_after_crash(history, peer_first, checkpoint, data_prepper_versions(history[checkpoint:]))
    ours_first = our_versions(history[:crash])
    resumed = our_versions(history[checkpoint:], start=ours_first[checkpoint - 1])
    ours = index_after_crash(history, ours_first, checkpoint, resumed)

    # THEN the peer gives changes the first pass never saw versions at or below what it stored for
    # the same items, and OpenSearch drops them as 409s; ours drop nothing and end right
    assert any(write.position >= crash for write in peer.dropped_newer)
    assert ours.dropped_newer == []
    assert ours.positions() == latest_positions(history)


def test_data_prepper_versions_drop_child_shard_updates_after_a_same_second_split_and_ours_do_not():
    # GIVEN a parent shard whose last changes and the child's first changes fall in the same second
    parent = [Change(item=1, second=NOW)] * 5
    child = [Change(item=1, second=NOW)] * 2
    history = parent + child

    # WHEN the peer restarts its counter in the child, and ours starts the child at the parent's last version
    peer_versions = data_prepper_versions(parent) + data_prepper_versions(child)
    ours_parent = our_versions(parent)
    ours_versions = ours_parent + our_versions(child, start=ours_parent[-1])

    # THEN the peer's index drops both child changes and keeps the parent's last; ours ends at the child's
    peer = apply(Write(c.item, v, i) for i, (c, v) in enumerate(zip(history, peer_versions, strict=True)))
    ours = apply(Write(c.item, v, i) for i, (c, v) in enumerate(zip(history, ours_versions, strict=True)))
    assert [write.position for write in peer.dropped_newer] == [5, 6]
    assert peer.positions() == {1: 4}
    assert ours.dropped_newer == []
    assert ours.positions() == {1: 6}
