"""Projection rules: event and pattern filters, TTL deletes, dropped and masked fields."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from consumer.doc_ids import KeyAttribute, KeySchema
from consumer.errors import RecordError
from consumer.projection import TTL_MARK_FIELD, ProjectionRules, is_tombstone, to_bulk_action
from consumer.records import StreamRecord
from tests.support.factories import stream_record

SCHEMA = KeySchema((KeyAttribute("pk", "S"),))
KEYS = {"pk": {"S": "user-1"}}
IMAGE = {
    "pk": {"S": "user-1"},
    "email": {"S": "a@example.com"},
    "card": {"M": {"number": {"S": "4111"}, "brand": {"S": "visa"}}},
    "status": {"S": "active"},
}


def action(raw, **rules):
    return to_bulk_action(StreamRecord.from_wire(raw), SCHEMA, 7, ProjectionRules(**rules))


def ttl_delete(old_image=IMAGE):
    return stream_record("REMOVE", keys=KEYS, old_image=old_image, ttl=True)


def test_by_default_everything_is_projected_as_it_is():
    assert action(stream_record("INSERT", keys=KEYS, new_image=IMAGE)).document["card"]["number"] == "4111"
    assert is_tombstone(action(ttl_delete()).document)


def test_event_names_and_patterns_filter_records():
    insert = stream_record("INSERT", keys=KEYS, new_image=IMAGE)
    assert action(insert, event_names=frozenset({"MODIFY", "REMOVE"})) is None
    closed_only = ({"dynamodb": {"NewImage": {"status": {"S": ["closed"]}}}},)
    assert action(insert, patterns=closed_only) is None
    assert action(insert, patterns=({"eventName": ["INSERT"]},)).op == "index"


def test_ttl_deletes_can_be_skipped_or_marked_while_user_deletes_still_delete():
    user_delete = stream_record("REMOVE", keys=KEYS, old_image=IMAGE)
    assert action(ttl_delete(), ttl_deletes="skip") is None
    assert is_tombstone(action(user_delete, ttl_deletes="skip").document)
    marked = action(ttl_delete(), ttl_deletes="mark")
    assert (marked.op, marked.document[TTL_MARK_FIELD], marked.document["email"]) == ("index", True, "a@example.com")
    assert is_tombstone(action(user_delete, ttl_deletes="mark").document)
    assert not is_tombstone(marked.document)


def test_marking_a_ttl_delete_without_its_old_image_is_poison():
    raw = ttl_delete()
    del raw["dynamodb"]["OldImage"]
    with pytest.raises(RecordError, match="NEW_AND_OLD_IMAGES"):
        action(raw, ttl_deletes="mark")


def test_fields_are_dropped_and_masked_by_dotted_path():
    document = action(
        stream_record("MODIFY", keys=KEYS, new_image=IMAGE),
        drop_fields=("status", "no.such.path"),
        mask_fields=("email", "card.number"),
    ).document
    assert "status" not in document
    assert document["email"] == "sha256:" + hashlib.sha256(orjson.dumps("a@example.com")).hexdigest()
    assert document["card"] == {"number": "sha256:" + hashlib.sha256(b'"4111"').hexdigest(), "brand": "visa"}
