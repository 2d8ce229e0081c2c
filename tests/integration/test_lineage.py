"""Shard lineage and the stream's failure modes, end to end, on the test-side stream server.

A moto table is the truth; ``MotoFeed`` copies its changes into a stream-server stream whose shards
split, trim, expire iterators and throttle. Worker processes read that stream
(``AWS_ENDPOINT_URL_DYNAMODBSTREAMS``) and write osmem through a recording proxy, so each test can
check what reached OpenSearch and in which order.
"""

from __future__ import annotations

import threading
import time

import pytest

from consumer.leases.model import SHARD_END
from tests.support.fault_proxy import assert_versions_follow_write_order
from tests.support.pool_state import converged, leases, log_time
from tests.support.tables import write_random_history
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def lineage(fed_stream):
    """A moto table fed into a 2-shard stream-server stream."""
    return fed_stream(2)


def test_a_split_during_steady_writes_with_several_workers_keeps_every_key_in_order(
    ddb, osmem, stream_server, proxy, table_name, lineage, start_worker
):
    # GIVEN three workers on a 2-shard stream and a writer hammering a small (hot) keyspace
    arn, env = lineage.arn, lineage.env
    workers = [start_worker(env, f"w{i}") for i in range(3)]
    writer = threading.Thread(target=write_random_history, args=(ddb, table_name, 1200, 21), kwargs={"keyspace": 40})
    writer.start()

    # WHEN every shard splits while the writes go on, and one child rolls over later
    wait_until(lambda: len(proxy.ledger) > 100, timeout=60, what="changes applied before the split")
    for shard in [s for s in stream_server.shards(arn) if s.ending_sequence_number is None]:
        stream_server.split(arn, shard.shard_id)
    wait_until(lambda: len(proxy.ledger) > 400, timeout=60, what="changes applied after the split")
    child = next(s for s in stream_server.shards(arn) if s.ending_sequence_number is None)
    stream_server.rollover(arn, child.shard_id)
    writer.join()
    lineage.feed.wait_caught_up(timeout=60)

    # THEN the index equals the final table, and per key the versions follow the write order
    wait_until(lambda: converged(ddb, table_name, osmem.url), timeout=120, what="index to equal table")
    assert_versions_follow_write_order(proxy.ledger)
    read_shards = set(stream_server.stats(arn).get_records_by_shard)
    assert len(read_shards) == len(stream_server.shards(arn)) == 7
    ended = [lease for lease in leases(ddb, table_name).values() if lease.checkpoint == SHARD_END]
    assert ended or len(leases(ddb, table_name)) < 7  # parents ended (or already cleaned up)
    assert all(worker.terminate() == 0 for worker in workers)


def test_children_wait_for_their_parent_to_drain(ddb, osmem, stream_server, proxy, table_name, lineage, start_worker):
    # GIVEN a parent with a backlog that is split, and children that already have records
    arn, env = lineage.arn, lineage.env
    write_random_history(ddb, table_name, changes=300, seed=31)
    lineage.feed.wait_caught_up(timeout=60)
    parents = [s.shard_id for s in stream_server.shards(arn)]
    children = {child: parent for parent in parents for child in stream_server.split(arn, parent)}
    write_random_history(ddb, table_name, changes=200, seed=32)
    lineage.feed.wait_caught_up(timeout=60)
    assert all(stream_server.records(arn, child) for child in children)

    # WHEN one worker drains the parents slowly (10 records per read)
    worker = start_worker({**env, "CDC_MAX_RECORDS_PER_READ": "10"})
    wait_until(lambda: converged(ddb, table_name, osmem.url), timeout=120, what="index to equal table")

    # THEN no child was read before its parent's SHARD_END checkpoint; the pickup delay is reported
    ended = {e["shard_id"]: log_time(e) for e in worker.events("shard_ended")}
    started = {e["shard_id"]: log_time(e) for e in worker.events("shard_iterator_acquired")}
    delays = {child: (started[child] - ended[parent]).total_seconds() for child, parent in children.items()}
    assert all(delay > 0 for delay in delays.values()), delays
    print(f"\nchild pickup delay after parent SHARD_END (s): {sorted(round(d, 3) for d in delays.values())}")
    assert_versions_follow_write_order(proxy.ledger)


