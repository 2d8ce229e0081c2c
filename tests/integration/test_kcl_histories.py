"""KCL mode converges whatever the delivery history — property-tested against osmem-server and a real
OpenSearch node, with the version clock kept on a KCL lease table in moto.

Hypothesis draws a history of changes to a few items on a stream whose shard may split, and plays
the daemon: each shard is delivered in random batches to the real ``ShardProcessor`` (our
``BatchProcessor``, ``KclVersionStore``), children after their parent ended, and the daemon dies at
random moments — after a batch was indexed but before its version was stored, after the version was
stored but before the checkpoint was, or cleanly between batches — after which a new processor is
initialized from the lease item's checkpoint, as a restarted daemon does, and the shard is replayed
from there. Checkpoints are refused too: throttled (up to more times than the processor retries), or
because the lease moved to another daemon; or a daemon is frozen and its lease moves on unbeknown to
it. The new owner's processor then starts from the lease item, and the old one, a zombie, is handed
one more batch between the new owner's version store and its checkpoint. Whatever was drawn, the index seen through
the read alias must equal the final table, and the version clock on the lease item never went down.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from amazon_kclpy import messages
from amazon_kclpy.kcl import CheckpointError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch
from prometheus_client import CollectorRegistry

from consumer.kcl.processor import ShardProcessor
from consumer.kcl.versions import KclVersionStore
from consumer.observability.metrics import Metrics
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.index_setup import ensure_index
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor
from tests.support.histories import final_table, histories, shards_of
from tests.support.kcl_daemon_side import create_kcl_lease_table, kcl_record, put_kcl_lease
from tests.support.tables import index_documents

pytestmark = [pytest.mark.integration, pytest.mark.engines, pytest.mark.long]
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


class LeaseMoved(Exception):
    """The daemon lost the lease to another one; its processor is still alive."""

    def __init__(self, processor: ShardProcessor, position: int) -> None:
        super().__init__("lease moved")
        self.processor = processor
        self.position = position


class Checkpointer:
    """The daemon's checkpoint: written to the lease item, unless the daemon dies first or refuses
    it (``refusals``: the KCL's error names, answered in order)."""

    def __init__(self, ddb: Any, table: str, shard_id: str) -> None:
        self.ddb, self.table, self.shard_id = ddb, table, shard_id
        self.die = False
        self.refusals: list[str] = []
        self.meanwhile: Any = None  # run once, first: what another process does between store and checkpoint

    def checkpoint(self, sequence_number: str | None = None) -> None:
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            meanwhile()
        if self.die:
            self.die = False
            raise DaemonDied
        if self.refusals:
            raise CheckpointError(self.refusals.pop(0))
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
@settings(
    max_examples=int(os.environ.get("CDC_KCL_HISTORY_EXAMPLES", "40")),
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # the deliveries depend on what the processor did
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
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
    split_at = None if split is None else int(split * len(changes))
    parent, *children = shards_of(changes, split_at, wire=True)
    parent_id = "shardId-parent"

    owners = itertools.count(2)
    clocks: dict[str, list[int]] = {}  # per shard: the stored version, read after every batch

    def lease_item(shard_id: str) -> dict:
        return ddb.get_item(TableName=lease_table, Key={"leaseKey": {"S": shard_id}}, ConsistentRead=True)["Item"]

    def clock_of(shard_id: str) -> int:
        return int(lease_item(shard_id).get("checkpointVersion", {}).get("N", "0"))

    def batch_of(records: list[dict], position: int) -> SimpleNamespace:
        batch = records[position : position + data.draw(st.integers(1, 6), label="batch size")]
        return SimpleNamespace(records=[messages.Record(kcl_record(r)) for r in batch])

    def deliver(shard_id: str, records: list[dict]) -> None:
        """The daemon's view: initialize from the lease's checkpoint, deliver batches, die at random."""
        deaths = 0
        death = "none"
        zombie: tuple[ShardProcessor, int] | None = None
        while True:
            checkpoint = lease_item(shard_id)["checkpoint"]["S"]
            if checkpoint == "SHARD_END":
                return
            processor = ShardProcessor(
                batches, DyingStore(ddb, lease_table), batch_timeout_seconds=60, retry_base=0.001
            )
            processor.initialize(SimpleNamespace(shard_id=shard_id, sequence_number=checkpoint))
            position = 0 if checkpoint == "TRIM_HORIZON" else _after(records, checkpoint)
            checkpointer = Checkpointer(ddb, lease_table, shard_id)
            try:
                while position < len(records):
                    batch = batch_of(records, position)
                    death = "none"
                    if deaths < 5:
                        death = data.draw(
                            st.sampled_from(
                                [
                                    "none",
                                    "none",
                                    "before save",
                                    "before checkpoint",
                                    "throttled",
                                    "throttled past retries",
                                    "lease moved",
                                    "paused",
                                ]
                            ),
                            label="death",
                        )
                        processor._versions.die_before_save = death == "before save"
                        checkpointer.die = death == "before checkpoint"
                        if death.startswith("throttled"):  # the processor retries 8 times, then goes on
                            refusals = data.draw(st.integers(1, 3) if death == "throttled" else st.integers(8, 12))
                            checkpointer.refusals = ["ThrottlingException"] * refusals
                        elif death == "lease moved":
                            checkpointer.refusals = ["ShutdownException"]
                        deaths += death != "none"
                        if death == "paused":  # frozen before this batch; the lease expires and moves on
                            raise LeaseMoved(processor, position)
                    batch.checkpointer = checkpointer
                    if zombie is not None and zombie[1] < len(records) and data.draw(st.booleans(), label="zombie"):
                        # the old owner wakes up between this batch's store and its checkpoint, with a batch
                        # of its own, and tries to store its clock
                        late = batch_of(records, zombie[1])
                        late.checkpointer = Checkpointer(ddb, lease_table, shard_id)
                        readings = clocks.setdefault(shard_id, [])
                        checkpointer.meanwhile = lambda z=zombie[0], late=late, readings=readings: (
                            readings.append(clock_of(shard_id)),
                            z.process_records(late),
                            readings.append(clock_of(shard_id)),
                        )
                        zombie = None
                    processor.process_records(batch)
                    clocks.setdefault(shard_id, []).append(clock_of(shard_id))
                    position += len(batch.records)
                    if death == "lease moved" and not processor.lease_held:
                        raise LeaseMoved(processor, position)
                processor.shard_ended(SimpleNamespace(checkpointer=checkpointer))
            except DaemonDied:
                continue  # a new daemon starts from the lease item
            except LeaseMoved as moved:  # another daemon takes the lease over; the old processor lives on
                zombie = (moved.processor, moved.position)
                ddb.update_item(
                    TableName=lease_table,
                    Key={"leaseKey": {"S": shard_id}},
                    UpdateExpression="SET leaseOwner = :o",
                    ExpressionAttributeValues={":o": {"S": f"daemon-{next(owners)}"}},
                )

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
        # AND no processor, zombies included, ever moved a shard's clock back
        assert all(readings == sorted(readings) for readings in clocks.values()), clocks
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
