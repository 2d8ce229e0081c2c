"""Repairs (docs/versioning.md, "Repairs"): the repair version loses to every change made after the
read, so the index still converges to the table; drift is exactly what differs."""

from __future__ import annotations

import math
from decimal import Decimal

import orjson
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from consumer.pipeline.attributes import item_to_json
from consumer.pipeline.bulk import encode_action
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema, document_id
from consumer.pipeline.projection import indexable
from consumer.pipeline.projection_rules import ProjectionRules
from consumer.pipeline.records import StreamRecord
from consumer.pipeline.repair import (
    Drift,
    RepairAction,
    compare_page,
    differing_fields,
    extra_ids,
    key_fields,
    key_of_document,
    plan_repair,
    project_item,
    repair_version,
    restore,
    restore_item,
    same_json,
)
from consumer.pipeline.versioning import COUNTER_BITS, MAX_SECOND, MAX_VERSION, next_version
from tests.support.bulk_bodies import bulk_of
from tests.support.factories import one_index, single_action, stream_record
from tests.support.version_clock import VersionClock

NOW = 1_700_000_000
SCHEMA = KeySchema((KeyAttribute("pk", "S"), KeyAttribute("sk", "N")))

read_times = st.floats(min_value=1, max_value=MAX_SECOND, allow_nan=False)
clock_values = st.integers(0, MAX_VERSION // 2)


@given(read_at=read_times, delay=st.floats(min_value=0, max_value=10**7), previous=clock_values)
def test_a_change_made_after_the_read_always_beats_the_repair(read_at, delay, previous):
    # GIVEN a read at read_at and a change made at t ≥ read_at, after any clock value on its lineage
    change_second = math.floor(read_at + delay)
    assume(change_second <= MAX_SECOND)

    # WHEN the change gets its version
    version = next_version(previous, change_second)

    # THEN it is above the repair's version: OpenSearch keeps the change, never the older repair
    assert version > repair_version(read_at)


@given(read_at=read_times, previous=clock_values)
def test_a_change_from_the_same_second_before_the_read_wins_too(read_at, previous):
    # A change in the read's second, made before the read: the repair is reported stale (409).
    assert next_version(previous, math.floor(read_at)) > repair_version(read_at)


@given(read_at=read_times, seconds_before=st.integers(1, 10**6), previous=clock_values)
def test_the_repair_beats_changes_from_earlier_seconds(read_at, seconds_before, previous):
    # GIVEN a change from an earlier second, on a clock that has not passed the repair version
    second = math.floor(read_at) - seconds_before
    assume(second >= 0 and previous < repair_version(read_at))

    # THEN the repair's state (which includes that change) replaces it
    assert next_version(previous, second) <= repair_version(read_at)


@st.composite
def histories(draw):
    """Change times of one item (time order), a read between two of them, and where the repair lands."""
    times = sorted(draw(st.lists(st.floats(NOW, NOW + 5, allow_nan=False), min_size=1, max_size=12)))
    read_after = draw(st.integers(0, len(times)))  # the read sees the first read_after changes
    low = times[read_after - 1] if read_after else NOW - 1
    high = times[read_after] if read_after < len(times) else NOW + 6
    read_at = draw(st.floats(low, high, allow_nan=False))
    start = draw(st.sampled_from([0, (NOW - 10) << COUNTER_BITS, ((NOW + 3) << COUNTER_BITS) + 7]))
    return times, read_after, read_at, start, draw(st.integers(0, len(times)))


@given(histories())
def test_the_index_ends_at_the_tables_state_wherever_the_repair_lands(history):
    # GIVEN an item's changes with their lineage versions, and a repair of the state read at read_at
    times, read_after, read_at, start, repair_position = history
    clock = VersionClock(start)
    writes = [(clock.tick(math.floor(t)), state) for state, t in enumerate(times, start=1)]
    writes.insert(repair_position, (repair_version(read_at), read_after))  # state 0: the item did not exist

    # WHEN OpenSearch applies them in that order, keeping only higher external versions
    stored_version, stored_state = -1, None
    for version, state in writes:
        if version > stored_version:
            stored_version, stored_state = version, state

    # THEN it holds the item's last state, whether the repair was applied or stale
    assert stored_state == len(times)


def test_repair_version_is_just_below_the_read_seconds_first_version():
    assert repair_version(NOW + 0.999) == (NOW << COUNTER_BITS) - 1
    assert repair_version(NOW) < next_version(0, NOW)
    with pytest.raises(ValueError):
        repair_version(0.5)
    with pytest.raises(ValueError):
        repair_version(MAX_SECOND + 1)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)  # the number policy's integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=6,
)
documents = st.dictionaries(st.text(max_size=4), json_values, max_size=4)


