"""Preparing a page (decode → version → project → encode, pure): a record is poison only when it is
proven to be the cause, and a LATEST lease's records from before its anchor are skipped."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

import consumer.sink.processor
from consumer.config import load_settings, routing
from consumer.observability.metrics import Metrics
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import PROOF_ATTEMPTS, BatchProcessor
from tests.support.factories import stream_record
from tests.support.single_table import KEY_SCHEMA, route_settings, to_item

SCHEMA = KeySchema((KeyAttribute("pk", "S"),))


@pytest.fixture
def processor(tmp_path):
    metrics = Metrics(CollectorRegistry())
    sink = OpenSearchSink(None, "index", metrics)  # type: ignore[arg-type] - preparing never calls OpenSearch
    return BatchProcessor(SCHEMA, sink, DeadLetterFile(tmp_path / "letters.jsonl"), metrics)


def records(*names: str, second: int = 1_800_000_000) -> list[dict]:
    return [stream_record("INSERT", keys={"pk": {"S": name}}, second=second) for name in names]


def flaky_projection(monkeypatch, fails: dict[str, int], error: type[BaseException] = ValueError) -> None:
    """Projection that raises ``error`` for a record's first ``fails[pk]`` attempts."""
    real = consumer.sink.processor.to_bulk_actions

    def project(record, *args, **kwargs):
        pk = record.keys["pk"]["S"]
        if fails.get(pk, 0) > 0:
            fails[pk] -= 1
            raise error("injected")
        return real(record, *args, **kwargs)

    monkeypatch.setattr(consumer.sink.processor, "to_bulk_actions", project)


def test_a_failure_that_passes_costs_no_record(processor, monkeypatch):
    # GIVEN a record whose projection fails once and then succeeds (a passing fault)
    flaky_projection(monkeypatch, {"b": PROOF_ATTEMPTS - 1})

    # WHEN the page is prepared THEN every record is an action: nothing is dead-lettered
    prepared = processor.prepare("shard-1", records("a", "b", "c"), 0)
    assert [action.doc_id for action in prepared.actions] == ["a", "b", "c"]
    assert prepared.letters == ()


def test_a_record_that_fails_every_time_alone_is_poison_and_the_rest_go_on(processor, monkeypatch):
    flaky_projection(monkeypatch, {"b": PROOF_ATTEMPTS})
    prepared = processor.prepare("shard-1", records("a", "b", "c"), 0)
    assert [action.doc_id for action in prepared.actions] == ["a", "c"]
    assert [letter.error for letter in prepared.letters] == ["ValueError: injected"]


def test_memory_running_out_is_never_a_records_fault(processor, monkeypatch):
    flaky_projection(monkeypatch, {"b": 1}, MemoryError)
    with pytest.raises(MemoryError):
        processor.prepare("shard-1", records("a", "b"), 0)


def test_the_versions_do_not_depend_on_a_passing_fault(processor, monkeypatch):
    clean = processor.prepare("shard-1", records("a", "b", "c"), 0)
    flaky_projection(monkeypatch, {"a": 1, "c": 2})
    retried = processor.prepare("shard-1", records("a", "b", "c"), 0)
    assert [a.version for a in retried.actions] == [a.version for a in clean.actions]


def test_records_before_a_latest_anchor_are_skipped_without_ticking_the_clock(processor):
    # GIVEN a page whose first records are older than the lease's anchor second
    page = records("old-1", "old-2", second=1_799_999_990) + records("new", second=1_800_000_000)

    # WHEN prepared from that anchor
    prepared = processor.prepare("shard-1", page, 0, skip_before=1_800_000_000)

    # THEN only the newer record is an action, with the version it has alone; the page still settles
    # up to its last record
    assert [action.doc_id for action in prepared.actions] == ["new"]
    assert prepared.actions[0].version == processor.prepare("shard-1", page[2:], 0).actions[0].version
    assert sum(prepared.filtered.values()) == 2
    assert prepared.last_sequence_number == page[-1]["dynamodb"]["SequenceNumber"]


def test_a_record_of_a_route_becomes_two_actions_or_a_dead_letter_that_hides_what_any_index_hides(tmp_path):
    # GIVEN the single-table routes (customers mask their email), and a page with an order that becomes
    # archived, and an order whose transform fails
    settings, _ = load_settings({"CDC_TABLE_NAME": "shop", "CDC_OPENSEARCH_URL": "http://s", **route_settings()})
    metrics = Metrics(CollectorRegistry())
    sink = OpenSearchSink(None, "unused", metrics)  # type: ignore[arg-type] - preparing never calls OpenSearch
    routed = BatchProcessor(
        KEY_SCHEMA, sink, DeadLetterFile(tmp_path / "l.jsonl"), metrics, routing=routing(settings, KEY_SCHEMA)
    )
    key = ("CUSTOMER#1", "ORDER#1")
    keys = {"PK": {"S": key[0]}, "SK": {"S": key[1]}}
    order = to_item(key, {"type": "order", "tenant": "acme", "email": "a@example.com"})
    archived = to_item(key, {"type": "archived", "tenant": "acme", "email": "a@example.com"})
    broken = to_item(key, {"type": "order", "tenant": "acme", "email": "a@example.com", "lines": [{"qty": "x"}]})
    page = [
        stream_record("MODIFY", keys=keys, new_image=archived, old_image=order),
        stream_record("MODIFY", keys=keys, new_image=broken, old_image=archived),
    ]

    # WHEN the page is prepared
    prepared = routed.prepare("shard-1", page, 0)

    # THEN the move is a document in the new index and a tombstone in the old one, at one version
    move, left = prepared.actions
    assert (move.index, left.index, move.version == left.version, left.companion) == (
        "shop-archive",
        "shop-orders-acme",
        True,
        True,
    )
    assert len(prepared.encoded) == 2
    # AND the failing transform dead-letters its record, its image masked as the customers' index masks it
    (letter,) = prepared.letters
    assert "transform tests.support.single_table:shape raised ValueError" in letter.error
    assert letter.document["email"].startswith("hmac-sha256:")
