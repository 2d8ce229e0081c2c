"""A stream record → the bulk action that projects it into the index."""

from __future__ import annotations

import base64
from dataclasses import replace

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer.errors import RecordError
from consumer.pipeline.attributes import item_to_json
from consumer.pipeline.bulk import encode_action
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.pipeline.projection import indexable, is_tombstone, to_bulk_actions
from consumer.pipeline.projection_rules import ProjectionRules
from consumer.pipeline.records import ImageText, StreamRecord
from consumer.pipeline.service_fields import DELETED_AT_FIELD, DELETED_FIELD
from consumer.shards.raw_records import read_answer
from tests.support.factories import one_index, single_action, stream_record
from tests.support.strategies import number_texts

SCHEMA = KeySchema((KeyAttribute("pk", "S"), KeyAttribute("sk", "N")))
KEYS = {"pk": {"S": "customer-1"}, "sk": {"N": "2.50"}}


@pytest.mark.parametrize("event", ["INSERT", "MODIFY"])
def test_an_upsert_indexes_the_new_image_as_the_whole_document(event):
    # GIVEN an INSERT or MODIFY
    image = {**KEYS, "total": {"N": "19.99"}, "tags": {"SS": ["b", "a"]}}
    record = StreamRecord.from_wire(stream_record(event, keys=KEYS, new_image=image))

    # WHEN it is projected at version 42
    action = single_action(record, SCHEMA, 42)

    # THEN it indexes the converted image under the key's id with that version
    assert (action.op, action.doc_id, action.version) == ("index", "customer-1|2.5", 42)
    assert action.document == {"pk": "customer-1", "sk": 2.5, "total": 19.99, "tags": ["a", "b"]}
    assert action.record is record


@pytest.mark.parametrize("ttl", [False, True])
def test_a_remove_indexes_a_tombstone_with_its_version(ttl):
    # GIVEN a REMOVE (user delete or TTL expiry)
    record = StreamRecord.from_wire(stream_record("REMOVE", keys=KEYS, ttl=ttl))

    # WHEN projected at version 43
    action = single_action(record, SCHEMA, 43)

    # THEN it indexes a tombstone of that id at that version (a document OpenSearch never garbage-collects,
    # unlike a delete's version): the keys, the flag the read alias filters on, and the deletion second
    assert (action.op, action.doc_id, action.version) == ("index", "customer-1|2.5", 43)
    assert action.document == {
        "pk": "customer-1",
        "sk": 2.5,
        DELETED_FIELD: True,
        DELETED_AT_FIELD: record.approximate_second,
    }
    assert is_tombstone(action.document)


def test_a_tombstone_hides_masked_and_dropped_key_attributes_like_documents_do():
    record = StreamRecord.from_wire(stream_record("REMOVE", keys=KEYS))
    action = single_action(record, SCHEMA, 43, ProjectionRules(drop_fields=("sk",), mask_fields=("pk",)))
    assert "sk" not in action.document and action.document["pk"].startswith("sha256:")
    assert not is_tombstone({"pk": "x"}) and not is_tombstone(None)


def test_a_record_whose_keys_do_not_fit_the_schema_is_poison():
    # GIVEN a record whose range key has the wrong type WHEN projected THEN RecordError (dead letter)
    record = StreamRecord.from_wire(stream_record(keys={"pk": {"S": "a"}, "sk": {"S": "2"}}))
    with pytest.raises(RecordError, match="sk"):
        single_action(record, SCHEMA, 1)


