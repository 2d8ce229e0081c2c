"""A stream record → the bulk action that projects it into the index."""

from __future__ import annotations

import pytest

from consumer.errors import RecordError
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.pipeline.projection import is_tombstone
from consumer.pipeline.projection_rules import ProjectionRules
from consumer.pipeline.records import StreamRecord
from consumer.pipeline.service_fields import DELETED_AT_FIELD, DELETED_FIELD
from tests.support.factories import single_action, stream_record

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
