"""Coalesced checkpoints (``HeldLease.stage``): a shard task's progress after each page is only staged,
and the lease's next write carries the latest of it. What someone would care about: a busy lease
costs one write per renewal round, not one per page; the table's checkpoint only ever names progress
a task staged, never goes backwards, and catches up with the latest at every write; a transient
failure loses nothing that the next write does not carry; a lost lease refuses further progress."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.errors import LeaseLostError, LeaseTableError
from consumer.leases.coordinator import HeldLease, Progress
from consumer.leases.model import SHARD_END, Lease


class _Table:
    """The lease table's item for one lease, in memory: conditional on the counter, as DynamoDB is.
    ``failing`` makes the next writes raise a transient error; ``taken`` gives the lease to another worker."""

    def __init__(self, lease: Lease) -> None:
        self.item = lease
        self.writes: list[str] = []
        self.failing = 0
        self.fault: Exception | None = None  # raised once by the next checkpoint write
        self.taken = False

    def _write(self, lease: Lease, kind: str, **changes) -> Lease:
        if self.fault is not None and kind == "checkpoint":
            fault, self.fault = self.fault, None
            raise fault
        if self.failing:
            self.failing -= 1
            raise LeaseTableError("throttled")
        if self.taken or lease.counter != self.item.counter:
            raise LeaseLostError(f"lease {lease.lease_key} was changed by another worker")
        self.item = lease.bumped(**changes)
        self.writes.append(kind)
        return self.item

    def renew(self, lease: Lease) -> Lease:
        return self._write(lease, "renew")

    def checkpoint(self, lease, checkpoint, version, record_second=None, vanished_after=None) -> Lease:
        return self._write(lease, "checkpoint", checkpoint=checkpoint, checkpoint_version=version)

    def release(self, lease: Lease) -> None:
        self._write(lease, "release", owner=None)


def _held() -> tuple[HeldLease, _Table]:
    table = _Table(Lease("shardId-1", "me", 1, "TRIM_HORIZON"))
    return HeldLease(table.item, table, time.monotonic), table  # type: ignore[arg-type]


def _position(page: int) -> str:
    return f"{page:021d}"


def test_a_busy_lease_costs_one_write_per_renewal_round_carrying_its_latest_progress():
    # GIVEN a task that applied 50 pages between two renewal rounds
    held, table = _held()
    written: list[Progress] = []
    held.on_progress_written = written.append
    for page in range(1, 51):
        held.stage(Progress(_position(page), page * 10))
    assert table.writes == []  # staging writes nothing

    # WHEN the round renews the lease
    held.try_renew()

    # THEN one write carried the last page's progress, and the next round, with nothing new, renews
    assert table.writes == ["checkpoint"]
    assert (table.item.checkpoint, table.item.checkpoint_version) == (_position(50), 500)
    assert written == [Progress(_position(50), 500)]
    held.try_renew()
    assert table.writes == ["checkpoint", "renew"]


def test_progress_a_failed_write_could_not_carry_waits_for_the_next_one():
    held, table = _held()
    held.stage(Progress(_position(1), 10))
    table.failing = 1
    with pytest.raises(LeaseTableError):
        held.try_renew()
    assert table.item.checkpoint == "TRIM_HORIZON" and held.staged == Progress(_position(1), 10)
    held.try_renew()
    assert table.item.checkpoint == _position(1) and held.staged is None


def test_shard_end_is_written_at_once_and_supersedes_what_was_staged():
    held, table = _held()
    held.stage(Progress(_position(7), 70))
    held.checkpoint(SHARD_END, 70)
    assert table.item.checkpoint == SHARD_END and held.staged is None
    held.try_renew()
    assert table.item.checkpoint == SHARD_END  # the staged page never overwrites the end


def test_a_release_writes_the_staged_progress_first_and_releases_even_when_that_write_fails():
    held, table = _held()
    held.stage(Progress(_position(3), 30))
    held.release()
    assert table.writes == ["checkpoint", "release"] and table.item.checkpoint == _position(3)

    for fault in (LeaseTableError("throttled"), ValueError("what nobody named")):
        held, table = _held()
        held.stage(Progress(_position(3), 30))
        table.fault = fault
        held.release()  # the next owner replays from the checkpoint before: harmless, and the shard moves on
        assert table.writes == ["release"] and table.item.owner is None


def test_a_lost_lease_refuses_progress_and_never_writes_it():
    held, table = _held()
    held.stage(Progress(_position(1), 10))
    table.taken = True
    with pytest.raises(LeaseLostError):
        held.try_renew()
    assert held.lost.is_set()
    with pytest.raises(LeaseLostError):
        held.stage(Progress(_position(2), 20))
    held.release()  # a lost lease is left alone
    assert table.writes == [] and table.item.checkpoint == "TRIM_HORIZON"


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("stage"), st.integers(1, 5)),  # a task settles 1 to 5 more pages
        st.tuples(st.just("renew"), st.none()),
        st.tuples(st.just("flush"), st.none()),
        st.tuples(st.just("fail"), st.integers(1, 2)),  # the next writes fail transiently
    ),
    max_size=60,
)


@given(OPERATIONS)
def test_the_table_names_only_staged_progress_never_goes_back_and_catches_up_at_every_write(operations):
    # GIVEN a task staging its progress page after page, among renewal rounds, flushes and failures
    held, table = _held()
    page, staged_positions, history = 0, {"TRIM_HORIZON"}, ["TRIM_HORIZON"]
    writing_operations = 0
    for operation, argument in operations:
        if operation == "stage":
            page += argument
            held.stage(Progress(_position(page), page))
            staged_positions.add(_position(page))
        elif operation == "fail":
            table.failing = argument
        else:
            writing_operations += 1
            try:
                held.try_renew() if operation == "renew" else held.flush()
            except LeaseTableError:
                history.append(table.item.checkpoint)
                continue
            # THEN a successful write leaves the table at the latest progress staged
            assert table.item.checkpoint == (_position(page) if page else "TRIM_HORIZON")
            assert table.item.checkpoint_version == page
        history.append(table.item.checkpoint)

    # AND the table only ever named staged progress, in order, with at most one write per round or flush
    assert set(history) <= staged_positions
    assert history == sorted(history, key=lambda position: "" if position == "TRIM_HORIZON" else position)
    assert len(table.writes) <= writing_operations
