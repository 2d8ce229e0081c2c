"""``consumer kcl-processor`` driven over the multilang protocol exactly as the KCL daemon drives it
(JSON lines on its stdin / stdout; no Java here), against moto (the table, the KCL lease table) and
OpenSearch (osmem and a real node).

Every message kind, checkpoint refusals, the KCL 1.x ``shutdown``, malformed input, a batch that
cannot be settled, end of input, and the version clock kept on the KCL's lease item: continued
across restarts, handed from parent to child, never below what was indexed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from consumer.pipeline.versioning import next_version
from tests.support.factories import stream_record
from tests.support.fault_proxy import FaultProxy
from tests.support.kcl_daemon_side import KclChild, create_kcl_lease_table, kcl_env, kcl_record, put_kcl_lease
from tests.support.tables import create_table, index_documents

pytestmark = [pytest.mark.integration, pytest.mark.engines, pytest.mark.long]

SHARD = "shardId-00000001700000000000-aaaaaaaa"
NOW = int(time.time())


def key(pk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"N": "1"}}


def change(event: str, pk: str, status: str = "new", second: float = NOW) -> dict:
    image = {**key(pk), "status": {"S": status}}
    return stream_record(event, keys=key(pk), new_image=image, old_image=image, second=second, wire_timestamp=True)


def records_message(*wires: dict) -> dict:
    return {"action": "processRecords", "records": [kcl_record(w) for w in wires], "millisBehindLatest": 0}


def initialize(shard: str = SHARD, sequence_number: str = "TRIM_HORIZON") -> dict:
    return {"action": "initialize", "shardId": shard, "sequenceNumber": sequence_number, "subSequenceNumber": 0}


@pytest.fixture
def kcl(ddb, moto, search_engine, table_name, tmp_path):
    """Starts children for ``table_name`` with a KCL lease table; all are closed at teardown."""
    create_table(ddb, table_name)
    lease_table = f"{table_name}-kcl"
    create_kcl_lease_table(ddb, lease_table)
    children: list[KclChild] = []

    class Kcl:
        env = kcl_env(moto.url, table_name, search_engine.url, lease_table, tmp_path / "dead-letters.jsonl")
        leases = lease_table

        def child(self, **extra: str) -> KclChild:
            started = KclChild({**self.env, **extra}, ddb, lease_table, tmp_path / f"child-{len(children)}.log")
            children.append(started)
            return started

        def put_lease(self, shard: str, parents: list[str] = ()) -> None:
            put_kcl_lease(ddb, lease_table, shard, parents=parents)

        def lease(self, shard: str = SHARD) -> dict:
            return ddb.get_item(TableName=lease_table, Key={"leaseKey": {"S": shard}}, ConsistentRead=True)["Item"]

    yield Kcl()
    for started in children:
        started.close()


def versions(url: str, index: str) -> dict[str, int]:
    search = OpenSearch(hosts=[url])
    search.indices.refresh(index=index)
    hits = search.search(index=index, body={"query": {"match_all": {}}, "version": True, "size": 100})["hits"]["hits"]
    return {hit["_id"]: hit["_version"] for hit in hits}


def test_a_batch_is_indexed_then_its_version_stored_then_checkpointed(kcl, search_engine, table_name):
    # GIVEN a child initialized on a new lease
    kcl.put_lease(SHARD)
    child = kcl.child()
    assert child.exchange(initialize()) == {"action": "status", "responseFor": "initialize"}

    # WHEN the daemon delivers a batch: an insert and a change of "a", an insert and a delete of "b"
    batch = [change("INSERT", "a"), change("MODIFY", "a", "paid"), change("INSERT", "b"), change("REMOVE", "b")]
    status = child.exchange(records_message(*batch), SHARD)

    # THEN the index holds the state, the checkpoint asked for is the batch's last record, and the
    # lease item carries the clock after it, at that sequence number
    assert status == {"action": "status", "responseFor": "processRecords"}
    last = batch[-1]["dynamodb"]["SequenceNumber"]
    assert child.checkpoints == [last]
    assert index_documents(search_engine.url, table_name) == {"a|1": {"pk": "a", "sk": 1, "status": "paid"}}
    expected = 0
    for _ in batch:
        expected = next_version(expected, NOW)
    lease = kcl.lease()
    assert (int(lease["checkpointVersion"]["N"]), lease["checkpointVersionAt"]["S"]) == (expected, last)
    assert versions(search_engine.url, table_name)["a|1"] == next_version(next_version(0, NOW), NOW)

    # AND the daemon closing stdin ends the child cleanly
    assert child.close_input() == 0


def test_a_restarted_child_continues_the_clock_exactly_where_the_checkpoint_left_it(kcl, search_engine, table_name):
    # GIVEN a batch processed and checkpointed by one child, which then went away
    first = kcl.child()
    kcl.put_lease(SHARD)
    first.exchange(initialize())
    batch1 = [change("INSERT", "a", second=NOW), change("MODIFY", "a", "paid", second=NOW)]
    first.exchange(records_message(*batch1), SHARD)
    first.close()

    # WHEN a new child starts from that checkpoint and gets the next batch, records of an earlier
    # second included (the clock must not go back)
    checkpoint = batch1[-1]["dynamodb"]["SequenceNumber"]
    second = kcl.child()
    second.exchange(initialize(sequence_number=checkpoint))
    second.exchange(records_message(change("MODIFY", "a", "shipped", second=NOW - 50)), SHARD)

    # THEN the document's version is the one a single uninterrupted clock gives
    expected = next_version(next_version(next_version(0, NOW), NOW), NOW - 50)
    assert versions(search_engine.url, table_name)["a|1"] == expected
    assert index_documents(search_engine.url, table_name)["a|1"]["status"] == "shipped"


def test_a_crash_between_storing_the_version_and_the_checkpoint_replays_above_it(kcl, search_engine, table_name):
    # GIVEN a child whose batch was indexed and whose version was stored, but whose checkpoint the
    # daemon never confirmed (it died): the lease item is still at TRIM_HORIZON
    first = kcl.child()
    kcl.put_lease(SHARD)
    first.exchange(initialize())
    batch = [change("INSERT", "a"), change("MODIFY", "a", "paid")]
    first.send_line(json.dumps(records_message(*batch)).encode())
    assert first.next_message()["action"] == "checkpoint"
    first.close()
    indexed = versions(search_engine.url, table_name)["a|1"]

    # WHEN a new child replays the same batch from TRIM_HORIZON
    second = kcl.child()
    second.exchange(initialize())
    second.exchange(records_message(*batch), SHARD)

    # THEN the replay is applied above what was indexed (never stale below it) and the state holds
    assert versions(search_engine.url, table_name)["a|1"] > indexed
    assert index_documents(search_engine.url, table_name)["a|1"]["status"] == "paid"
    assert "stored at" in second.stderr() and "ahead of checkpoint" in second.stderr()


def test_a_child_shard_starts_above_its_parents_final_version(kcl, search_engine, table_name):
    # GIVEN a parent shard that ended with a clock far ahead of wall time (a hot shard)
    parent, child_shard = SHARD, "shardId-00000001700000100000-bbbbbbbb"
    ended = kcl.child()
    kcl.put_lease(parent)
    ended.exchange(initialize(parent))
    ahead = NOW + 3600
    ended.exchange(records_message(change("INSERT", "a", "from parent", second=ahead)), parent)
    assert ended.exchange({"action": "shardEnded"}, parent) == {"action": "status", "responseFor": "shardEnded"}
    assert ended.checkpoints[-1] is None  # the shard-end checkpoint
    parent_version = int(kcl.lease(parent)["checkpointVersion"]["N"])
    assert kcl.lease(parent)["checkpointVersionAt"]["S"] == "SHARD_END"

    # WHEN its child is initialized on a new lease and changes the same item at wall time
    kcl.put_lease(child_shard, parents=[parent])
    child = kcl.child()
    child.exchange(initialize(child_shard))
    child.exchange(records_message(change("MODIFY", "a", "from child", second=NOW)), child_shard)

    # THEN the child's change wins: its version starts above the parent's final one
    assert versions(search_engine.url, table_name)["a|1"] == parent_version + 1
    assert index_documents(search_engine.url, table_name)["a|1"]["status"] == "from child"


def test_refused_checkpoints_are_retried_or_end_checkpointing_but_never_applying(kcl, search_engine, table_name):
    child = kcl.child()
    kcl.put_lease(SHARD)
    child.exchange(initialize())

    # a throttled checkpoint is asked for again
    child.refusals = ["ThrottlingException"]
    first = change("INSERT", "a")
    child.exchange(records_message(first), SHARD)
    assert child.checkpoints == [first["dynamodb"]["SequenceNumber"]]

    # a checkpoint refused because the lease is gone is not asked for again, and nothing more is
    # checkpointed; a batch the daemon still hands over is applied all the same (never acknowledged
    # unapplied: its writes lose to the new owner's by version), and the shard's end is not claimed
    child.refusals = ["ShutdownException"]
    child.exchange(records_message(change("MODIFY", "a", "paid")), SHARD)
    status = child.exchange(records_message(change("MODIFY", "a", "shipped")), SHARD)
    assert status["responseFor"] == "processRecords" and len(child.checkpoints) == 1
    assert index_documents(search_engine.url, table_name)["a|1"]["status"] == "shipped"
    child.exchange({"action": "shardEnded"}, SHARD)
    assert len(child.checkpoints) == 1 and kcl.lease()["checkpointVersionAt"]["S"] != "SHARD_END"
    assert "kcl_checkpoint_refused" in child.stderr()


def test_a_checkpoint_throttled_past_its_retries_is_covered_by_the_next_one(kcl, search_engine, table_name):
    # GIVEN a child whose checkpoint is refused with throttling more times than it retries (the
    # daemon's lease table throttled for seconds)
    child = kcl.child()
    kcl.put_lease(SHARD)
    child.exchange(initialize())
    child.refusals = ["ThrottlingException"] * 8
    child.exchange(records_message(change("INSERT", "a")), SHARD)
    assert child.checkpoints == []

    # WHEN the next batches come, and the shard ends
    later = change("MODIFY", "a", "paid")
    child.exchange(records_message(later), SHARD)
    child.exchange({"action": "shardEnded"}, SHARD)

    # THEN they are applied and checkpointed as usual: the lease was not given up for a throttle
    assert index_documents(search_engine.url, table_name)["a|1"]["status"] == "paid"
    assert child.checkpoints == [later["dynamodb"]["SequenceNumber"], None]
    assert kcl.lease()["checkpointVersionAt"]["S"] == "SHARD_END"


def test_a_zombie_processor_can_never_lower_the_clock_the_new_owner_stored(kcl, ddb):
    # GIVEN a processor of daemon-1 that started on a shard, and paused (its batch settled, the
    # version not yet stored)
    from consumer.kcl.versions import KclVersionStore

    kcl.put_lease(SHARD)
    zombie = KclVersionStore(ddb, kcl.leases)
    zombie.start(SHARD)

    # WHEN the lease moves to daemon-2, whose processor settles more of the shard and stores its clock
    ddb.update_item(
        TableName=kcl.leases,
        Key={"leaseKey": {"S": SHARD}},
        UpdateExpression="SET leaseOwner = :o",
        ExpressionAttributeValues={":o": {"S": "daemon-2"}},
    )
    owner = KclVersionStore(ddb, kcl.leases)
    owner.start(SHARD)
    assert owner.save(SHARD, 105, "5", "TRIM_HORIZON")

    # THEN the zombie, waking up before daemon-2 checkpointed, cannot store its lower clock
    assert not zombie.save(SHARD, 103, "3", "TRIM_HORIZON")
    assert kcl.lease()["checkpointVersion"]["N"] == "105"
    # AND even the owner cannot move its own clock back
    assert not owner.save(SHARD, 104, "4", "TRIM_HORIZON")


@pytest.mark.parametrize(
    ("message", "responds_for", "checkpoints"),
    [
        ({"action": "shutdownRequested"}, "shutdownRequested", []),
        ({"action": "leaseLost"}, "leaseLost", []),
        ({"action": "shardEnded"}, "shardEnded", [None]),
        ({"action": "shutdown", "reason": "TERMINATE"}, "shutdown", [None]),  # KCL 1.x: the shard ended
        ({"action": "shutdown", "reason": "ZOMBIE"}, "shutdown", []),  # KCL 1.x: the lease was lost
    ],
)
def test_every_lifecycle_message_is_answered(kcl, message, responds_for, checkpoints):
    child = kcl.child()
    kcl.put_lease(SHARD)
    child.exchange(initialize())
    assert child.exchange(message, SHARD) == {"action": "status", "responseFor": responds_for}
    assert child.checkpoints == checkpoints
    if checkpoints:
        assert kcl.lease()["checkpointVersionAt"]["S"] == "SHARD_END"


def test_a_record_whose_data_is_no_stream_record_is_dead_lettered_and_the_shard_moves_on(
    kcl, search_engine, table_name, tmp_path
):
    child = kcl.child()
    kcl.put_lease(SHARD)
    child.exchange(initialize())
    good = change("INSERT", "a")
    garbled = kcl_record(change("INSERT", "b"))
    garbled["data"] = "not base64 !"
    message = {"action": "processRecords", "records": [garbled, kcl_record(good)], "millisBehindLatest": 0}

    child.exchange(message, SHARD)

    assert child.checkpoints == [good["dynamodb"]["SequenceNumber"]]
    letters = [json.loads(line) for line in (tmp_path / "dead-letters.jsonl").read_text().splitlines()]
    assert len(letters) == 1 and "not base64 of a JSON stream record" in letters[0]["error"]
    assert letters[0]["sequence_number"] == garbled["sequenceNumber"]
    assert list(index_documents(search_engine.url, table_name)) == ["a|1"]


def test_a_line_that_is_no_protocol_message_ends_the_child_with_a_clear_error(kcl):
    child = kcl.child()
    kcl.put_lease(SHARD)
    child.exchange(initialize())
    child.send_line(b"this is not json")
    assert child.process.wait(30) == 1
    assert "the daemon sent a line that is not JSON" in child.stderr()
    assert child.next_message() is None  # and nothing was answered


def test_a_batch_that_cannot_be_settled_ends_the_child_without_a_checkpoint(kcl, search_engine):
    # GIVEN OpenSearch behind a proxy, and a child that gives a batch 3 s
    proxy = FaultProxy(search_engine.url)
    try:
        child = kcl.child(CDC_OPENSEARCH_URL=proxy.url, CDC_KCL_BATCH_TIMEOUT_SECONDS="3")
        kcl.put_lease(SHARD)
        child.exchange(initialize())

        # WHEN OpenSearch stops answering for longer than that
        proxy.refuse()
        child.send_line(json.dumps(records_message(change("INSERT", "a"))).encode())

        # THEN the child exits non-zero, saying why, without asking for a checkpoint
        assert child.process.wait(60) == 1
        assert child.next_message() is None
        assert "was not settled within 3 s" in child.stderr()
        assert "checkpointVersion" not in kcl.lease()
    finally:
        proxy.stop()


def test_a_missing_lease_table_setting_exits_2_naming_it(kcl):
    env = {name: value for name, value in kcl.env.items() if name != "CDC_KCL_LEASE_TABLE"}
    child = KclChild(env, None, kcl.leases, Path(kcl.env["CDC_DEAD_LETTER_PATH"]).with_name("no-table.log"))
    try:
        assert child.process.wait(30) == 2
        assert "CDC_KCL_LEASE_TABLE is required" in child.stderr()
    finally:
        child.close()


def test_with_generations_a_child_writes_its_generation_and_a_child_of_another_shape_refuses(
    kcl, search_engine, table_name
):
    # GIVEN index generations on: the first child adopts generation 1 and writes a batch into it
    kcl.put_lease(SHARD)
    first = kcl.child(CDC_INDEX_GENERATIONS="on")
    first.exchange(initialize())
    first.exchange(records_message(change("INSERT", "a"), change("MODIFY", "a", "paid")), SHARD)
    search = OpenSearch(hosts=[search_engine.url])
    assert set(search.indices.get_alias(name=f"{table_name}-live")) == {f"{table_name}-g1"}
    assert index_documents(search_engine.url, f"{table_name}-live") == {"a|1": {"pk": "a", "sk": 1, "status": "paid"}}
    assert first.close_input() == 0

    # WHEN a child of a configuration that drops a field starts
    refused = kcl.child(CDC_INDEX_GENERATIONS="on", CDC_DROP_FIELDS="status")

    # THEN it exits 2 before answering the daemon, naming what differs and what to run; nothing was written
    assert refused.process.wait(60) == 2
    assert "drop_fields" in refused.stderr() and "consumer reindex" in refused.stderr()
    assert refused.next_message(timeout=1) is None
    assert index_documents(search_engine.url, f"{table_name}-live") == {"a|1": {"pk": "a", "sk": 1, "status": "paid"}}
