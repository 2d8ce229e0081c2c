"""Single-table routes on both engines: every index equals the table's items of its route, whatever
the delivery history — property-tested against osmem-server and a real OpenSearch node.

Hypothesis draws a history over a single-table design (customers, orders and order lines; items
change type and tenant, are deleted and come back; ``tests.support.single_table``) on a
NEW_AND_OLD_IMAGES stream whose shard may split, and a delivery schedule over it: random batches
through the real ``BatchProcessor`` with the routes, the transform and the index catalog (templated
indices created on first use), restarts from earlier checkpoints, zombies replaying earlier
batches late. Each index, read as applications read it, must equal the items of its route, shaped
by its rules and transform, and hold nothing that belongs to another.

``make test`` runs a few examples per engine; ``CDC_ROUTE_HISTORY_EXAMPLES=100`` runs a long one.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError
from prometheus_client import CollectorRegistry

from consumer.config import load_settings, routing
from consumer.observability.metrics import Metrics
from consumer.pipeline.letters import DeadLetter
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.index_catalog import IndexCatalog
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor
from consumer.sink.reaper import Reaper
from tests.support.commands import consumer
from tests.support.emulators import aws_env
from tests.support.factories import stream_record
from tests.support.in_process import start_worker
from tests.support.kcl_daemon_side import KclChild, create_kcl_lease_table, kcl_env, kcl_record, put_kcl_lease
from tests.support.single_table import (
    KEY_SCHEMA,
    Put,
    create_shop_table,
    expected_indices,
    final_state,
    random_changes,
    records_of,
    route_settings,
    shards_of,
    shop_histories,
    to_item,
    write_changes,
)
from tests.support.tables import index_documents
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engines, pytest.mark.long]
REPO = Path(__file__).resolve().parents[2]  # the transform's package (tests.support) on the workers' path
EXAMPLES = int(os.environ.get("CDC_ROUTE_HISTORY_EXAMPLES", "15"))
_prefixes = (f"shop{n}" for n in itertools.count())


@pytest.fixture(scope="module")
def client(search_engine) -> OpenSearch:
    return OpenSearch(hosts=[search_engine.url])


def live_indices(search_engine, client: OpenSearch, prefix: str) -> dict[str, dict[str, dict]]:
    """Every index of the prefix with its live documents (empty indices left out), named as applications
    know it: a worker writes index generation 1 (``<index>-g1``, docs/generations.md)."""
    names = client.indices.get_alias(index=f"{prefix}-*", allow_no_indices=True)
    found = {re.sub(r"-g1$", "", name): index_documents(search_engine.url, name) for name in names}
    return {name: documents for name, documents in found.items() if documents}


@given(changes=shop_histories(), split=st.floats(0, 1) | st.none(), data=st.data())
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_index_equals_the_items_of_its_route_whatever_the_delivery(
    client, search_engine, tmp_path, changes, split, data
):
    # GIVEN the routes over fresh indices, and the worker's processor with its index catalog
    prefix = next(_prefixes)
    config, _ = load_settings(
        {"CDC_TABLE_NAME": "shop", "CDC_OPENSEARCH_URL": search_engine.url, **route_settings(prefix)}
    )
    routes = routing(config, KEY_SCHEMA)
    catalog = IndexCatalog(client, routes, KEY_SCHEMA, "managed")
    catalog.set_up()
    metrics = Metrics(CollectorRegistry())
    sink = OpenSearchSink(client, f"{prefix}-unused", metrics, catalog=catalog)
    letters = tmp_path / f"{prefix}.jsonl"
    processor = BatchProcessor(KEY_SCHEMA, sink, DeadLetterFile(letters), metrics, routing=routes)
    records = records_of(changes)
    split_at = None if split is None else int(split * len(records))
    parent, *children = shards_of(records, split_at)
    stop = threading.Event()
    zombies: list[tuple[list[dict], int]] = []

    def deliver(shard: list[dict], start_version: int) -> int:
        checkpoints = [(0, start_version)]
        position, version, restarts = 0, start_version, 0
        while position < len(shard):
            batch = shard[position : position + data.draw(st.integers(1, 8), label="batch size")]
            zombies.append((batch, version))
            version = processor.process("shard", batch, version, stop).version
            position += len(batch)
            checkpoints.append((position, version))
            if restarts < 3 and data.draw(st.booleans(), label="crash here?"):
                position, version = data.draw(st.sampled_from(checkpoints), label="restart from")
                restarts += 1
        return version

    try:
        # WHEN the lineage is delivered, parent before children, and zombies replay earlier batches
        parent_end = deliver(parent, 0)
        for child in children:
            deliver(child, parent_end)
        for batch, version in (
            data.draw(st.lists(st.sampled_from(zombies), max_size=4), label="zombies") if zombies else []
        ):
            processor.process("shard", batch, version, stop)

        # THEN every index holds exactly the items of its route, nothing was dead-lettered, and the
        # route's read alias shows all of its indices
        assert live_indices(search_engine, client, prefix) == expected_indices(final_state(changes), prefix)
        assert not letters.exists() or not letters.read_text()
        orders = {
            doc_id
            for index, documents in expected_indices(final_state(changes), prefix).items()
            if index.startswith(f"{prefix}-orders-")
            for doc_id in documents
        }
        if orders:
            assert set(index_documents(search_engine.url, f"{prefix}-orders")) == orders
    finally:
        processor.close()
        for name in client.indices.get_alias(index=f"{prefix}-*", allow_no_indices=True):
            client.indices.delete(index=name)


def test_a_pool_with_routes_converges_through_kill_9_and_restarts(
    ddb, search_engine, table_name, worker_env, start_worker
):
    # GIVEN a single-table design on a NEW_AND_OLD_IMAGES stream, routes over fresh indices, history
    # already written, and a pool of two workers started while a writer keeps writing
    create_shop_table(ddb, table_name)
    env = {**worker_env, **route_settings(table_name), "PYTHONPATH": str(REPO)}
    changes = write_changes(ddb, table_name, 300, seed=1)
    pool = [start_worker(env, "first"), start_worker(env, "second")]
    written: list = []
    writer = threading.Thread(target=lambda: written.extend(write_changes(ddb, table_name, 600, seed=2)))
    writer.start()
    wait_until(lambda: sum(w.metric("cdc_records_processed_total") for w in pool) >= 200, timeout=60, what="applied")

    # WHEN the worker holding the shard is killed -9 mid-stream and a third joins
    holder = max(pool, key=lambda w: w.metric("cdc_records_processed_total"))
    holder.kill()
    writer.join()
    third = start_worker(env, "third")
    assert third.port  # up (listening): a SIGTERM from here on is a clean stop, not a kill mid-import
    changes += written

    # THEN every index converges to the items of its route, nothing in one that belongs to another
    expected = expected_indices(final_state(changes), table_name)
    client = OpenSearch(hosts=[search_engine.url])
    wait_until(lambda: live_indices(search_engine, client, table_name) == expected, timeout=120, what="routes")

    # AND after a clean stop of the pool, more changes and a restart, they converge again
    for worker in (*pool, third):
        if worker is not holder:
            assert worker.terminate() == 0
    changes += write_changes(ddb, table_name, 200, seed=3)
    restarted = start_worker(env, "restarted")
    expected = expected_indices(final_state(changes), table_name)
    wait_until(lambda: live_indices(search_engine, client, table_name) == expected, timeout=120, what="routes")

    # AND its metrics count applied records by route, a bounded label: the routes' names (counted
    # once the _bulk answer is read, which may be a moment after the index shows the documents)
    def applied() -> set[str]:
        return {
            name.split('route="')[1].split('"')[0]
            for name, value in restarted.metrics().items()
            if name.startswith("cdc_records_processed_total{") and 'outcome="applied"' in name and value > 0
        }

    wait_until(lambda: {"customers", "orders"} <= applied(), timeout=10, what="applied records counted by route")
    assert applied() <= {"lines", "customers", "orders", "archive"}


def test_routes_the_stream_cannot_serve_are_refused_at_start_up_naming_them(
    ddb, search_engine, table_name, worker_env, start_worker
):
    # GIVEN routes on the type attribute, and a stream without old images (NEW_IMAGE)
    create_shop_table(ddb, table_name, view_type="NEW_IMAGE")
    env = {**worker_env, **route_settings(table_name), "PYTHONPATH": str(REPO)}

    # WHEN a worker starts THEN it exits 2, naming the routes and the view type they need
    worker = start_worker(env)
    assert worker.process.wait(60) == 2
    log = worker.log_path.read_text()
    assert "route 'customers', 'orders', 'archive' decides on attributes other than the keys" in log
    assert "NEW_AND_OLD_IMAGES" in log


def test_key_only_routes_converge_on_a_stream_without_old_images(
    ddb, search_engine, table_name, worker_env, start_worker
):
    # GIVEN routes that match and name indices by key attributes only, on a NEW_IMAGE stream
    create_shop_table(ddb, table_name, view_type="NEW_IMAGE")
    key_routes = [
        {
            "name": "lines",
            "match": {"dynamodb": {"Keys": {"SK": {"S": [{"prefix": "LINE#"}]}}}},
            "index": f"{table_name}-lines",
        },
        {"name": "by-owner", "index": f"{table_name}-by-${{PK}}"},
    ]
    env = {**worker_env, "CDC_ROUTES": json.dumps(key_routes)}

    # WHEN a worker applies a history of writes and deletes (a REMOVE has no image to route by)
    changes = write_changes(ddb, table_name, 300, seed=5)
    worker = start_worker(env)

    # THEN each item is in the index its keys name, and deleted ones nowhere
    expected: dict[str, dict[str, dict]] = {}
    for (pk, sk), attributes in final_state(changes).items():
        index = f"{table_name}-lines" if sk.startswith("LINE#") else f"{table_name}-by-{pk.lower().replace('#', '_')}"
        expected.setdefault(index, {})[f"{pk}|{sk}"] = {"PK": pk, "SK": sk, **attributes}
    client = OpenSearch(hosts=[search_engine.url])
    wait_until(lambda: live_indices(search_engine, client, table_name) == expected, timeout=120, what="routes")
    assert worker.terminate() == 0


def test_backfill_audit_and_redrive_honour_the_routes(ddb, search_engine, table_name, worker_env, start_worker):
    # GIVEN a single-table design written before its stream existed, and a worker streaming from now on
    create_shop_table(ddb, table_name, view_type=None)
    changes = write_changes(ddb, table_name, 150, seed=7)
    ddb.update_table(
        TableName=table_name, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    )
    env = {**worker_env, **route_settings(table_name), "PYTHONPATH": str(REPO), "CDC_BACKFILL_SEGMENTS": "3"}
    worker = start_worker(env)
    client = OpenSearch(hosts=[search_engine.url])
    wait_until(lambda: worker.metric("cdc_leases_held") >= 1, timeout=60, what="the stream's lease")

    # WHEN the backfill runs THEN every index holds exactly the items of its route
    backfill = consumer(env, "backfill")
    assert backfill.returncode == 0 and "3/3 segments done" in backfill.stdout, backfill.stderr
    expected = expected_indices(final_state(changes), table_name)
    assert live_indices(search_engine, client, table_name) == expected
    assert consumer(env, "audit").returncode == 0

    # AND drift behind the consumer's back: a document gone, a copy in an index of another route, a
    # document that differs; the audit names each with its index, and --repair removes it
    time.sleep(2.1)  # a repair wins over versions of earlier seconds only (docs/versioning.md)
    lines_index, (gone, *_) = next((i, sorted(docs)) for i, docs in expected.items() if i.endswith("-lines"))
    order_index, order_docs = next((i, docs) for i, docs in expected.items() if "-orders-" in i)
    moved_id, moved = next(iter(order_docs.items()))
    client.delete(index=lines_index, id=gone)
    overwrite(client, f"{table_name}-archive", moved_id, moved)
    customers = f"{table_name}-customers"
    changed_id = next(iter(expected[customers]))
    overwrite(client, customers, changed_id, {**expected[customers][changed_id], "display_name": "stale"})
    audit = consumer(env, "audit", "--json")
    report = json.loads(audit.stdout)
    assert audit.returncode == 3, audit.stderr
    assert report["missing"]["examples"] == [f"{lines_index}/{gone}"]
    assert report["extra"]["examples"] == [f"{table_name}-archive/{moved_id}"]
    assert report["different"]["examples"] == [{"id": f"{customers}/{changed_id}", "fields": ["display_name"]}]
    assert consumer(env, "audit", "--repair").returncode == 3
    assert consumer(env, "audit").returncode == 0
    assert live_indices(search_engine, client, table_name) == expected

    # AND a dead-lettered change is redriven to its route's index, its copy elsewhere tombstoned
    time.sleep(1.1)
    client.delete(index=order_index, id=moved_id)
    overwrite(client, customers, moved_id, moved)
    pk, sk = moved_id.split("|")
    letter = DeadLetter(
        "shard-1", "1", "429 throttled", stream_record("MODIFY", keys={"PK": {"S": pk}, "SK": {"S": sk}})
    )
    letters = Path(worker_env["CDC_DEAD_LETTER_PATH"]).with_name("letters.jsonl")
    DeadLetterFile(letters).write([letter])
    redrive = consumer(env, "redrive", str(letters), "--apply")
    assert redrive.returncode == 0, redrive.stdout + redrive.stderr
    assert live_indices(search_engine, client, table_name) == expected
    assert worker.terminate() == 0


def overwrite(client: OpenSearch, index: str, doc_id: str, body: dict) -> None:
    """Write ``body`` behind the consumer's back, just above the version the document has (a lost or
    wrong write of the same second), so a later repair still wins."""
    try:
        version = client.get(index=index, id=doc_id)["_version"]
    except NotFoundError:
        version = 0
    client.index(index=index, id=doc_id, body=body, version=version + 1, version_type="external")


def test_the_kcl_processor_writes_every_record_to_its_routes_index(ddb, moto, search_engine, table_name, tmp_path):
    # GIVEN a kcl-processor child with the routes, on a new KCL lease
    create_shop_table(ddb, table_name)
    lease_table = f"{table_name}-kcl"
    create_kcl_lease_table(ddb, lease_table)
    shard = "shardId-00000001700000000000-aaaaaaaa"
    put_kcl_lease(ddb, lease_table, shard)
    env = {
        **kcl_env(moto.url, table_name, search_engine.url, lease_table, tmp_path / "dead-letters.jsonl"),
        **route_settings(table_name),
        "PYTHONPATH": str(REPO),
    }
    child = KclChild(env, ddb, lease_table, tmp_path / "child.log")
    try:
        child.exchange(
            {"action": "initialize", "shardId": shard, "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0}
        )

        # WHEN the daemon delivers a history in batches (items changing type and tenant, deleted, back)
        changes = random_changes(200, seed=11)
        records = [kcl_record(record) for record in records_of(changes, wire=True)]
        for start in range(0, len(records), 25):
            message = {"action": "processRecords", "records": records[start : start + 25], "millisBehindLatest": 0}
            assert child.exchange(message, shard) == {"action": "status", "responseFor": "processRecords"}

        # THEN every index holds exactly the items of its route, as the native workers write them
        client = OpenSearch(hosts=[search_engine.url])
        assert live_indices(search_engine, client, table_name) == expected_indices(final_state(changes), table_name)
        assert child.close_input() == 0
    finally:
        child.close()


def test_config_check_names_routes_the_stream_cannot_serve(ddb, table_name, worker_env):
    # GIVEN routes on attributes and a stream without old images
    create_shop_table(ddb, table_name, view_type="NEW_IMAGE")
    env = {**worker_env, **route_settings(table_name), "PYTHONPATH": str(REPO)}

    # WHEN the configuration is checked THEN the routes check fails, naming them and the view type to use
    checked = consumer(env, "config", "--check")
    assert checked.returncode == 3, checked.stderr
    assert "FAIL  routes and transforms: CDC_ROUTES route 'customers', 'orders', 'archive'" in checked.stdout
    assert "CDC_ROUTES" in checked.stdout and "lines→" in checked.stdout  # the routes, shown by name

    # AND on a NEW_AND_OLD_IMAGES stream it passes, with the transform imported
    create_shop_table(ddb, f"{table_name}-images")
    checked = consumer({**env, "CDC_TABLE_NAME": f"{table_name}-images"}, "config", "--check")
    assert checked.returncode == 0, checked.stdout
    assert f"ok    routes and transforms: 4 to {table_name}-lines" in checked.stdout
    assert "transform tests.support.single_table:shape imported" in checked.stdout


def test_the_reaper_reaps_due_tombstones_in_every_index_of_the_routes(client, search_engine):
    # GIVEN a fixed index and two indices of a template, each with a due tombstone and a live document
    prefix = next(_prefixes)
    day, now = 86_400, 1_900_000_000
    indices = (f"{prefix}-lines", f"{prefix}-orders-acme", f"{prefix}-orders-initech")
    for index in indices:
        client.index(index=index, id="gone", body={"_cdc_deleted": True, "_cdc_deleted_at": now - 2 * day})
        client.index(index=index, id="live", body={"PK": "live"})
        client.indices.refresh(index=index)

    # WHEN the reaper runs over the routes' indices (patterns, and a fixed index that does not exist)
    reaper = Reaper(client, f"{prefix}-lines,{prefix}-orders-*,{prefix}-archive", day, clock=lambda: now)
    result = reaper.reap_once()

    # THEN every due tombstone is gone, every live document stays
    assert (result.deleted, result.failed) == (3, 0)
    for index in indices:
        client.indices.refresh(index=index)
        ids = {hit["_id"] for hit in client.search(index=index, body={"query": {"match_all": {}}})["hits"]["hits"]}
        assert ids == {"live"}
        client.indices.delete(index=index)


def test_a_template_past_its_max_indices_dead_letters_with_what_to_do(client, search_engine, tmp_path):
    # GIVEN a templated route that may make two indices, and orders of three tenants
    prefix = next(_prefixes)
    bounded = [{"name": "orders", "index": f"{prefix}-orders-${{tenant}}", "max_indices": 2}]
    config, _ = load_settings(
        {"CDC_TABLE_NAME": "shop", "CDC_OPENSEARCH_URL": search_engine.url, "CDC_ROUTES": json.dumps(bounded)}
    )
    routes = routing(config, KEY_SCHEMA)
    catalog = IndexCatalog(client, routes, KEY_SCHEMA, "managed")
    catalog.set_up()
    metrics = Metrics(CollectorRegistry())
    letters = tmp_path / "letters.jsonl"
    sink = OpenSearchSink(client, f"{prefix}-unused", metrics, catalog=catalog)
    processor = BatchProcessor(KEY_SCHEMA, sink, DeadLetterFile(letters), metrics, routing=routes)
    changes = [
        Put(("CUSTOMER#1", f"ORDER#{n}"), {"type": "order", "tenant": tenant}, 1_800_000_000 + n)
        for n, tenant in enumerate(["acme", "initech", "acme", "umbrella"])
    ]

    # WHEN they are applied
    try:
        result = processor.process("shard", records_of(changes), 0, threading.Event())
    finally:
        processor.close()

    # THEN the first two tenants have their indices, and the third tenant's order is dead-lettered,
    # saying which bound it met and what to do; the shard moved past it
    assert sorted(live_indices(search_engine, client, prefix)) == [f"{prefix}-orders-acme", f"{prefix}-orders-initech"]
    (letter,) = [json.loads(line) for line in letters.read_text().splitlines()]
    assert letter["record"]["dynamodb"]["Keys"]["SK"] == {"S": "ORDER#3"}
    assert f"index '{prefix}-orders-umbrella' was not created; raise the route's max_indices" in letter["error"]
    assert result.outcomes[("INSERT", "dead_lettered")] == 1 and result.outcomes[("INSERT", "applied")] == 3
    for name in client.indices.get_alias(index=f"{prefix}-*", allow_no_indices=True):
        client.indices.delete(index=name)


def test_a_pool_over_a_splitting_stream_keeps_every_index_to_its_routes(
    moto, stream_server, search_engine, ddb, table_name, tmp_path
):
    # GIVEN a single-table design on a stream of two shards (the test-side server), and a pool of two
    # in-process workers with the routes
    create_shop_table(ddb, table_name, view_type=None)
    key_schema = [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}]
    arn = stream_server.create_stream(table_name, key_schema=key_schema, shard_count=2)
    env = {
        **aws_env(moto.url),
        "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": stream_server.url,
        "CDC_TABLE_NAME": table_name,
        "CDC_STREAM_ARN": arn,
        "CDC_OPENSEARCH_URL": search_engine.url,
        "CDC_FAILOVER_SECONDS": "2",
        "CDC_POLL_INTERVAL_SECONDS": "0.1",
        "CDC_SHARD_SYNC_INTERVAL_SECONDS": "1",
        "CDC_DEAD_LETTER_PATH": str(tmp_path / "dead-letters.jsonl"),
        **route_settings(table_name),
    }
    client = OpenSearch(hosts=[search_engine.url])
    with pytest.MonkeyPatch.context() as patch:
        workers = [start_worker({**env, "CDC_WORKER_ID": f"{table_name}-{i}"}, patch, 2) for i in range(2)]
        started = list(workers)
        try:
            # WHEN items change type and tenant while shards split twice and a worker is replaced
            changes = random_changes(400, seed=13)
            state: dict[tuple[str, str], dict] = {}
            for n, change in enumerate(changes):
                keys = {"PK": {"S": change.key[0]}, "SK": {"S": change.key[1]}}
                old = state.get(change.key)
                if change.attributes is None:
                    if old is not None:
                        stream_server.put_change(arn, "REMOVE", keys, old_image=state.pop(change.key))
                else:
                    new = to_item(change.key, change.attributes)
                    stream_server.put_change(arn, "MODIFY" if old else "INSERT", keys, new_image=new, old_image=old)
                    state[change.key] = new
                if n in (100, 300):
                    open_shards = [shard.shard_id for shard in stream_server.shards(arn) if not shard.is_closed]
                    stream_server.split(arn, open_shards[0])
                if n == 200:
                    workers[0].halt()
                    workers[0] = start_worker({**env, "CDC_WORKER_ID": f"{table_name}-2"}, patch, 2)
                    started.append(workers[0])

            # THEN every index holds exactly the items of its route, and no worker died
            expected = expected_indices(final_state(changes), table_name)
            wait_until(lambda: live_indices(search_engine, client, table_name) == expected, timeout=120, what="routes")
            assert [worker.error for worker in started if worker.error is not None] == []
        finally:
            for worker in workers:
                worker.halt()