@st.composite
def drifted(draw):
    """Expected documents of a page, and live documents drifted from them in known ways."""
    expected = draw(st.dictionaries(st.text(min_size=1, max_size=6), documents, max_size=8))
    ids = list(expected)
    missing = draw(st.sets(st.sampled_from(ids))) if ids else set()
    kept = [doc_id for doc_id in ids if doc_id not in missing]
    changed = draw(st.sets(st.sampled_from(kept))) if kept else set()
    others = draw(st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda i: i not in expected), documents))
    indexed, fields = dict(others), {}
    for doc_id in kept:
        document = dict(expected[doc_id])
        if doc_id in changed:
            field = draw(st.text(max_size=4))
            document[field] = ["changed", document.get(field)]  # never equal to what was there
            fields[doc_id] = (field,)
        indexed[doc_id] = document
    drift = Drift(
        tuple(doc_id for doc_id in ids if doc_id in missing),
        (),
        tuple((doc_id, fields[doc_id]) for doc_id in ids if doc_id in fields),
    )
    return expected, indexed, drift


@given(drifted())
def test_a_page_compared_with_its_live_documents_gives_exactly_its_drift(case):
    # GIVEN a page of expected documents and live documents (of its ids and others) drifted from it
    expected, indexed, drift = case

    # WHEN they are compared
    # THEN the drift is exactly the missing and changed documents, with the changed top-level fields,
    # in the page's order; documents of other ids are left to the index pass
    assert compare_page(expected, indexed) == drift


@given(st.dictionaries(st.text(max_size=6), documents))
def test_equal_documents_have_no_drift(expected):
    copy = orjson.loads(orjson.dumps(expected))  # what a round trip through the index gives back
    assert compare_page(expected, copy) == Drift()
    assert not Drift().found


def test_a_document_is_extra_unless_its_key_fields_name_an_item_the_index_should_hold():
    # GIVEN live documents, and the items that exist among those their key fields name
    kept = {"pk": "kept", "sk": 1}
    documents = {
        "kept|1": kept,
        "gone|1": {"pk": "gone", "sk": 1},
        "filtered|1": {"pk": "filtered", "sk": 1},
        "elsewhere|9": {"pk": "kept", "sk": 1},  # key fields of another id
        "keyless": {"name": "no key fields"},
        "wrong-type|1": {"pk": "wrong-type", "sk": "1"},
    }
    items = {
        "kept|1": {"pk": {"S": "kept"}, "sk": {"N": "1"}},
        "filtered|1": {"pk": {"S": "filtered"}, "sk": {"N": "1"}, "status": {"S": "draft"}},
    }
    rules = ProjectionRules(patterns=({"dynamodb": {"NewImage": {"status": {"S": ["live"]}}}},), filter_mode="state")

    # THEN every document but the one of an existing item the filter keeps is extra
    assert extra_ids(SCHEMA, "orders", {"kept|1": kept}, items, one_index()) == []
    assert extra_ids(SCHEMA, "orders", documents, items, one_index()) == [
        "gone|1",
        "elsewhere|9",
        "keyless",
        "wrong-type|1",
    ]
    assert "filtered|1" in extra_ids(SCHEMA, "orders", documents, items, one_index(rules))
    # AND a document in an index its item's route does not write is extra there
    assert extra_ids(SCHEMA, "customers", {"kept|1": kept}, items, one_index()) == ["kept|1"]


def test_the_key_of_a_document_is_read_back_from_its_key_fields():
    schema = KeySchema((KeyAttribute("pk", "B"), KeyAttribute("sk", "N")))
    assert key_of_document(schema, {"pk": "AAE=", "sk": 1.5, "x": 1}) == {"pk": {"B": b"\x00\x01"}, "sk": {"N": "1.5"}}
    assert key_of_document(schema, {"pk": "not base64!", "sk": 1}) is None
    assert key_of_document(schema, {"pk": "AAE=", "sk": True}) is None
    assert key_fields(schema, {"pk": "AAE=", "sk": 2, "x": 1}) == {"pk": "AAE=", "sk": 2}


def test_values_of_another_json_type_differ():
    assert not same_json(True, 1) and not same_json("1", 1) and not same_json([1], [True])
    assert same_json({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})
    assert differing_fields({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2.5, "d": 3}) == ("b", "c", "d")


def test_numbers_compare_by_their_exact_decimal_value():
    # GIVEN a number written from the table and read back from the index with exact parsing
    # THEN equal values compare equal whatever the Python type; a precision loss is a difference
    assert same_json(12.5, Decimal("12.5")) and same_json(7, Decimal("7")) and same_json(0.1, Decimal("0.1"))
    big = Decimal("1.2345678901234567890123456789012345678")
    assert same_json(big, Decimal("1.2345678901234567890123456789012345678"))
    assert not same_json(big, float(big))


