"""How often a worker reads a shard: a shard with steady traffic at the stream's tip is read once per
poll interval (each GetRecords is billed; reading again at once would mostly answer nothing), while a
backlog is read page after page."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.tables import COMPOSITE_KEY_SCHEMA, create_table, index_documents
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration

SHARDS = 4


def test_busy_shards_at_the_tip_are_read_once_a_poll_interval_and_every_change_is_applied(
    ddb, osmem, stream_server, table_name, worker_env, start_worker
):
    # GIVEN a 4-shard stream with a backlog of 2000 changes an hour old, and a worker reading it
    # (1 s poll interval, pages of 100 records)
    create_table(ddb, table_name)
    arn = stream_server.create_stream(table_name, key_schema=COMPOSITE_KEY_SCHEMA, shard_count=SHARDS)
    an_hour_ago = time.time() - 3600
    for i in range(2000):
        keys = {"pk": {"S": f"old-{i}"}, "sk": {"N": "1"}}
        stream_server.put_change(arn, "INSERT", keys, new_image={**keys, "n": {"N": str(i)}}, second=an_hour_ago)
    worker = start_worker(
        {
            **worker_env,
            "CDC_STREAM_ARN": arn,
            "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": stream_server.url,
            "CDC_OPENSEARCH_URL": osmem.url,
            "CDC_POLL_INTERVAL_SECONDS": "1",
            "CDC_MAX_RECORDS_PER_READ": "100",
        }
    )
    wait_until(lambda: len(index_documents(osmem.url, table_name)) == 2000, timeout=120, what="the backlog applied")
    # THEN the backlog was read page after page: about one call per page of 100, not an empty read between
    backlog_reads = sum(stream_server.stats(arn).get_records_by_shard.values())
    assert backlog_reads <= 2000 / 100 + 3 * SHARDS, backlog_reads

    # WHEN every shard then gets a new change every 0.25 s for about 8 s
    stop = threading.Event()
    written: list[str] = []

    def write() -> None:
        while not stop.wait(0.25):
            for _ in range(SHARDS):
                keys = {"pk": {"S": f"new-{len(written)}"}, "sk": {"N": "1"}}
                stream_server.put_change(arn, "INSERT", keys, new_image=keys)
                written.append(keys["pk"]["S"])

    before = stream_server.stats(arn).get_records_by_shard
    started = time.monotonic()
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(8)
    stop.set()
    writer.join(5)
    elapsed = time.monotonic() - started
    after = stream_server.stats(arn).get_records_by_shard

    # THEN each shard was read at most once a poll interval (plus the read in flight at each end),
    # where reading again after every page with records would read twice as often
    reads = {shard: after[shard] - before.get(shard, 0) for shard in after}
    assert len(reads) == SHARDS and all(count <= elapsed + 2 for count in reads.values()), (reads, elapsed)
    # AND every change is applied
    wait_until(
        lambda: len(index_documents(osmem.url, table_name)) == 2000 + len(written), timeout=60, what="changes applied"
    )
    assert worker.terminate() == 0


def test_a_backlog_of_many_full_pages_is_applied_once_in_shard_order(
    ddb, proxy, stream_server, table_name, worker_env, start_worker
):
    # GIVEN one shard holding 3000 changes an hour old: 50 items changed 60 times each, interleaved,
    # read in pages of 100 (30 full pages: each page's successor is read, and the one after it
    # started, while the page's _bulk is in flight)
    create_table(ddb, table_name)
    arn = stream_server.create_stream(table_name, key_schema=COMPOSITE_KEY_SCHEMA, shard_count=1)
    an_hour_ago = time.time() - 3600
    for revision in range(60):
        for item in range(50):
            keys = {"pk": {"S": f"item-{item}"}, "sk": {"N": "1"}}
            image = {**keys, "revision": {"N": str(revision)}}
            stream_server.put_change(arn, "MODIFY", keys, new_image=image, second=an_hour_ago + revision)

    # WHEN a worker drains it
    worker = start_worker(
        {
            **worker_env,
            "CDC_STREAM_ARN": arn,
            "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": stream_server.url,
            "CDC_OPENSEARCH_URL": proxy.url,
            "CDC_MAX_RECORDS_PER_READ": "100",
        }
    )
    wait_until(lambda: len(proxy.ledger) >= 3000, timeout=120, what="the backlog applied")
    assert worker.terminate() == 0

    # THEN every change reached OpenSearch once, each item's in shard order, each item ends at its
    # last change, and no page was read twice (the read-ahead follows the iterators once)
    assert len(proxy.ledger) == 3000
    seen: dict[str, list[int]] = {}
    for entry in proxy.ledger:
        seen.setdefault(entry.doc_id, []).append(entry.revision)
    assert all(revisions == list(range(60)) for revisions in seen.values()), seen
    documents = index_documents(proxy.url, table_name)
    assert sorted(doc["revision"] for doc in documents.values()) == [59] * 50
    assert sum(stream_server.stats(arn).get_records_by_shard.values()) <= 30 + 2
