"""The worker's view of a large lease table, read a page per tick from moto: the first read whole,
then a part per tick, every lease re-read within a pass, deletions and creations seen by then."""

from __future__ import annotations

import threading

import pytest

from consumer.leases.model import SHARD_END, TRIM_HORIZON, Lease
from consumer.leases.table import LeaseTable
from consumer.leases.view import LeaseView

pytestmark = pytest.mark.integration

LEASES = 450
PAGE = 100  # the view's smallest page, lowered from its default so that 450 leases take a few pages


@pytest.fixture
def table(ddb, table_name) -> LeaseTable:
    table = LeaseTable(ddb, f"{table_name}-cdc-leases", stream_arn="arn:stream")
    table.ensure_table(threading.Event())
    for n in range(LEASES):
        assert table.create_lease(Lease(f"shardId-{n:05d}", None, 0, TRIM_HORIZON, stream_arn="arn:stream"))
    return table


def test_the_first_refresh_reads_the_whole_table_then_each_reads_a_part(table):
    view = LeaseView(table, pass_pages=3, min_page_items=PAGE)
    # WHEN a worker starts: its first refresh
    first = view.refresh()
    # THEN it knows every lease before deciding anything
    assert len(first.leases) == LEASES and len(first.read) == LEASES and first.whole

    # WHEN it goes on ticking
    reads = [view.refresh() for _ in range(6)]
    # THEN each tick reads a third of the table (ceil(450 / 3) = 150), never all of it, and the view stays whole
    assert [len(read.read) for read in reads] == [150, 150, 150, 150, 150, 150]
    assert not any(read.whole for read in reads)
    assert all(len(read.leases) == LEASES for read in reads)
    # ... and a pass of three ticks reads every lease once
    assert sorted(lease.lease_key for read in reads[:3] for lease in read.read) == sorted(
        lease.lease_key for lease in first.leases
    )

    # WHEN the pool is moving and the worker asks for the whole table, in the middle of a pass
    view.refresh()
    whole = view.refresh(whole=True)
    # THEN it reads all of it, and the next tick goes on a page at a time
    assert len(whole.read) == LEASES and whole.whole
    assert len(view.refresh().read) == 150


def test_changes_by_others_are_in_the_view_within_a_pass(table):
    view = LeaseView(table, pass_pages=3, min_page_items=PAGE)
    leases = {lease.lease_key: lease for lease in view.refresh().leases}
    # GIVEN another worker that takes one lease, ends one (and deletes it), and creates a new one
    taken = table.take(leases["shardId-00010"], "worker-b")
    ended = table.checkpoint(table.take(leases["shardId-00200"], "worker-b"), SHARD_END, version=3)
    table.release(ended)
    table.delete(ended.bumped(owner=None))
    assert table.create_lease(Lease("shardId-99999", None, 0, TRIM_HORIZON, stream_arn="arn:stream"))

    # WHEN the view reads one pass (until its cursor comes back to the table's start)
    for _ in range(4):
        current = {lease.lease_key: lease for lease in view.refresh().leases}

    # THEN it shows all three changes
    assert current["shardId-00010"].owner == "worker-b" and current["shardId-00010"].counter == taken.counter
    assert "shardId-00200" not in current
    assert "shardId-99999" in current
    assert len(current) == LEASES


def test_what_this_worker_writes_is_in_the_view_at_once(table):
    view = LeaseView(table, pass_pages=3, min_page_items=PAGE)
    leases = {lease.lease_key: lease for lease in view.refresh().leases}
    # WHEN the worker takes a lease and creates one
    taken = table.take(leases["shardId-00449"], "worker-me")
    created = Lease("shardId-00000-child", None, 0, TRIM_HORIZON, stream_arn="arn:stream")
    assert table.create_lease(created)
    view.merge([taken, created])
    # THEN the next refresh shows both, whatever part of the table it reads, and the pass end keeps them
    for _ in range(4):
        shown = {lease.lease_key: lease for lease in view.refresh().leases}
        assert shown["shardId-00449"].owner == "worker-me"
        assert "shardId-00000-child" in shown


def test_a_direct_read_finds_a_lease_the_view_has_not_read_yet(table):
    view = LeaseView(table, pass_pages=3, min_page_items=PAGE)
    view.refresh()
    view.refresh()  # the pass is past the start of the table
    # GIVEN a parent created by another worker behind the view's cursor
    assert table.create_lease(Lease("shardId-00000-a", None, 0, TRIM_HORIZON, stream_arn="arn:stream"))
    # WHEN the view reads on, not yet back at the start
    assert "shardId-00000-a" not in {lease.lease_key for lease in view.refresh().leases}
    # THEN a direct read finds it (so a child waits for it), and finds nothing for a lease that is gone
    assert table.get_lease("shardId-00000-a").checkpoint == TRIM_HORIZON
    assert table.get_lease("shardId-gone") is None


def test_a_table_of_one_page_is_read_once_a_pass_and_its_changes_seen_by_then(ddb, table_name):
    # GIVEN a small lease table (it fits the view's smallest page)
    table = LeaseTable(ddb, f"{table_name}-small-leases", stream_arn="arn:stream")
    table.ensure_table(threading.Event())
    for n in range(8):
        assert table.create_lease(Lease(f"shardId-{n:05d}", None, 0, TRIM_HORIZON, stream_arn="arn:stream"))
    view = LeaseView(table, pass_pages=3, min_page_items=PAGE)
    assert len(view.refresh().read) == 8  # the first refresh reads it whole

    # WHEN another worker takes a lease, and the view refreshes a pass of three ticks
    taken = table.take(table.get_lease("shardId-00003"), "worker-b")
    reads = [view.refresh() for _ in range(3)]

    # THEN only the pass's last refresh reads (one request, not three), and it shows the change
    assert [len(read.read) for read in reads] == [0, 0, 8]
    assert {lease.lease_key: lease for lease in reads[-1].leases}["shardId-00003"].counter == taken.counter
    # AND a refresh asked whole (a moving pool) reads at once, whatever the cadence
    assert len(view.refresh(whole=True).read) == 8
