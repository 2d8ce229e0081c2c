"""The backfill, end to end: a table holding items from before its stream existed is brought into the
index while the stream flows, whatever the concurrent writes and interruptions (docs/versioning.md,
"Backfill"); the command refuses to leave a gap, resumes, shares segments and runs twice harmlessly;
workers started with CDC_BACKFILL=on-new-index do it themselves.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from consumer.config import load_settings
from consumer.leases.table import LeaseTable
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.runtime.assembly import build_processor, build_worker, set_up_generation
from consumer.runtime.backfill_job import build_runner, check_no_gap, ensure_segments
from consumer.runtime.clients import aws_clients
from consumer.runtime.stream_source import resolve_stream
from consumer.runtime.worker import WorkerTimings
from consumer.shards.api import StreamsApi
from tests.support.factories import unindexable_image
from tests.support.tables import COMPOSITE_KEY, index_documents, table_documents
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration
_tables = itertools.count()


def table_with_history(ddb: Any, name: str, items: int, seed: int, more: Iterable[dict[str, Any]] = ()) -> None:
    """A table whose ``items`` items (and ``more``) were written before its stream was enabled."""
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    rng = random.Random(seed)
    for i in range(items):
        ddb.put_item(TableName=name, Item=item(f"old-{i}", rng.randrange(100)))
    for extra in more:
        ddb.put_item(TableName=name, Item=extra)
    ddb.update_table(
        TableName=name, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    )


def item(pk: str, n: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": "1"}, "n": {"N": str(n)}, "status": {"S": random.choice(["a", "b"])}}


def converged(ddb: Any, table: str, url: str) -> bool:
    return index_documents(url, table) == table_documents(ddb, table, COMPOSITE_KEY)


class InProcess:
    """A worker (streaming) and backfill runners of one table, run in this process."""

    def __init__(self, env: dict[str, str], monkeypatch: Any) -> None:
        for name, value in env.items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        self.settings, _ = load_settings(env)
        self.aws = aws_clients(self.settings.aws_region)
        self.source = resolve_stream(self.aws.dynamodb, self.aws.streams, self.settings.source_table, None)
        self.metrics = Metrics(CollectorRegistry())
        self.stop = threading.Event()
        timings = WorkerTimings(failover=self.settings.failover_seconds, shard_sync_interval=60, shutdown_timeout=5)
        health = Health(60)
        self.settings, catalog = set_up_generation(self.settings, self.source)
        self.routes = (catalog.routing, catalog)
        processor = build_processor(self.settings, self.source, self.metrics, health, *self.routes)
        self.worker = build_worker(
            self.settings, self.aws, self.source, processor, self.metrics, timings, self.stop, health
        )
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.leases = LeaseTable(self.aws.dynamodb, self.settings.lease_table_name)

    def start(self) -> None:
        self.thread.start()
        api = StreamsApi(self.aws.streams)

        def no_gap() -> bool:
            try:
                check_no_gap(self.leases.list_leases(), api.list_shards(self.source.stream_arn))
            except Exception:  # noqa: BLE001 - not yet
                return False
            return True

        wait_until(no_gap, timeout=60, what="the stream's leases")

    def runner(self, stop_after_pages: int | None = None) -> tuple[Any, threading.Event]:
        stop = threading.Event()
        pages = itertools.count(1)

        def progress(_tally: Any) -> None:
            if stop_after_pages is not None and next(pages) >= stop_after_pages:
                stop.set()

        runner = build_runner(
            self.settings,
            self.source,
            self.aws.dynamodb,
            self.leases,
            self.metrics,
            *self.routes,
            on_progress=progress,
            page_items=7,
        )
        return runner, stop

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.fixture
def in_process(moto, search_engine, tmp_path, monkeypatch):
    made: list[InProcess] = []

    def make(table: str) -> InProcess:
        env = {
            "AWS_ENDPOINT_URL": moto.url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "CDC_TABLE_NAME": table,
            "CDC_OPENSEARCH_URL": search_engine.url,
            "CDC_FAILOVER_SECONDS": "1.5",
            "CDC_POLL_INTERVAL_SECONDS": "0.2",
            "CDC_DEAD_LETTER_PATH": str(tmp_path / f"{table}-dead-letters.jsonl"),
            "CDC_WORKER_ID": f"w-{table}",
        }
        pool = InProcess(env, monkeypatch)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close()


@pytest.mark.engines
@given(
    items=st.integers(0, 40),
    writes=st.lists(st.tuples(st.integers(0, 60), st.booleans(), st.integers(0, 99)), max_size=40),
    segments=st.integers(1, 4),
    interruptions=st.lists(st.integers(1, 4), max_size=3),
    two_runners=st.booleans(),
)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_index_equals_the_table_after_a_backfill_whatever_runs_beside_it(
    ddb, search_engine, in_process, items, writes, segments, interruptions, two_runners
):
    # GIVEN a table with items from before its stream, a worker streaming it, and a backfill in
    # `segments` segments, interrupted after random numbers of pages and resumed, with a second
    # process sharing it, while the table keeps changing (puts and deletes of old and new items)
    table = f"backfill{next(_tables)}"
    table_with_history(ddb, table, items, seed=items)
    pool = in_process(table)
    pool.start()
    ensure_segments(pool.leases, segments, 0, restart=False)

    def write() -> None:
        for key, delete, value in writes:
            pk = f"old-{key}" if key < 40 else f"new-{key}"
            if delete:
                ddb.delete_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"N": "1"}})
            else:
                ddb.put_item(TableName=table, Item=item(pk, value))

    writer = threading.Thread(target=write)
    writer.start()

    # WHEN the backfill runs, stopped and resumed
    for pages in interruptions:
        runner, stop = pool.runner(stop_after_pages=pages)
        runner.run(stop)
    runners = [pool.runner() for _ in range(2 if two_runners else 1)]
    threads = [threading.Thread(target=runner.run, args=(stop,)) for runner, stop in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    writer.join()

    # THEN once the stream is applied, the live index equals the table
    wait_until(lambda: converged(ddb, table, search_engine.url), timeout=60, what="index to equal table")


def consumer(env: dict[str, str], *args: str, **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "consumer", *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_the_command_refuses_a_gap_resumes_after_kill_9_shares_segments_and_runs_twice_harmlessly(
    ddb, osmem, table_name, worker_env, start_worker
):
    # GIVEN a table of 300 items written before its stream existed, and no worker yet
    table_with_history(ddb, table_name, 300, seed=1)
    env = {
        **worker_env,
        "CDC_BACKFILL_SEGMENTS": "6",
        "CDC_BACKFILL_MAX_READ_UNITS": "200",
        "CDC_FAILOVER_SECONDS": "2",
    }

    # WHEN a backfill starts before the workers THEN it refuses, saying what to do (no gap)
    refused = consumer(env, "backfill")
    out, err = refused.communicate(timeout=60)
    assert refused.returncode == 2 and "start the workers" in err, err

    # WHEN a worker streams, and a backfill is killed (-9) while it runs, then two run side by side
    start_worker(env)
    wait_until(lambda: _leases_exist(ddb, table_name), timeout=60, what="the stream's leases")
    killed = consumer(env, "backfill")
    wait_until(lambda: _segments_started(ddb, table_name), timeout=60, what="a segment under way")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=10)
    ddb.put_item(TableName=table_name, Item=item("during", 1))
    second, third = consumer(env, "backfill"), consumer(env, "backfill")
    outputs = [process.communicate(timeout=300) for process in (second, third)]

    # THEN both exit 0, every segment is done, and the index equals the table
    assert [second.returncode, third.returncode] == [0, 0], outputs
    assert all("6/6 segments done" in out for out, _ in outputs)
    wait_until(lambda: converged(ddb, table_name, osmem.url), timeout=60, what="index to equal table")

    # AND running it again changes nothing (every segment is done already)
    again = consumer(env, "backfill")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0 and "6/6 segments done" in out and "this process: 0 items" in out, err
    assert converged(ddb, table_name, osmem.url)
    # AND --json says the same as one object
    as_json = consumer(env, "backfill", "--json")
    out, err = as_json.communicate(timeout=60)
    summary = json.loads(out)
    assert as_json.returncode == 0, err
    assert (summary["segments_done"], summary["segments_total"], summary["complete"], summary["items"]) == (
        6,
        6,
        True,
        0,
    )


def _leases_exist(ddb: Any, table: str) -> bool:
    try:
        return bool(ddb.scan(TableName=f"{table}-cdc-leases")["Items"])
    except ddb.exceptions.ResourceNotFoundException:
        return False


def _segments_started(ddb: Any, table: str) -> bool:
    """Some segments taken or done, not all done: the backfill is under way."""
    items = [
        i for i in ddb.scan(TableName=f"{table}-cdc-leases")["Items"] if i["leaseKey"]["S"].startswith("backfill:")
    ]
    done = sum(1 for i in items if i["checkpoint"]["S"] == "SHARD_END")
    return 0 < done < len(items) or any("leaseOwner" in i for i in items)


def test_workers_started_on_a_new_index_backfill_it_themselves(ddb, osmem, table_name, worker_env, start_worker):
    # GIVEN a table of 150 items from before its stream, and no index yet
    table_with_history(ddb, table_name, 150, seed=2)

    # WHEN two workers start with CDC_BACKFILL=on-new-index, and the table keeps changing
    env = {**worker_env, "CDC_BACKFILL": "on-new-index", "CDC_BACKFILL_SEGMENTS": "4"}
    workers = [start_worker(env, f"w{i}") for i in range(2)]
    for i in range(20):
        ddb.put_item(TableName=table_name, Item=item(f"old-{i}", 1000 + i))

    # THEN the index equals the table, every segment is done, and /metrics and /readyz show it
    wait_until(lambda: converged(ddb, table_name, osmem.url), timeout=120, what="index to equal table")
    wait_until(lambda: max(w.metric('cdc_backfill_segments{state="done"}') for w in workers) == 4, 60, "segments done")
    assert sum(w.metric("cdc_backfill_items_total") for w in workers) >= 150
    assert all(worker.terminate() == 0 for worker in workers)


def test_items_no_index_can_hold_are_dead_lettered_by_their_keys_and_every_other_item_is_indexed(
    ddb, osmem, table_name, worker_env, start_worker, tmp_path
):
    # GIVEN a table of 80 items from before its stream, two of which no index can hold (too many fields)
    refused = [unindexable_image({"pk": {"S": f"wide-{i}"}, "sk": {"N": "1"}}) for i in range(2)]
    table_with_history(ddb, table_name, 80, seed=3, more=refused)
    env = {**worker_env, "CDC_BACKFILL_SEGMENTS": "3"}
    start_worker(env)
    wait_until(lambda: _leases_exist(ddb, table_name), timeout=60, what="the stream's leases")

    # WHEN the backfill runs
    run = consumer(env, "backfill", "--json")
    out, err = run.communicate(timeout=120)

    # THEN it ends complete, counting the two as dead-lettered; their letters name their keys and why
    assert run.returncode == 0, err
    summary = json.loads(out)
    assert (summary["complete"], summary["items"], summary["dead_lettered"]) == (True, 82, 2), summary
    letters = [json.loads(line) for line in (tmp_path / "dead-letters.jsonl").read_text().splitlines()]
    assert sorted(letter["record"]["dynamodb"]["Keys"]["pk"]["S"] for letter in letters) == ["wide-0", "wide-1"]
    assert all(letter["record"]["eventName"] == "BACKFILL" and "field" in letter["error"] for letter in letters)
    # AND every other item is in the index as the table has it
    expected = {
        doc_id: document
        for doc_id, document in table_documents(ddb, table_name, COMPOSITE_KEY).items()
        if not doc_id.startswith("wide-")
    }
    assert index_documents(osmem.url, table_name) == expected


def test_a_missing_table_or_an_impossible_segment_count_is_a_clear_error(table_name, worker_env):
    missing = consumer({**worker_env, "CDC_TABLE_NAME": "no-such-table"}, "backfill")
    _, err = missing.communicate(timeout=60)
    assert missing.returncode == 2 and "does not exist" in err
    bad = consumer({**worker_env, "CDC_BACKFILL_SEGMENTS": "0"}, "backfill")
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and "CDC_BACKFILL_SEGMENTS" in err
