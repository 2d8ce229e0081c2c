"""A stream record → the bulk action that projects it into the index."""

from __future__ import annotations

import pytest

from consumer.doc_ids import KeyAttribute, KeySchema
from consumer.errors import RecordError
from consumer.projection import to_bulk_action
from consumer.records import StreamRecord
from tests.support.factories import stream_record

SCHEMA = KeySchema((KeyAttribute("pk", "S"), KeyAttribute("sk", "N")))
KEYS = {"pk": {"S": "customer-1"}, "sk": {"N": "2.50"}}


@pytest.mark.parametrize("event", ["INSERT", "MODIFY"])
def test_an_upsert_indexes_the_new_image_as_the_whole_document(event):
    # GIVEN an INSERT or MODIFY
    image = {**KEYS, "total": {"N": "19.99"}, "tags": {"SS": ["b", "a"]}}
    record = StreamRecord.from_wire(stream_record(event, keys=KEYS, new_image=image))

    # WHEN it is projected at version 42
    action = to_bulk_action(record, SCHEMA, 42)

    # THEN it indexes the converted image under the key's id with that version
    assert (action.op, action.doc_id, action.version) == ("index", "customer-1|2.5", 42)
    assert action.document == {"pk": "customer-1", "sk": 2.5, "total": 19.99, "tags": ["a", "b"]}
    assert action.record is record


@pytest.mark.parametrize("ttl", [False, True])
def test_a_remove_deletes_the_document_with_its_version(ttl):
    # GIVEN a REMOVE (user delete or TTL expiry) WHEN projected THEN a delete of that id, no document
    record = StreamRecord.from_wire(stream_record("REMOVE", keys=KEYS, ttl=ttl))
    action = to_bulk_action(record, SCHEMA, 43)
    assert (action.op, action.doc_id, action.version, action.document) == ("delete", "customer-1|2.5", 43, None)


def test_a_record_whose_keys_do_not_fit_the_schema_is_poison():
    # GIVEN a record whose range key has the wrong type WHEN projected THEN RecordError (dead letter)
    record = StreamRecord.from_wire(stream_record(keys={"pk": {"S": "a"}, "sk": {"S": "2"}}))
    with pytest.raises(RecordError, match="sk"):
        to_bulk_action(record, SCHEMA, 1)
