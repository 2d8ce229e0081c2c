"""Many shards per worker, end to end: hundreds of shards shared by a few workers with every record
applied and no lease lost, and a burst on many shards held within the worker's byte budget."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from consumer.observability.metrics import Metrics
from tests.support.in_process import InProcessWorker, start_worker
from tests.support.tables import COMPOSITE_KEY, create_table, index_documents, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.long]


def test_three_workers_share_320_shards_apply_every_record_and_lose_no_lease(
    ddb, osmem, stream_server, table_name, fed_stream, start_worker
):
    # GIVEN a 320-shard stream and three workers (idle polls every second, up to two; moto, the lease
    # table here, answers a few hundred writes a second, so leases are renewed every 6.7 s)
    lineage = fed_stream(320, CDC_POLL_INTERVAL_SECONDS="1", CDC_FAILOVER_SECONDS="20")
    workers = [start_worker(lineage.env, f"w{i}") for i in range(3)]
    wait_until(
        lambda: sum(worker.metric("cdc_leases_held") for worker in workers) == 320, timeout=120, what="every lease held"
    )

    # WHEN 1500 changes land on keys spread over every shard
    write_random_history(ddb, table_name, changes=1500, seed=500, keyspace=1200)
    lineage.feed.wait_caught_up(timeout=120)

    # THEN the index equals the table, the shards end up spread over the workers, and no lease was lost
    # (taken from an owner that failed to renew it: steals while balancing are not losses)
    def converged() -> bool:
        return index_documents(osmem.url, table_name) == table_documents(ddb, table_name, COMPOSITE_KEY)

    wait_until(converged, timeout=180, what="index to equal table")

    def balanced() -> bool:  # steals take a victim a tick; the data may converge before they end
        held = [worker.metric("cdc_leases_held") for worker in workers]
        return sum(held) == 320 and max(held) - min(held) <= 1

    wait_until(balanced, timeout=120, what="every lease held and the workers within one lease of each other")
    taken_expired = [event for worker in workers for event in worker.events("lease_taken_expired")]
    assert not taken_expired, _lease_loss_report(workers, taken_expired)

    def tasks_follow_leases() -> bool:  # a task whose lease was stolen stops at its next step, reaped a tick later
        return all(worker.metric("cdc_shard_tasks") <= worker.metric("cdc_leases_held") for worker in workers)

    wait_until(tasks_follow_leases, timeout=60, what="no worker reading a shard whose lease it no longer holds")
    assert all(worker.terminate() == 0 for worker in workers)


def _lease_loss_report(workers: list[Any], taken_expired: list[dict[str, Any]]) -> str:
    """Why leases expired: the takes, and what each former owner saw of its renewals."""
    lines = [f"{len(taken_expired)} leases taken as expired, e.g. {taken_expired[:3]}"]
    for worker in workers:
        samples = worker.metrics()
        rounds = {k: v for k, v in samples.items() if k.startswith("cdc_lease_renew_round_duration_seconds_bucket")}
        lines.append(
            f"{worker.worker_id}: renew rounds by duration bucket {rounds}; "
            f"renew failures {worker.events('lease_renew_failed')[:3]}; losses {worker.events('lease_lost')[:3]}"
        )
    return "\n".join(lines)


@pytest.fixture
def in_process_worker(moto, stream_server, proxy, worker_env, monkeypatch) -> Iterator[Any]:
    """Factory: a worker run in this process (so a test can read its budget), on the stream-server
    stream ``arn`` (read from its start), writing through the proxy; stopped at teardown."""
    running: list[InProcessWorker] = []

    def start(arn: str, **env: str) -> Metrics:
        variables = {
            **worker_env,
            "CDC_STREAM_ARN": arn,
            "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": stream_server.url,
            "CDC_OPENSEARCH_URL": proxy.url,
            **env,
        }
        running.append(start_worker(variables, monkeypatch))
        return running[-1].metrics

    yield start
    for worker in running:
        worker.halt()


def _key_schema() -> list[dict[str, str]]:
    return [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]


def test_a_burst_on_many_shards_stays_within_the_byte_budget(
    in_process_worker, stream_server, osmem, proxy, ddb, table_name
):
    # GIVEN a 40-shard stream on which 2000 changes of ~4 KB landed at once (8 MB, eight times the
    # budget below: ~50 records, ~200 KB, waiting on each shard), and a slow OpenSearch (each bulk
    # answered after 0.2 s)
    create_table(ddb, table_name)
    arn = stream_server.create_stream(table_name, key_schema=_key_schema(), shard_count=40)
    payload = {"blob": {"S": "x" * 4000}}
    for i in range(2000):
        keys = {"pk": {"S": f"burst-{i}"}, "sk": {"N": "1"}}
        stream_server.put_change(arn, "INSERT", keys, new_image={**keys, **payload})
    proxy.stall(0.2, None)

    # WHEN a worker with a 1 MiB budget for pages in flight and 8 threads reads it
    metrics = in_process_worker(
        arn, CDC_MAX_BUFFERED_BYTES=str(1024 * 1024), CDC_SHARD_THREADS="8", CDC_MAX_RECORDS_PER_READ="100"
    )

    # THEN every change is applied (nothing dropped), and the pages held never exceeded the budget
    # plus one page per reading thread and prefetch (a page of 100 records is ~400 KB here)
    wait_until(lambda: len(index_documents(osmem.url, table_name)) == 2000, timeout=180, what="the burst applied")
    peak = metrics.registry.get_sample_value("cdc_buffered_bytes_peak")
    assert 1024 * 1024 <= peak <= 1024 * 1024 + 2 * 8 * 450_000, peak
    # AND the budget drains (idle polls still charge their empty pages for a moment)
    wait_until(
        lambda: metrics.registry.get_sample_value("cdc_buffered_bytes") == 0, timeout=30, what="the budget to drain"
    )
