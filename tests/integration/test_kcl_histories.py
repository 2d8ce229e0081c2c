"""KCL mode converges whatever the delivery history — property-tested against osmem-server and a real
OpenSearch node, with the version clock kept on a KCL lease table in moto.

Hypothesis draws a history of changes to a few items on a stream whose shard may split, and plays
the daemon: each shard is delivered in random batches to the real ``ShardProcessor`` (our
``BatchProcessor``, ``KclVersionStore``), children after their parent ended, and the daemon dies at
random moments — after a batch was indexed but before its version was stored, after the version was
stored but before the checkpoint was, or cleanly between batches — after which a new processor is
initialized from the lease item's checkpoint, as a restarted daemon does, and the shard is replayed
from there. Whatever was drawn, the index seen through the read alias must equal the final table.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from amazon_kclpy import messages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch
from prometheus_client import CollectorRegistry

from consumer.doc_ids import KeyAttribute, KeySchema
from consumer.kcl.processor import ShardProcessor
from consumer.kcl.versions import KclVersionStore
from consumer.observability.metrics import Metrics
from consumer.processor import BatchProcessor
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.index_setup import ensure_index
from consumer.sink.opensearch import OpenSearchSink
from tests.support.histories import final_table, histories, shards_of
from tests.support.kcl_daemon_side import create_kcl_lease_table, kcl_record, put_kcl_lease
from tests.support.tables import index_documents

pytestmark = [pytest.mark.integration, pytest.mark.engines]
SCHEMA = KeySchema((KeyAttribute("pk", "S"),))
_runs = itertools.count()


class DaemonDied(Exception):
    """The daemon (and its child) died at this point."""


class DyingStore(KclVersionStore):
    """The real store, with the daemon dying just before the write a test chose."""

    die_before_save = False

    def save(self, shard_id: str, version: int, at: str, expected_checkpoint: str) -> bool:
        if self.die_before_save:
            self.die_before_save = False
            raise DaemonDied
        return super().save(shard_id, version, at, expected_checkpoint)


class Checkpointer:
    """The daemon's checkpoint: written to the lease item, unless the daemon dies first."""

    def __init__(self, ddb: Any, table: str, shard_id: str) -> None:
        self.ddb, self.table, self.shard_id = ddb, table, shard_id
        self.die = False

    def checkpoint(self, sequence_number: str | None = None) -> None:
        if self.die:
            self.die = False
            raise DaemonDied
        self.ddb.update_item(
            TableName=self.table,
            Key={"leaseKey": {"S": self.shard_id}},
            UpdateExpression="SET checkpoint = :c",
            ExpressionAttributeValues={":c": {"S": sequence_number or "SHARD_END"}},
        )


@pytest.fixture(scope="module")
def client(search_engine) -> OpenSearch:
    return OpenSearch(hosts=[search_engine.url])


@given(changes=histories(new_second_odds=12), split=st.floats(0, 1) | st.none(), data=st.data())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_kcl_mode_converges_whatever_the_daemon_goes_through(
    ddb, client, search_engine, tmp_path, changes, split, data
):
    # GIVEN a fresh index, a KCL lease table, and the shards of the history (a parent, maybe children)
    run = next(_runs)
    index, lease_table = f"kcl-history-{run}", f"kcl-history-leases-{run}"
    ensure_index(client, index, f"{index}-live", SCHEMA)
    create_kcl_lease_table(ddb, lease_table)
    metrics = Metrics(CollectorRegistry())
    batches = BatchProcessor(
        SCHEMA, OpenSearchSink(client, index, metrics), DeadLetterFile(Path(tmp_path) / f"{index}.jsonl"), metrics
    )
    store = DyingStore(ddb, lease_table)
    split_at = None if split is None else int(split * len(changes))
    parent, *children = shards_of(changes, split_at, wire=True)
    parent_id = "shardId-parent"

    def deliver(shard_id: str, records: list[dict]) -> None:
        """The daemon's view: initialize from the lease's checkpoint, deliver batches, die at random."""
        deaths = 0
        while True:
            checkpoint = ddb.get_item(TableName=lease_table, Key={"leaseKey": {"S": shard_id}}, ConsistentRead=True)[
                "Item"
            ]["checkpoint"]["S"]
            if checkpoint == "SHARD_END":
                return
            processor = ShardProcessor(batches, store, batch_timeout_seconds=60)
            processor.initialize(SimpleNamespace(shard_id=shard_id, sequence_number=checkpoint))
            position = 0 if checkpoint == "TRIM_HORIZON" else _after(records, checkpoint)
            checkpointer = Checkpointer(ddb, lease_table, shard_id)
            try:
                while position < len(records):
                    batch = records[position : position + data.draw(st.integers(1, 6), label="batch size")]
                    if deaths < 3:
                        death = data.draw(
                            st.sampled_from(["none", "none", "before save", "before checkpoint"]), label="death"
                        )
                        store.die_before_save = death == "before save"
                        checkpointer.die = death == "before checkpoint"
                        deaths += death != "none"
                    processor.process_records(
                        SimpleNamespace(
                            records=[messages.Record(kcl_record(r)) for r in batch], checkpointer=checkpointer
                        )
                    )
                    position += len(batch)
                processor.shard_ended(SimpleNamespace(checkpointer=checkpointer))
            except DaemonDied:
                store.die_before_save, checkpointer.die = False, False
                continue  # a new daemon starts from the lease item

    # WHEN the daemon delivers the parent, then each child (leased with the parent recorded)
    try:
        put_kcl_lease(ddb, lease_table, parent_id)
        deliver(parent_id, parent)
        for n, child in enumerate(children):
            put_kcl_lease(ddb, lease_table, f"shardId-child-{n}", parents=[parent_id])
            deliver(f"shardId-child-{n}", child)

        # THEN the index, as applications read it, equals the table
        documents = index_documents(search_engine.url, index)
        assert {doc_id: {k: doc[k] for k in ("pk", "revision")} for doc_id, doc in documents.items()} == final_table(
            changes
        )
    finally:
        batches.close()
        client.indices.delete(index=index)
        ddb.delete_table(TableName=lease_table)


def _after(records: list[dict], sequence_number: str) -> int:
    """The position of the first record after ``sequence_number``."""
    for position, record in enumerate(records):
        if int(record["dynamodb"]["SequenceNumber"]) > int(sequence_number):
            return position
    return len(records)
