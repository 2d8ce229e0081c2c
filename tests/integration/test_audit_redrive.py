"""``consumer audit`` and ``consumer redrive`` against moto and OpenSearch (osmem and a real node), run as operators run them.

The audit reports exactly the drift injected into the index and ``--repair`` removes it without
ever overwriting a newer change; redrive restores dead-lettered items from the table's current
state, and changes nothing without ``--apply``.
"""

from __future__ import annotations

import json
import time

import pytest
from opensearchpy import OpenSearch

from consumer.pipeline.letters import DeadLetter
from consumer.pipeline.versioning import COUNTER_BITS
from consumer.sink.dlq import DeadLetterFile
from tests.support.commands import consumer
from tests.support.emulators import aws_env
from tests.support.factories import stream_record, unindexable_image
from tests.support.tables import create_table, index_documents, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engines, pytest.mark.long]


def audit_json(env: dict[str, str], *args: str) -> tuple[int, dict]:
    result = consumer(env, "audit", "--json", *args)
    assert result.returncode in (0, 3), result.stderr
    return result.returncode, json.loads(result.stdout)


def item(pk: str, n: dict | None = None, name: str = "plain") -> dict:
    return {"pk": {"S": pk}, "sk": {"N": "1"}, "name": {"S": name}, **({"n": n} if n else {})}


def converged_worker(ddb, search_engine, table_name, worker_env, start_worker, **extra_env):
    """A worker that projected a random history of ``table_name``, stopped once the index equals the table."""
    create_table(ddb, table_name)
    write_random_history(ddb, table_name, changes=60, seed=23)
    worker = start_worker({**worker_env, **extra_env})
    wait_until(
        lambda: index_documents(search_engine.url, table_name) == table_documents(ddb, table_name),
        timeout=60,
        what="index to equal table",
    )
    assert worker.terminate() == 0


def test_audit_reports_exactly_the_injected_drift_and_repair_removes_it(
    ddb, search_engine, table_name, worker_env, start_worker
):
    # GIVEN an index a worker brought to the table's state (every DynamoDB type): no drift
    converged_worker(ddb, search_engine, table_name, worker_env, start_worker)
    clean = consumer({**worker_env, "CDC_LOG_LEVEL": "INFO"}, "audit")
    assert clean.returncode == 0
    # AND it said how far it got while it ran (a log line off a terminal)
    assert '"event":"audit_progress"' in clean.stderr.replace(" ", ""), clean.stderr[-1000:]
    # a repair wins over versions of earlier seconds only (docs/versioning.md, R2); the deleted
    # document's tombstone keeps its last version, so let that second pass
    time.sleep(2.1)

    # AND drift injected behind the consumer's back: a deleted document, an extra one, and a document
    # at a low version that differs from its item (as a lost change leaves it)
    search = OpenSearch(hosts=[search_engine.url])
    deleted = sorted(index_documents(search_engine.url, table_name))[0]
    search.delete(index=table_name, id=deleted)
    search.index(index=table_name, id="ghost|1", body={"pk": "ghost", "sk": 1}, version=1, version_type="external")
    ddb.put_item(TableName=table_name, Item=item("late", name="current"))
    late = {"pk": "late", "sk": 1, "name": "lost change"}
    search.index(index=table_name, id="late|1", body=late, version=1, version_type="external")

    # WHEN an operator audits
    code, report = audit_json(worker_env)

    # THEN exactly that drift is reported, with the field that differs, and the exit code says so
    assert code == 3
    assert report["missing"] == {"count": 1, "examples": [deleted]}
    assert report["extra"] == {"count": 1, "examples": ["ghost|1"]}
    assert report["different"] == {"count": 1, "examples": [{"id": "late|1", "fields": ["name"]}]}
    assert report["items"] == len(table_documents(ddb, table_name)) and report["repair"] is None

    # AND --repair fixes all of it, so a second audit finds nothing and the index equals the table
    code, repaired = audit_json(worker_env, "--repair")
    assert code == 3 and repaired["repair"]["applied"] == 3, repaired["repair"]
    assert consumer(worker_env, "audit").returncode == 0
    assert index_documents(search_engine.url, table_name) == table_documents(ddb, table_name)