def test_the_plan_indexes_missing_and_different_documents_and_tombstones_extra_ones():
    # GIVEN drift in every kind
    expected = {"m": {"x": 1}, "d": {"x": 2}, "same": {"x": 3}}
    drift = Drift(missing=("m",), extra=("e",), different=(("d", ("x",)),))

    # WHEN a repair is planned at one version
    # THEN each drifted id gets the table's state at that version; a gone item a tombstone deleted at
    # the read second the version stands for (repair_version(t) + 1 = t · 2³¹)
    read_second = 1_700_000_000
    version = repair_version(read_second + 0.25)
    actions = plan_repair(drift, expected, version)
    assert actions == [
        RepairAction("m", version, "index", {"x": 1}),
        RepairAction("d", version, "index", {"x": 2}),
        RepairAction("e", version, "index", {"_cdc_deleted": True, "_cdc_deleted_at": read_second}),
    ]
    assert bulk_of("orders", actions[1:]).splitlines() == [
        b'{"index":{"_index":"orders","_id":"d","version":%d,"version_type":"external"}}' % version,
        b'{"x":2}',
        b'{"index":{"_index":"orders","_id":"e","version":%d,"version_type":"external"}}' % version,
        b'{"_cdc_deleted":true,"_cdc_deleted_at":%d}' % read_second,
    ]


ITEM = {
    "pk": {"S": "a|b"},
    "sk": {"N": "1.50"},
    "email": {"S": "a@example.com"},
    "card": {"M": {"number": {"S": "4111"}, "brand": {"S": "visa"}}},
    "blob": {"B": b"\x00\x01"},
}


def test_an_item_is_projected_as_the_worker_projects_a_change_to_it():
    # GIVEN no rules: the document is the item as JSON, under its key's id
    doc_id, projected = project_item(SCHEMA, ITEM, one_index())
    assert (doc_id, projected.document, projected.index) == (document_id(SCHEMA, ITEM), item_to_json(ITEM), "orders")

    # AND with dropped and masked fields: exactly what the worker writes for a change to this state
    rules = ProjectionRules(drop_fields=("card.number",), mask_fields=("email",))
    keys = {"pk": ITEM["pk"], "sk": ITEM["sk"]}
    worker = single_action(StreamRecord.from_wire(stream_record("INSERT", keys=keys, new_image=ITEM)), SCHEMA, 1, rules)
    doc_id, projected = project_item(SCHEMA, ITEM, one_index(rules))
    assert (doc_id, indexable(projected.document)) == (worker.doc_id, worker.document)
    assert worker.document["email"].startswith("sha256:") and "number" not in worker.document["card"]


@settings(max_examples=150, deadline=None)
@given(
    extra=st.dictionaries(
        st.sampled_from(["email", "note", "_id", "_cdc_deleted", "total"]),
        st.one_of(
            st.builds(lambda text: {"S": text}, st.text(max_size=5)),
            st.builds(
                lambda number: {"N": str(number)},
                # numbers DynamoDB holds: at most 38 significant digits
                st.integers(-(10**38) + 1, 10**38 - 1)
                | st.decimals(-(10**35), 10**35, allow_nan=False, allow_infinity=False, places=2),
            ),
            st.builds(lambda data: {"B": data}, st.binary(max_size=4)),
        ),
        max_size=4,
    ),
    rules=st.sampled_from([ProjectionRules(), ProjectionRules(mask_fields=("email",), drop_fields=("note",))]),
)
@example(extra={"_id": {"S": "x"}}, rules=ProjectionRules())
def test_an_item_restored_as_it_is_writes_what_restore_writes_of_its_projection(extra, rules):
    # GIVEN an item, with reserved attribute names now and then, with and without field rules
    item = {"pk": ITEM["pk"], "sk": ITEM["sk"], **extra}
    routing = one_index(rules)

    # WHEN the backfill makes its write (the text written straight from the item where it can)
    action = restore_item(SCHEMA, item, routing, 77)

    # THEN the same _bulk lines and document as restore() of the item's projected document
    doc_id, projected = project_item(SCHEMA, item, routing)
    expected = restore(doc_id, projected.document, 77, index=projected.index)
    assert encode_action("orders", action) == encode_action("orders", expected)
    assert (action.doc_id, action.index, action.document) == (expected.doc_id, expected.index, expected.document)
    as_it_is = rules == ProjectionRules() and not {"_id", "_cdc_deleted"} & set(extra)
    assert (action.source is not None) == as_it_is