def test_trimmed_records_are_reported_exactly_and_reading_continues(
    ddb, stream_server, table_name, lineage, start_worker
):
    # GIVEN a worker that applied a history on a 2-shard stream and stopped
    arn, env = lineage.arn, lineage.env
    write_random_history(ddb, table_name, changes=100, seed=41)
    lineage.feed.wait_caught_up(timeout=60)
    first = start_worker(env, "first")
    total = len(stream_server.records(arn))
    wait_until(lambda: first.metric("cdc_records_processed_total") == total, timeout=60, what="history applied")
    assert first.terminate() == 0
    checkpoints = {key: lease.checkpoint for key, lease in leases(ddb, table_name).items()}

    # WHEN more changes arrive and retention trims past the checkpoints while no worker runs
    write_random_history(ddb, table_name, changes=100, seed=42)
    lineage.feed.wait_caught_up(timeout=60)
    lineage.feed.stop()
    before = {r["dynamodb"]["SequenceNumber"] for r in stream_server.records(arn)}
    stream_server.trim(arn, count=total + 30)
    trimmed = before - {r["dynamodb"]["SequenceNumber"] for r in stream_server.records(arn)}
    lost = {seq for seq in trimmed if int(seq) > min(int(c) for c in checkpoints.values())}
    remaining = len(before) - len(trimmed)  # all newer than the checkpoints: the oldest went first
    second = start_worker(env, "second")
    wait_until(lambda: second.metric("cdc_records_processed_total") == remaining, timeout=60, what="the rest applied")

    # THEN each trimmed shard is reported, and the reported gaps name exactly the records lost
    reported = set()
    resumed = {e["shard_id"]: e for e in second.events("shard_resumed_after_trim")}
    for event in second.events("shard_data_trimmed"):
        low, high = (
            int(event["after_sequence_number"]),
            int(resumed[event["shard_id"]]["first_available_sequence_number"]),
        )
        reported |= {seq for seq in trimmed if low < int(seq) < high}
    assert reported == lost and lost
    assert second.metric("cdc_trimmed_data_events_total") == len(second.events("shard_data_trimmed"))


def test_more_than_a_hundred_shards_and_an_open_parent_page_do_not_break_sync(
    ddb, osmem, stream_server, table_name, lineage, start_worker
):
    # GIVEN a stream split into more than 100 shards, whose pages show parents as still open
    arn, env = lineage.arn, lineage.env
    while len(stream_server.shards(arn)) <= 120:
        open_shards = [s.shard_id for s in stream_server.shards(arn) if s.ending_sequence_number is None]
        stream_server.split(arn, open_shards[0])
    stream_server.open_parent_page(True)
    write_random_history(ddb, table_name, changes=200, seed=51)
    lineage.feed.wait_caught_up(timeout=60)

    try:
        # WHEN a worker syncs and reads
        start_worker(env)
        # THEN every shard gets a lease and the index converges
        wait_until(lambda: converged(ddb, table_name, osmem.url), timeout=120, what="index to equal table")
        shard_ids = {s.shard_id for s in stream_server.shards(arn)}
        assert shard_ids <= set(leases(ddb, table_name)) | _deleted(ddb, table_name, shard_ids)
    finally:
        stream_server.open_parent_page(False)


def _deleted(ddb, table: str, shard_ids: set[str]) -> set[str]:
    """Shards whose finished lease was already cleaned up (named as parents by a remaining lease)."""
    remaining = leases(ddb, table).values()
    return {parent for lease in remaining for parent in lease.parent_shard_ids} & shard_ids


def test_expired_iterators_and_throttling_lose_and_repeat_nothing(
    ddb, osmem, stream_server, table_name, lineage, start_worker
):
    # GIVEN a history on a 2-shard stream, read 20 records at a time
    arn, env = lineage.arn, lineage.env
    write_random_history(ddb, table_name, changes=400, seed=61)
    lineage.feed.wait_caught_up(timeout=60)
    total = len(stream_server.records(arn))
    worker = start_worker({**env, "CDC_MAX_RECORDS_PER_READ": "20", "CDC_RETRY_MAX_DELAY_SECONDS": "0.5"})

    # WHEN iterators expire and reads are throttled mid-way
    wait_until(lambda: worker.metric("cdc_records_read_total") >= 100, timeout=60, what="reading under way")
    stream_server.throttle(3)
    # A read in flight as they expire is answered with an iterator issued after it, so a worker whose
    # every shard is mid-read sees no expiry: expire them again until one is refused (reads remain)
    expired = 'cdc_get_records_total{outcome="expired_iterator"}'
    for _ in range(50):
        stream_server.expire_iterators()
        time.sleep(0.5)
        if worker.metrics().get(expired, 0) >= 1:
            break

    # THEN every record is read exactly once and the index converges
    wait_until(lambda: converged(ddb, table_name, osmem.url), timeout=120, what="index to equal table")
    wait_until(lambda: worker.metric("cdc_records_read_total") == total, timeout=30, what="all records read")
    samples = worker.metrics()
    assert samples['cdc_get_records_total{outcome="throttled"}'] == 3
    assert samples.get(expired, 0) >= 1
    assert worker.events("shard_iterator_expired")
