"""Index generations on both engines: a configuration change rebuilt behind the read alias while a
writer runs, seen by a reader polling ``<index>-live`` every 100 ms; a reindex killed -9 and resumed;
a rollback (docs/generations.md).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError, TransportError

from tests.support.commands import consumer
from tests.support.tables import create_table, index_documents
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engines, pytest.mark.long]

REPO = Path(__file__).resolve().parents[2]
LAG_SECONDS = 4.0  # an item written this long before a poll must be in it: the consumer's own lag
NEW_SHAPE = {
    "CDC_DROP_FIELDS": "secret",
    "CDC_TRANSFORM": "tests.support.reindex_shapes:version_two",
    "CDC_INDEX_TEMPLATE": json.dumps({"mappings": {"properties": {"price": {"type": "double"}}}}),
}


class Writer(threading.Thread):
    """Inserts new items and changes old ones until stopped; remembers when each item was first written."""

    def __init__(self, ddb: Any, table: str, first: int) -> None:
        super().__init__(daemon=True)
        self._ddb, self._table, self.next = ddb, table, first
        self.inserted_at: dict[str, float] = {}
        self.halt = threading.Event()
        self._random = random.Random(7)

    def run(self) -> None:
        while not self.halt.wait(0.05):
            if self._random.random() < 0.5:
                key = self.next
                self.next += 1
            else:
                key = self._random.randrange(self.next)
            put(self._ddb, self._table, key, self._random.randrange(1000))
            self.inserted_at.setdefault(f"i{key}|1", time.time())


class Reader(threading.Thread):
    """Polls ``<index>-live`` every 100 ms: which physical index served each poll, the shapes and ids."""

    def __init__(self, url: str, alias: str) -> None:
        super().__init__(daemon=True)
        self._client = OpenSearch(hosts=[url])
        self._alias = alias
        self.polls: list[tuple[float, set[str], set[str], set[str]]] = []  # (started, indices, shapes, ids)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.1):
            started = time.time()
            try:
                answer = self._client.search(index=self._alias, body={"size": 10_000, "query": {"match_all": {}}})
            except (NotFoundError, TransportError):
                continue
            hits = answer["hits"]["hits"]
            shapes = {
                "new"
                if hit["_source"].get("shape") == "v2" and "secret" not in hit["_source"]
                else "old"
                if "secret" in hit["_source"] and "shape" not in hit["_source"]
                else "mixed"
                for hit in hits
            }
            self.polls.append((started, {hit["_index"] for hit in hits}, shapes, {hit["_id"] for hit in hits}))


def put(ddb: Any, table: str, key: int, price: int) -> None:
    ddb.put_item(
        TableName=table,
        Item={"pk": {"S": f"i{key}"}, "sk": {"N": "1"}, "price": {"S": str(price)}, "secret": {"S": f"s{key}"}},
    )


def table_items(ddb: Any, table: str) -> dict[str, dict[str, Any]]:
    items = {}
    for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            items[f"{item['pk']['S']}|1"] = {
                "pk": item["pk"]["S"],
                "sk": 1,
                "price": item["price"]["S"],
                "secret": item["secret"]["S"],
            }
    return items


def old_shape(items: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return items


def new_shape(items: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {key: {**{k: v for k, v in item.items() if k != "secret"}, "shape": "v2"} for key, item in items.items()}


def live(url: str, alias: str) -> dict[str, dict[str, Any]]:
    return {
        doc_id: {k: v for k, v in doc.items() if not k.startswith("_")}
        for doc_id, doc in index_documents(url, alias).items()
    }


def test_a_changed_configuration_is_rebuilt_behind_the_read_alias_while_a_writer_runs(
    ddb, search_engine, table_name, worker_env, start_worker, tmp_path, request
):
    # GIVEN a table, a pool of the old configuration serving <index>-live (generation 1, adopted)
    create_table(ddb, table_name)
    for key in range(150):
        put(ddb, table_name, key, key)
    old_env = {**worker_env, "PYTHONPATH": str(REPO), "CDC_RETRY_MAX_DELAY_SECONDS": "2", "CDC_INDEX_GENERATIONS": "on"}
    new_env = {**old_env, **NEW_SHAPE, "CDC_GENERATION_CHECK_SECONDS": "0.5"}
    alias = f"{table_name}-live"
    old_pool = [start_worker(old_env, "old")]
    wait_until(lambda: live(search_engine.url, alias) == old_shape(table_items(ddb, table_name)), 90, "generation 1")
    client = OpenSearch(hosts=[search_engine.url])
    assert set(client.indices.get_alias(name=alias)) == {f"{table_name}-g1"}

    # AND a writer that keeps writing, and a reader polling the live alias every 100 ms
    writer, reader = Writer(ddb, table_name, 150), Reader(search_engine.url, alias)
    writer.start()
    reader.start()
    request.addfinalizer(lambda: (writer.halt.set(), reader.halt.set()))  # even when an assertion fails

    # WHEN a worker of a configuration that drops a field, adds a transform and maps a field anew starts
    new_worker = start_worker(new_env, "new")
    refusal = wait_until(
        lambda: (lambda probe: probe[1] if probe[0] == 503 and "consumer reindex" in probe[1] else None)(
            new_worker.probe("/readyz")
        ),
        60,
        "the refusal",
    )
    # THEN it refuses to write generation 1, naming what differs and what to run
    assert "drop_fields" in refusal and "transform" in refusal and "template" in refusal

    # WHEN `consumer reindex` runs, is killed -9 at random points, and runs again to the end; the
    # new worker is stopped meanwhile, so that no kill can come after the swap (without a worker of
    # its configuration, the reindex waits for one before it fills)
    assert new_worker.terminate() == 0
    chance = random.Random(11)
    for _ in range(2):
        killed = subprocess.Popen(
            [sys.executable, "-m", "consumer", "reindex"],
            env={"PATH": "/usr/bin:/bin", **new_env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(chance.uniform(1.0, 3.0))
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    interrupted = consumer(new_env, "reindex", "--status")
    assert "building" in interrupted.stdout, interrupted.stdout  # the kills stopped it before the swap
    new_worker = start_worker(new_env, "new")
    done = consumer(new_env, "reindex", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "generation 2 is live" in done.stdout

    # THEN the new worker becomes ready, the live alias names generation 2, which converges to the table
    wait_until(lambda: new_worker.probe("/readyz")[0] == 200, 60, "the new worker ready")
    assert set(client.indices.get_alias(name=alias)) == {f"{table_name}-g2"}
    assert new_worker.metric('cdc_index_generation{role="written"}') == 2
    writer.halt.set()
    writer.join()
    wait_until(lambda: live(search_engine.url, alias) == new_shape(table_items(ddb, table_name)), 90, "generation 2")
    mapping = client.indices.get_mapping(index=f"{table_name}-g2")[f"{table_name}-g2"]["mappings"]
    assert mapping["properties"]["price"]["type"] == "double"
    assert mapping["_meta"]["cdc_generation"]["generation"] == 2
    status = consumer(new_env, "reindex", "--status")
    assert status.returncode == 0 and "previous" in status.stdout and "live" in status.stdout

    # AND the reader never saw two generations at once, a shape on the wrong side of the swap, or an
    # item missing that had been written LAG_SECONDS before its poll
    reader.halt.set()
    reader.join()
    served = [indices for _, indices, _, _ in reader.polls if indices]
    assert all(len(indices) == 1 for indices in served)
    order = [next(iter(indices)) for indices in served]
    swap = order.index(f"{table_name}-g2")
    assert set(order[:swap]) == {f"{table_name}-g1"} and set(order[swap:]) == {f"{table_name}-g2"}
    for started, indices, shapes, ids in reader.polls:
        if indices:
            assert shapes == ({"old"} if indices == {f"{table_name}-g1"} else {"new"})
        due = {key for key, at in writer.inserted_at.items() if at < started - LAG_SECONDS}
        assert due <= ids, f"{len(due - ids)} items missing from a poll, e.g. {sorted(due - ids)[:3]}"

    # WHEN the change is rolled back while the old pool still applies the stream to generation 1
    rolled = consumer(new_env, "reindex", "--rollback")
    assert rolled.returncode == 0, rolled.stderr
    for key in range(5):
        put(ddb, table_name, key, 5000 + key)

    # THEN generation 1 is live again, current, in the old shape
    assert set(client.indices.get_alias(name=alias)) == {f"{table_name}-g1"}
    wait_until(lambda: live(search_engine.url, alias) == old_shape(table_items(ddb, table_name)), 60, "rollback")
    assert set(client.indices.get_alias(name=table_name)) == {f"{table_name}-g1"}
    for worker in (*old_pool, new_worker):
        assert worker.terminate() == 0


def test_a_rolling_deploy_with_reindex_auto_builds_and_swaps_by_itself_then_the_old_generation_is_retired(
    ddb, search_engine, table_name, worker_env, start_worker
):
    # GIVEN a worker of the old configuration serving generation 1
    create_table(ddb, table_name)
    for key in range(100):
        put(ddb, table_name, key, key)
    old_env = {**worker_env, "PYTHONPATH": str(REPO), "CDC_RETRY_MAX_DELAY_SECONDS": "2", "CDC_INDEX_GENERATIONS": "on"}
    new_env = {**old_env, **NEW_SHAPE, "CDC_GENERATION_CHECK_SECONDS": "0.5", "CDC_REINDEX": "auto"}
    alias = f"{table_name}-live"
    old_worker = start_worker(old_env, "old")
    wait_until(lambda: live(search_engine.url, alias) == old_shape(table_items(ddb, table_name)), 90, "generation 1")

    # WHEN a worker of the new configuration starts with CDC_REINDEX=auto, while the table changes
    new_worker = start_worker(new_env, "new")
    for key in range(100, 130):
        put(ddb, table_name, key, key)

    # THEN it builds generation 2, proves it and swaps the aliases itself, and becomes ready
    wait_until(lambda: new_worker.probe("/readyz")[0] == 200, 180, "the new worker ready")
    client = OpenSearch(hosts=[search_engine.url])
    assert set(client.indices.get_alias(name=alias)) == {f"{table_name}-g2"}
    wait_until(lambda: live(search_engine.url, alias) == new_shape(table_items(ddb, table_name)), 60, "generation 2")
    assert any(event.get("event") == "generation_swapped" for event in new_worker.logs())
    wait_until(lambda: old_worker.metric('cdc_index_generation{role="live"}') == 2, 30, "the old worker seeing it")

    # AND nothing is being built any more, so there is nothing to abandon; generation 1 cannot be
    # retired while its worker still applies the stream to it, and can once it stopped
    abandoned = consumer(new_env, "reindex", "--abandon")
    assert abandoned.returncode == 2 and "nothing to abandon" in abandoned.stderr
    refused = consumer(new_env, "reindex", "--retire", "--now")
    assert refused.returncode == 2 and "workers still apply the stream to generation 1" in refused.stderr
    assert old_worker.terminate() == 0
    wait_until(lambda: not consumer(new_env, "reindex", "--retire", "--now").returncode, 60, "generation 1 retired")
    assert not client.indices.exists(index=f"{table_name}-g1")
    assert "previous" not in consumer(new_env, "reindex", "--status").stdout
    assert new_worker.terminate() == 0