def test_a_repair_never_overwrites_a_newer_change(ddb, search_engine, table_name, worker_env):
    # GIVEN items indexed by a repair from an empty index
    create_table(ddb, table_name)
    for pk in ("a", "b", "c"):
        ddb.put_item(TableName=table_name, Item=item(pk))
    code, report = audit_json(worker_env, "--repair")
    assert (code, report["missing"]["count"], report["repair"]["applied"]) == (3, 3, 3)

    # AND a change to "b" indexed at a version from a later second than the audit's read
    newer = {"pk": "b", "sk": 1, "name": "newer change"}
    version = (int(time.time()) + 100) << COUNTER_BITS
    OpenSearch(hosts=[search_engine.url]).index(
        index=table_name, id="b|1", body=newer, version=version, version_type="external"
    )

    # WHEN an audit repairs the drift it sees
    code, report = audit_json(worker_env, "--repair")

    # THEN the repair of "b" is stale and the newer change is kept
    assert code == 3 and report["different"]["examples"] == [{"id": "b|1", "fields": ["name"]}]
    assert report["repair"]["stale"] == {"count": 1, "examples": ["b|1"]}
    assert report["repair"]["applied"] == 0
    assert index_documents(search_engine.url, table_name)["b|1"] == newer


def test_audit_reads_every_document_of_a_large_index(ddb, search_engine, table_name, worker_env):
    # GIVEN 1,200 items and no index yet (more than one scroll page)
    create_table(ddb, table_name)
    for start in range(0, 1200, 25):
        batch = [{"PutRequest": {"Item": item(f"item-{i}")}} for i in range(start, start + 25)]
        ddb.batch_write_item(RequestItems={table_name: batch})

    # WHEN the audit repairs the empty index and audits again
    code, report = audit_json(worker_env, "--repair", "--limit", "2")
    assert (code, report["missing"]["count"], len(report["missing"]["examples"])) == (3, 1200, 2)
    assert report["repair"]["applied"] == 1200
    assert report["documents"] == 1200  # the index pass, after the table pass repaired each page

    # THEN every document is read back: no drift, 1,200 documents
    code, report = audit_json(worker_env)
    assert (code, report["items"], report["documents"]) == (0, 1200, 1200)


def test_masked_fields_are_audited_and_repaired_masked(ddb, search_engine, table_name, worker_env, start_worker):
    # GIVEN a worker that masks the "name" field with a key
    masked = {"CDC_MASK_FIELDS": "name", "CDC_MASK_KEY": "test-key-of-16-bytes-or-more"}
    converged = {**worker_env, **masked}
    create_table(ddb, table_name)
    for pk in ("a", "b"):
        ddb.put_item(TableName=table_name, Item=item(pk, name=f"{pk}@example.com"))
    worker = start_worker(converged)
    wait_until(lambda: len(index_documents(search_engine.url, table_name)) == 2, timeout=60, what="both items indexed")
    assert worker.terminate() == 0

    # WHEN an audit with the same settings compares, and repairs a document the index lost
    assert consumer(converged, "audit").returncode == 0
    OpenSearch(hosts=[search_engine.url]).delete(index=table_name, id="a|1")
    time.sleep(2.1)  # past the second of the tombstone's version (docs/versioning.md, R2)
    assert audit_json(converged, "--repair")[1]["repair"]["applied"] == 1

    # THEN the repaired document is masked exactly as the worker masks it
    documents = index_documents(search_engine.url, table_name)
    assert documents["a|1"]["name"].startswith("hmac-sha256:") and documents["a|1"]["name"] != documents["b|1"]["name"]
    assert consumer(converged, "audit").returncode == 0


@pytest.mark.parametrize(
    ("extra_env", "command", "message"),
    [
        ({"CDC_FILTER_MODE": "events", "CDC_FILTER_PATTERNS": '{"eventName": ["INSERT"]}'}, "audit", "events"),
        ({"CDC_TTL_DELETES": "skip"}, "redrive", "CDC_TTL_DELETES=skip"),
        ({"CDC_TABLE_NAME": "no-such-table"}, "audit", "table 'no-such-table' does not exist"),
        ({"CDC_OPENSEARCH_URL": ""}, "audit", "CDC_OPENSEARCH_URL"),
        ({}, "redrive", "dead-letter file"),
    ],
)
def test_set_up_errors_exit_2_and_say_what_to_change(ddb, table_name, worker_env, extra_env, command, message):
    create_table(ddb, table_name)
    result = consumer({**worker_env, **extra_env}, command)
    assert result.returncode == 2 and message in result.stderr and result.stdout == ""


