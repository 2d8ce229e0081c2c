"""Redrive's pure parts: reading dead-letter lines into keys, planning per item, and the report."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.commands.letter_sources import FileLetters
from consumer.commands.redrive import Entry, RedriveTally, action_name, apply, parse_entry, plan, render_rows
from consumer.pipeline.bulk import Outcome
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema, document_id
from consumer.pipeline.letters import DeadLetter
from consumer.pipeline.repair import repair_version
from consumer.sink.dlq import DeadLetterFile
from tests.support.factories import one_index, stream_record

SCHEMA = KeySchema((KeyAttribute("id", "B"), KeyAttribute("sk", "N")))
KEYS = {"id": {"B": b"\x00\xff|"}, "sk": {"N": "1.50"}}
NOW = 1_700_000_000


def written_line(tmp_path: Path, record: dict) -> bytes:
    """One line exactly as a worker writes it (bytes become base64 text)."""
    DeadLetterFile(tmp_path / "dlq.jsonl").write([DeadLetter("shard-1", "62", "400 mapper_parsing_exception", record)])
    return (tmp_path / "dlq.jsonl").read_bytes()


def test_keys_of_a_dead_letter_are_read_back_as_boto3_takes_them(tmp_path):
    # GIVEN a dead letter written by a worker for an item with a binary key
    line = written_line(tmp_path, stream_record("INSERT", keys=KEYS, new_image={**KEYS, "n": {"S": "x"}}))
    assert b'"B":"AP98"' in line  # base64 text in the file

    # WHEN it is parsed
    entry = parse_entry("dlq.jsonl:1", line, SCHEMA)

    # THEN the key is back to bytes, and the id is the one the worker wrote the document under
    assert entry == Entry("dlq.jsonl:1", "400 mapper_parsing_exception", KEYS, document_id(SCHEMA, KEYS))


def test_attributes_outside_the_key_are_left_out(tmp_path):
    record = stream_record("MODIFY", keys={**KEYS, "other": {"S": "x"}})
    assert parse_entry("f:1", written_line(tmp_path, record), SCHEMA).key == KEYS


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"{not json", "not a JSON line"),
        (b"[1, 2]", "not a dead-letter object"),
        (json.dumps({"error": "e", "record": {"eventName": "INSERT"}}), "record has no dynamodb.Keys"),
        (json.dumps({"record": {"dynamodb": {"Keys": {"id": {"B": "AA=="}}}}}), "no N value for key attribute 'sk'"),
        (json.dumps({"record": {"dynamodb": {"Keys": {"id": {"S": "x"}, "sk": {"N": "1"}}}}}), "no B value"),
        (json.dumps({"record": {"dynamodb": {"Keys": {"id": {"B": "%%"}, "sk": {"N": "1"}}}}}), "not base64"),
        (json.dumps({"record": {"dynamodb": {"Keys": {"id": {"B": "AA=="}, "sk": {"N": "x"}}}}}), "not a number"),
    ],
)
def test_a_line_whose_keys_cannot_be_read_says_why(text, problem):
    entry = parse_entry("f:7", text, SCHEMA)
    assert entry.key is None and entry.doc_id is None
    assert problem in entry.problem


@pytest.mark.parametrize("number", ["9" * 4301, "1E+999999999", "-1E-999999999"])
def test_a_crafted_number_in_a_key_is_reported_not_raised(number):
    # GIVEN a letter whose numeric key no DynamoDB table could hold (Python cannot write the first
    # out as text; the others would take a billion digits)
    text = json.dumps({"record": {"dynamodb": {"Keys": {"id": {"B": "AA=="}, "sk": {"N": number}}}}})

    # WHEN it is parsed THEN it is an entry with a problem, at once
    entry = parse_entry("f:1", text, SCHEMA)
    assert entry.key is None and "not a number DynamoDB holds" in entry.problem


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
LETTER_SHAPED = st.fixed_dictionaries(
    {"record": st.fixed_dictionaries({"dynamodb": st.fixed_dictionaries({"Keys": JSON_VALUES})})}
)


@given(letter=JSON_VALUES | LETTER_SHAPED, raw=st.binary(max_size=64))
@settings(max_examples=300)
def test_no_line_makes_parsing_raise(letter, raw):
    # GIVEN any JSON value, or any bytes, as a line WHEN it is parsed THEN an entry, never an exception
    for text in (json.dumps(letter), raw):
        entry = parse_entry("f:1", text, SCHEMA)
        assert (entry.key is None) == (entry.problem is not None)


def test_blank_lines_are_skipped_and_numbering_follows_the_file(tmp_path):
    path = tmp_path / "dlq.jsonl"
    path.write_text('\n{"record": {}}\n\n{bad\n')
    (chunk,) = FileLetters(path).chunks()
    assert [letter.origin for letter in chunk] == ["dlq.jsonl:2", "dlq.jsonl:4"]


class FakeReconciler:
    """Answers GetItem from a dict of items keyed by id; counts reads."""

    schema = SCHEMA
    routing = one_index()

    def __init__(self, items):
        self.items = items
        self.reads = 0

    def get_item(self, key):
        self.reads += 1
        return NOW + 0.5, self.items.get(document_id(SCHEMA, key))


def entry(line, keys, error="400 boom"):
    return Entry(f"f:{line}", error, keys, document_id(SCHEMA, keys))


def test_each_item_is_read_once_and_restored_to_its_current_state():
    # GIVEN two entries of one item still in the table, one of an item since deleted, and an unreadable one
    gone = {"id": {"B": b"g"}, "sk": {"N": "2"}}
    item = {**KEYS, "n": {"N": "5"}}
    entries = [entry(1, KEYS), entry(2, gone), Entry("f:3", "", problem="record has no dynamodb.Keys"), entry(4, KEYS)]

    # WHEN redrive plans them
    reconciler = FakeReconciler({document_id(SCHEMA, KEYS): item})
    steps = plan(reconciler, iter(entries))

    # THEN the item is read once and indexed from its current state, the deleted one's document is deleted,
    # and the unreadable entry is kept in the report, needing attention
    assert reconciler.reads == 2
    assert [(s.entry.origin, s.action and action_name(s.action), s.needs_attention) for s in steps] == [
        ("f:1", "index", False),
        ("f:2", "delete", False),
        ("f:3", None, True),
        ("f:4", "index", False),
    ]
    assert steps[0].action.document == {"id": "AP98", "sk": 1.5, "n": 5}
    # the deleted item's document is replaced by a tombstone with its keys, at the read time
    assert steps[1].action.op == "index"
    assert steps[1].action.document == {"id": "Zw==", "sk": 2, "_cdc_deleted": True, "_cdc_deleted_at": int(NOW)}
    assert {s.action.version for s in steps if s.action} == {repair_version(NOW + 0.5)}


def test_the_dry_run_report_shows_each_entry_and_what_would_be_done():
    # GIVEN the plan for a dead letter of an item since deleted
    steps = plan(FakeReconciler({}), iter([entry(1, KEYS, error="400 mapper_parsing_exception: failed")]))

    # WHEN it is rendered as a dry run
    # THEN a person sees where it came from, the document, the action, why, and why it was dead-lettered
    assert render_rows(steps, applied=False).splitlines() == [
        "f:1  AP98|1.5  delete  not in the table: delete its document (was: 400 mapper_parsing_exception: failed)",
    ]
    tally = RedriveTally()
    tally.add(steps)
    assert tally.summary("dlq.jsonl", applied=False) == (
        "dry run: 1 dead letters in dlq.jsonl: 0 to index, 1 to delete, 0 unreadable; nothing was written "
        "(--apply redrives them)"
    )


class WritingReconciler(FakeReconciler):
    """Also answers writes: each document id gets the outcome given for it."""

    def __init__(self, items, outcomes):
        super().__init__(items)
        self.outcomes = outcomes
        self.written = []

    def apply(self, actions, stop):
        self.written += actions
        return [self.outcomes[action.doc_id] for action in actions]


def test_applying_writes_each_item_once_and_reports_every_entry():
    # GIVEN entries of three items, one of them twice; OpenSearch applies one, finds one stale, rejects one
    other, third = {"id": {"B": b"o"}, "sk": {"N": "1"}}, {"id": {"B": b"t"}, "sk": {"N": "1"}}
    ids = [document_id(SCHEMA, keys) for keys in (KEYS, other, third)]
    outcomes = {
        ids[0]: (Outcome.APPLIED, None),
        ids[1]: (Outcome.STALE, "409 version_conflict_engine_exception"),
        ids[2]: (Outcome.POISON, "400 mapper_parsing_exception: failed to parse"),
    }
    reconciler = WritingReconciler({}, outcomes)
    steps = plan(reconciler, iter([entry(1, KEYS), entry(2, other), entry(3, third), entry(4, KEYS)]))

    # WHEN they are applied
    steps = apply(reconciler, steps, threading.Event())

    # THEN one write per item, and every entry shows its item's outcome; only poison needs attention
    assert len(reconciler.written) == 3
    assert [(step.note, step.needs_attention) for step in steps] == [
        ("applied", False),
        ("stale: a newer change is already indexed", False),
        ("poison: still rejected: 400 mapper_parsing_exception: failed to parse", True),
        ("applied", False),
    ]
    tally = RedriveTally()
    tally.add(steps)
    assert tally.summary("f", applied=True) == "4 dead letters in f: 2 applied, 1 stale, 1 poison, 0 unreadable"