# Attribute values of every kind, under names some of which OpenSearch or the service reserves
VALUES = st.one_of(
    st.builds(lambda text: {"S": text}, st.text(max_size=8)),
    st.builds(lambda text: {"N": text}, number_texts()),
    st.builds(lambda flag: {"BOOL": flag}, st.booleans()),
    st.builds(lambda members: {"NS": members}, st.lists(number_texts(), max_size=3, unique=True)),
    st.builds(lambda members: {"SS": members}, st.lists(st.text(max_size=3), max_size=3, unique=True)),
    st.builds(lambda data: {"B": data}, st.binary(max_size=6)),
)
ITEMS = st.dictionaries(
    st.one_of(st.text(max_size=6), st.sampled_from(["_id", "_source", DELETED_FIELD, "_cdc_typed"])),
    st.recursive(
        VALUES, lambda inner: st.builds(lambda m: {"M": m}, st.dictionaries(st.text(max_size=4), inner, max_size=3))
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(image=ITEMS, event=st.sampled_from(["INSERT", "MODIFY"]))
@example(image={"total": {"N": "19.990"}, "tags": {"SS": ["b", "a"]}}, event="INSERT")
@example(image={"_id": {"S": "x"}, "_cdc_deleted": {"BOOL": True}}, event="MODIFY")
def test_an_item_written_as_it_is_makes_the_lines_of_its_built_document(image, event):
    # GIVEN an upsert of any item, with reserved attribute names now and then
    record = StreamRecord.from_wire(stream_record(event, keys=KEYS, new_image={**image, **KEYS}))

    # WHEN it is projected (its JSON text written straight from the item where nothing reshapes it)
    action = single_action(record, SCHEMA, 7)

    # THEN its _bulk lines and its document are those of the document built the long way
    built = replace(action, content=indexable(item_to_json(record.new_image)))
    assert encode_action("orders", action) == encode_action("orders", built)
    assert action.document == built.document
    reserved = {"_id", "_source", DELETED_FIELD, "_cdc_typed"} & set(image)
    assert (action.source is None) == bool(reserved)  # only reserved names take the long way here


def _wire(image: dict) -> dict:
    """An image as GetRecords' JSON spells it: binary as base64 text."""
    return orjson.loads(orjson.dumps(image, default=lambda data: base64.b64encode(data).decode()))


def _projected(raw: dict, rules: ProjectionRules) -> list[bytes] | tuple[str, str]:
    try:
        actions = to_bulk_actions(StreamRecord.from_wire(raw), SCHEMA, 7, one_index(rules))
    except RecordError as exc:
        return ("poison", str(exc))
    return [encode_action("orders", action) for action in actions]


WAS_ACTIVE = ({"dynamodb": {"OldImage": {"status": {"S": ["active"]}}}},)
IS_ACTIVE = ({"dynamodb": {"NewImage": {"status": {"S": ["active"]}}}},)
RULES = [
    ProjectionRules(),
    ProjectionRules(patterns=IS_ACTIVE),
    ProjectionRules(patterns=WAS_ACTIVE, filter_mode="events"),
    ProjectionRules(ttl_deletes="mark"),
    ProjectionRules(include_fields=("status",), key_names=frozenset(KEYS)),
]


@settings(max_examples=300, deadline=None)
@given(
    image=ITEMS,
    old=ITEMS,
    status=st.sampled_from(["active", "closed"]),
    event=st.sampled_from(["INSERT", "MODIFY", "REMOVE"]),
    ttl=st.booleans(),
    rules=st.sampled_from(RULES),
)
def test_a_record_read_with_its_images_as_text_projects_as_the_record_parsed_whole(
    image, old, status, event, ttl, rules
):
    # GIVEN any record, with its images as a worker reads them (left as text) and parsed whole
    new_image, old_image = {**_wire(image), **KEYS}, {**_wire(old), "status": {"S": status}, **KEYS}
    raw = stream_record(event, keys=KEYS, new_image=new_image, old_image=old_image, ttl=ttl, wire_timestamp=True)
    body = orjson.dumps({"Records": [raw]})
    as_read = read_answer("GetRecords", body, "application/x-amz-json-1.0")["Records"][0]
    assert any(isinstance(image, ImageText) for image in as_read["dynamodb"].values())
    # WHEN each is projected, under filters, a TTL mark, field rules or none
    # THEN the same _bulk lines, or the same poison
    assert _projected(as_read, rules) == _projected(orjson.loads(body)["Records"][0], rules)