def test_redrive_restores_dead_lettered_items_from_the_tables_current_state(
    ddb, search_engine, table_name, worker_env, start_worker, tmp_path
):
    # GIVEN two dead letters from a worker: "b" (a new item) and a change to "c", both with more
    # attributes than an index takes
    create_table(ddb, table_name)
    for pk, n in (("a", {"N": "1"}), ("c", {"N": "2"})):
        ddb.put_item(TableName=table_name, Item=item(pk, n))
    for pk in ("b", "c"):
        ddb.put_item(TableName=table_name, Item=unindexable_image(item(pk, {"N": "0"})))
    worker = start_worker(worker_env)
    dead_letters = tmp_path / "dead-letters.jsonl"
    wait_until(lambda: dead_letters.exists() and len(dead_letters.read_text().splitlines()) == 2, 60, "dead letters")
    assert worker.terminate() == 0
    # AND since then "b" was fixed in the table and "c" deleted
    ddb.put_item(TableName=table_name, Item=item("b", {"N": "5"}))
    ddb.delete_item(TableName=table_name, Key={"pk": {"S": "c"}, "sk": {"N": "1"}})
    before = index_documents(search_engine.url, table_name)
    letters = dead_letters.read_bytes()

    # WHEN an operator runs redrive without --apply
    dry = consumer({**worker_env, "CDC_LOG_LEVEL": "INFO"}, "redrive")

    # THEN it prints the plan and changes nothing, its progress counted against the file's letters
    assert dry.returncode == 0, dry.stderr
    assert '"expected_items":2' in dry.stderr.replace(" ", ""), dry.stderr[-1000:]
    assert [line.split()[:3] for line in dry.stdout.splitlines()[0:2]] == [
        ["dead-letters.jsonl:1", "b|1", "index"],
        ["dead-letters.jsonl:2", "c|1", "delete"],
    ]
    assert "Limit of total fields" in dry.stdout and "nothing was written" in dry.stdout
    assert index_documents(search_engine.url, table_name) == before

    # WHEN it runs with --apply
    applied = consumer(worker_env, "redrive", "--apply")

    # THEN the index holds each item's current state ("c" deleted), and the file is left as it was
    assert applied.returncode == 0, applied.stderr
    assert "2 applied, 0 stale, 0 poison, 0 unreadable" in applied.stdout
    # AND running it again changes nothing more
    again = consumer(worker_env, "redrive", "--apply")
    assert again.returncode == 0 and "0 poison, 0 unreadable" in again.stdout
    assert index_documents(search_engine.url, table_name) == table_documents(ddb, table_name)
    assert index_documents(search_engine.url, table_name) == table_documents(ddb, table_name)
    assert sorted(index_documents(search_engine.url, table_name)) == ["a|1", "b|1"]
    assert dead_letters.read_bytes() == letters


def test_redrive_reads_binary_keys_and_reports_unreadable_and_still_rejected_entries(
    moto, ddb, search_engine, table_name, tmp_path
):
    # GIVEN a table keyed by a binary attribute, one of whose items no index can hold
    ddb.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "B"}],
        BillingMode="PAY_PER_REQUEST",
    )
    fixed, poison = {"id": {"B": b"\x00\xfb"}}, {"id": {"B": b"\x01"}}
    ddb.put_item(TableName=table_name, Item={**fixed, "n": {"N": "7"}})
    ddb.put_item(TableName=table_name, Item=unindexable_image(poison))
    # AND dead letters as a worker writes them (binary values become base64), plus a truncated line
    path = tmp_path / "letters.jsonl"
    DeadLetterFile(path).write(
        [
            DeadLetter("shard-1", "1", "400 mapper_parsing_exception", stream_record("INSERT", keys=k))
            for k in (fixed, poison)
        ]
    )
    with open(path, "a") as file:
        file.write('{"record": {"dynamodb": {"Keys": \n')
    env = {**aws_env(moto.url), "CDC_TABLE_NAME": table_name, "CDC_OPENSEARCH_URL": search_engine.url}

    # WHEN redrive applies the file
    result = consumer(env, "redrive", str(path), "--apply")

    # THEN the fixed item is indexed under the worker's id, and the other two entries are reported, not dropped
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["letters.jsonl:1", "APs=", "index", "applied"]
    assert lines[1].split()[:5] == ["letters.jsonl:2", "AQ==", "index", "poison:", "still"]
    assert lines[2].split()[:3] == ["letters.jsonl:3", "-", "-"] and "unreadable: not a JSON line" in lines[2]
    assert index_documents(search_engine.url, table_name)["APs="] == {"id": "APs=", "n": 7}
