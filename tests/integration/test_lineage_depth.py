"""Lineage at production depth, end to end: six generations of rollovers read once each, vanished
shards ended loudly, a replaced stream followed without a restart.

As in test_lineage.py, a moto table is the truth and ``MotoFeed`` copies its changes into a
stream-server stream (the shards, their ends and their faults); the stream server counts, per shard,
the answers that served its first record, i.e. the reads from its start.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter

import pytest

from consumer.leases.model import SHARD_END
from tests.support.pool_state import converged, leases, log_time
from tests.support.table_facade import TableFacade
from tests.support.tables import index_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration


def open_shards(stream_server, arn: str) -> list[str]:
    return [s.shard_id for s in stream_server.shards(arn) if s.ending_sequence_number is None]


def test_six_generations_of_rollovers_read_each_shard_from_its_start_once(
    ddb, osmem, stream_server, table_name, fed_stream, start_worker
):
    # GIVEN two workers syncing shards every second on a 3-partition stream
    lineage = fed_stream(3, CDC_SHARD_SYNC_INTERVAL_SECONDS="1")
    arn = lineage.arn
    workers = [start_worker(lineage.env, f"w{i}") for i in range(2)]

    # WHEN six generations of changes are written, every shard rolling over (one splitting) after each
    for generation in range(6):
        write_random_history(ddb, table_name, changes=60, seed=100 + generation, keyspace=80)
        lineage.feed.wait_caught_up(timeout=60)
        for number, shard_id in enumerate(open_shards(stream_server, arn)):
            if generation == 2 and number == 0:
                stream_server.split(arn, shard_id)
            else:
                stream_server.rollover(arn, shard_id)
    write_random_history(ddb, table_name, changes=60, seed=199, keyspace=80)
    lineage.feed.wait_caught_up(timeout=60)

    # THEN the index equals the table, and every shard with records was read from its start once, or
    # once more for each time its lease changed hands before its first checkpoint (a steal for balance
    # right after a rollover replays what the loser had not checkpointed: the only re-read allowed)
    wait_until(lambda: converged(ddb, table_name, osmem.url), timeout=180, what="index to equal table")
    shards = stream_server.shards(arn)
    with_records = {s.shard_id for s in shards if stream_server.records(arn, s.shard_id)}
    starts = stream_server.stats(arn).starts_by_shard
    assert len(shards) >= 3 * 7 and with_records
    takes_from_start = Counter(
        event["shard_id"]
        for worker in workers
        for event in worker.logs()
        if event.get("event") in {"lease_taken", "lease_taken_expired", "lease_stolen"}
        and event.get("checkpoint") == "TRIM_HORIZON"
    )
    reads = {shard: starts.get(shard, 0) for shard in with_records}
    assert {shard: 1 <= reads[shard] <= max(1, takes_from_start[shard]) for shard in with_records} == dict.fromkeys(
        with_records, True
    ), f"reads from the start {reads}, takes at TRIM_HORIZON {dict(takes_from_start)}"
    print(
        f"\nshards read from their start again after a steal before any checkpoint: {sum(reads.values()) - len(reads)}"
    )
    # AND the lease table holds at most two leases per open shard
    wait_until(lambda: len(leases(ddb, table_name)) <= 2 * len(open_shards(stream_server, arn)), 30, "clean-up")

    # AND a child was picked up right after its parent ended: report how fast
    events = sorted((event for worker in workers for event in worker.logs()), key=lambda e: e.get("timestamp", ""))

    def first(name: str) -> dict[str, dt.datetime]:
        times: dict[str, dt.datetime] = {}
        for event in events:
            if event.get("event") == name:
                times.setdefault(event["shard_id"], log_time(event))
        return times

    ended, started, applied = (
        first("shard_ended"),
        first("shard_task_started"),
        first("shard_first_records_applied"),
    )
    parent_of = {s.shard_id: s.parent_shard_id for s in shards}
    pickup = [(started[c] - ended[p]).total_seconds() for c, p in parent_of.items() if p in ended and c in started]
    to_first = [(applied[c] - ended[p]).total_seconds() for c, p in parent_of.items() if p in ended and c in applied]
    assert pickup and all(delay >= 0 for delay in pickup)
    print(
        f"\nrollover pickup (parent SHARD_END → child started), s: p50={statistics.median(pickup):.3f} "
        f"p99={max(pickup) if len(pickup) < 100 else statistics.quantiles(pickup, n=100)[98]:.3f} n={len(pickup)}; "
        f"parent SHARD_END → child's first records applied, s: p50={statistics.median(to_first):.3f} "
        f"max={max(to_first):.3f} n={len(to_first)}"
    )
    assert all(worker.terminate() == 0 for worker in workers)


@pytest.mark.parametrize("still_listed", [True, False], ids=["listed-without-data", "unlisted"])
def test_a_vanished_shard_ends_loudly_and_its_children_proceed(
    ddb, osmem, stream_server, table_name, fed_stream, start_worker, still_listed
):
    # GIVEN a shard with records that rolled over, whose data is then gone before any worker read it
    lineage = fed_stream(1)
    arn = lineage.arn
    write_random_history(ddb, table_name, changes=20, seed=300, keyspace=20)
    lineage.feed.wait_caught_up(timeout=60)
    (parent,) = open_shards(stream_server, arn)
    stream_server.rollover(arn, parent)
    stream_server.vanish(arn, parent, listed=still_listed)
    create_keys = {f"late-{i}" for i in range(10)}
    for key in sorted(create_keys):
        ddb.put_item(TableName=table_name, Item={"pk": {"S": key}, "sk": {"N": "1"}, "n": {"N": "1"}})
    lineage.feed.wait_caught_up(timeout=60)

    # WHEN a worker runs
    worker = start_worker({**lineage.env, "CDC_RETRY_MAX_DELAY_SECONDS": "0.5"})

    # THEN the child's changes are indexed; the parent's loss is counted, logged and on record
    late = {f"{key}|1" for key in create_keys}
    wait_until(lambda: late <= set(index_documents(osmem.url, table_name)), timeout=60, what="the child's changes")
    if still_listed:
        wait_until(lambda: worker.metric("cdc_shards_vanished_total") == 1, timeout=30, what="the vanished metric")
        (event,) = worker.events("shard_vanished")
        assert event["shard_id"] == parent and event["last_applied_sequence_number"] == "TRIM_HORIZON"
        lease = leases(ddb, table_name).get(parent)
        assert lease is None or (lease.checkpoint == SHARD_END and lease.is_vanished)
    assert worker.terminate() == 0


def test_a_replaced_stream_is_followed_without_a_restart(
    moto, ddb, osmem, stream_server, table_name, fed_stream, start_worker
):
    # GIVEN a worker configured by table name (not by stream ARN), reading the table's stream
    lineage = fed_stream(2)
    old = lineage.arn
    facade = TableFacade(moto.url)
    facade.point(table_name, old)
    env = {**lineage.env, "AWS_ENDPOINT_URL_DYNAMODB": facade.url, "CDC_SHARD_SYNC_INTERVAL_SECONDS": "1"}
    env.pop("CDC_STREAM_ARN")
    try:
        worker = start_worker(env)
        write_random_history(ddb, table_name, changes=80, seed=400, keyspace=40)
        lineage.feed.wait_caught_up(timeout=60)
        wait_until(lambda: converged(ddb, table_name, osmem.url), timeout=60, what="the first stream applied")

        # WHEN the stream is disabled (its shards close; no stream for a moment) and enabled again,
        # which gives the table a new stream, and changes go on
        facade.point(table_name, None)
        for shard_id in open_shards(stream_server, old):
            stream_server.close(old, shard_id)
        new = stream_server.create_stream(table_name, key_schema=lineage_key_schema(), shard_count=2)
        lineage.feed.redirect(new)
        facade.point(table_name, new)
        write_random_history(ddb, table_name, changes=80, seed=401, keyspace=40)
        lineage.feed.wait_caught_up(timeout=60)

        # THEN the new stream's changes reach the index without a restart; the change is counted and
        # logged, and the old stream's leases are retired
        wait_until(lambda: converged(ddb, table_name, osmem.url), timeout=90, what="the new stream applied")
        assert worker.metric("cdc_stream_replaced_total") == 1
        (event,) = worker.events("stream_replaced")
        assert (event["old_stream_arn"], event["new_stream_arn"]) == (old, new)
        wait_until(
            lambda: {lease.stream_arn for lease in leases(ddb, table_name).values()} == {new},
            timeout=60,
            what="the old stream's leases retired",
        )
        assert worker.terminate() == 0
    finally:
        facade.stop()


def lineage_key_schema() -> list[dict[str, str]]:
    return [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
