"""A lease at LATEST (``CDC_INITIAL_POSITION=LATEST``, nothing checkpointed yet) whose iterator is
lost — a read that failed, or a worker killed and its lease taken over — never skips the records
written since its first reader started: the first reader anchored the lease before taking its
LATEST iterator, and every later reader reads from TRIM_HORIZON and skips only what came before
that anchor (docs/versioning.md). Against the test-side stream server (which can expire iterators)."""

from __future__ import annotations

import time

import pytest

from tests.support.tables import COMPOSITE_KEY_SCHEMA, create_table, index_documents
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def latest_stream(ddb, stream_server, table_name, worker_env):
    """A one-shard stream whose shard already holds a change written a minute ago, and the env of
    workers starting at LATEST that poll every 2 s once idle."""
    create_table(ddb, table_name)
    arn = stream_server.create_stream(table_name, key_schema=COMPOSITE_KEY_SCHEMA, shard_count=1)
    put(stream_server, arn, "before-start", second=time.time() - 60)
    env = {
        **worker_env,
        "CDC_STREAM_ARN": arn,
        "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": stream_server.url,
        "CDC_INITIAL_POSITION": "LATEST",
        "CDC_POLL_INTERVAL_SECONDS": "2",
        "CDC_IDLE_POLL_MAX_SECONDS": "2",
    }
    return arn, env


def put(stream_server, arn: str, pk: str, second: float | None = None) -> None:
    keys = {"pk": {"S": pk}, "sk": {"N": "1"}}
    stream_server.put_change(arn, "INSERT", keys, new_image={**keys, "status": {"S": "new"}}, second=second)


def read_once_at_latest(worker) -> None:
    wait_until(lambda: worker.events("shard_iterator_acquired"), timeout=30, what="a LATEST iterator")
    wait_until(lambda: worker.metric("cdc_get_records_total") >= 1, timeout=30, what="a first (empty) read")


def test_a_lost_iterator_at_latest_is_not_replaced_by_a_fresh_latest_one(
    latest_stream, stream_server, search_engine, table_name, start_worker
):
    # GIVEN a worker that took a LATEST iterator and read the shard once (nothing yet)
    arn, env = latest_stream
    worker = start_worker(env)
    read_once_at_latest(worker)

    # WHEN a change lands, and the worker's iterator expires before its next read
    put(stream_server, arn, "after-start")
    stream_server.expire_iterators()

    # THEN the change is indexed (the shard is read again from its anchor, not from a new LATEST),
    # and what was written before the worker started is not
    wait_until(lambda: "after-start|1" in index_documents(search_engine.url, table_name), timeout=30, what="indexed")
    time.sleep(1)
    assert sorted(index_documents(search_engine.url, table_name)) == ["after-start|1"]
    anchored = worker.events("shard_iterator_acquired")
    assert anchored[0]["position"] == "LATEST" and "anchor_second" in anchored[0]
    assert anchored[-1]["position"] == "TRIM_HORIZON"
    assert anchored[-1]["skipping_records_before_second"] == anchored[0]["anchor_second"]


def test_a_lease_taken_over_at_latest_misses_nothing_its_first_reader_could_have_read(
    latest_stream, stream_server, search_engine, table_name, start_worker
):
    # GIVEN a worker that took a LATEST iterator, read once, and is killed before its next read,
    # with a change written in between
    arn, env = latest_stream
    first = start_worker(env, "first")
    read_once_at_latest(first)
    put(stream_server, arn, "after-start")
    first.kill()

    # WHEN another worker takes the lease over (still at LATEST: nothing was checkpointed)
    second = start_worker(env, "second")

    # THEN it indexes the change written after the first worker started, and only that
    wait_until(lambda: "after-start|1" in index_documents(search_engine.url, table_name), timeout=60, what="indexed")
    time.sleep(1)
    assert sorted(index_documents(search_engine.url, table_name)) == ["after-start|1"]
    assert second.terminate() == 0
