"""Projection rules: state and event filters, TTL deletes, kept, dropped and masked fields."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from consumer.errors import RecordError
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.pipeline.projection import is_tombstone
from consumer.pipeline.projection_rules import ProjectionRules
from consumer.pipeline.records import ImageText, StreamRecord
from consumer.pipeline.service_fields import TTL_MARK_FIELD
from tests.support.factories import single_action, stream_record

SCHEMA = KeySchema((KeyAttribute("pk", "S"),))
KEYS = {"pk": {"S": "user-1"}}
IMAGE = {
    "pk": {"S": "user-1"},
    "email": {"S": "a@example.com"},
    "card": {"M": {"number": {"S": "4111"}, "brand": {"S": "visa"}}},
    "status": {"S": "active"},
}


def action(raw, **rules):
    return single_action(StreamRecord.from_wire(raw), SCHEMA, 7, ProjectionRules(**rules))


def ttl_delete(old_image=IMAGE):
    return stream_record("REMOVE", keys=KEYS, old_image=old_image, ttl=True)


def test_by_default_everything_is_projected_as_it_is():
    assert action(stream_record("INSERT", keys=KEYS, new_image=IMAGE)).document["card"]["number"] == "4111"
    assert is_tombstone(action(ttl_delete()).document)


ACTIVE = ({"dynamodb": {"NewImage": {"status": {"S": ["active"]}}}},)
CLOSED = {**IMAGE, "status": {"S": "closed"}}


def test_in_events_mode_records_that_do_not_match_are_dropped_as_lambda_does():
    insert = stream_record("INSERT", keys=KEYS, new_image=IMAGE)
    assert action(insert, filter_mode="events", event_names=frozenset({"MODIFY", "REMOVE"})) is None
    closed_only = ({"dynamodb": {"NewImage": {"status": {"S": ["closed"]}}}},)
    assert action(insert, filter_mode="events", patterns=closed_only) is None
    assert action(insert, filter_mode="events", patterns=({"eventName": ["INSERT"]},)).op == "index"
    # a REMOVE has no NewImage: an event pattern on it drops every delete (why state mode is the default)
    assert action(stream_record("REMOVE", keys=KEYS, old_image=IMAGE), filter_mode="events", patterns=ACTIVE) is None


@pytest.mark.parametrize(
    ("event", "old", "new", "written"),
    [
        ("INSERT", None, IMAGE, "document"),  # matching: indexed
        ("INSERT", None, CLOSED, None),  # never matched, did not exist before: nothing to do
        ("MODIFY", IMAGE, CLOSED, "tombstone"),  # stopped matching: removed from the index
        ("MODIFY", CLOSED, IMAGE, "document"),  # started matching: indexed
        ("MODIFY", CLOSED, CLOSED, None),  # did not match before either: cannot be in the index
        ("MODIFY", None, CLOSED, "tombstone"),  # NEW_IMAGE stream: unknown before, so removed to be safe
        ("REMOVE", IMAGE, None, "tombstone"),  # judged on its OldImage: it matched, so it goes
        ("REMOVE", CLOSED, None, None),  # it never was in the index
        ("REMOVE", None, None, "tombstone"),  # unknown: removed to be safe
    ],
)
def test_in_state_mode_each_change_moves_the_index_toward_the_filtered_table(event, old, new, written):
    # GIVEN an index that should hold the active items only, and one change
    record = stream_record(event, keys=KEYS, new_image=new, old_image=old, view_type="NEW_AND_OLD_IMAGES")
    if old is None and event != "INSERT":
        record["dynamodb"].pop("OldImage", None)
    # WHEN it is projected THEN it writes the new state, a tombstone, or nothing, as the table needs
    result = action(record, patterns=ACTIVE)
    outcome = None if result is None else ("tombstone" if is_tombstone(result.document) else "document")
    assert outcome == written


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


KEY = b"0123456789abcdef-secret"


def hmac_of(value) -> str:
    return "hmac-sha256:" + hmac.new(KEY, orjson.dumps(value), hashlib.sha256).hexdigest()


def test_fields_are_dropped_and_masked_with_a_key_by_path_into_maps():
    document = action(
        stream_record("MODIFY", keys=KEYS, new_image=IMAGE),
        drop_fields=("status", "no.such.path"),
        mask_fields=("email", "card.number"),
        mask_key=KEY,
    ).document
    assert "status" not in document
    assert document["email"] == hmac_of("a@example.com")
    assert document["card"] == {"number": hmac_of("4111"), "brand": "visa"}


def test_unkeyed_masking_is_plain_sha256_and_only_for_those_who_chose_it():
    document = action(stream_record("MODIFY", keys=KEYS, new_image=IMAGE), mask_fields=("email",)).document
    assert document["email"] == "sha256:" + hashlib.sha256(orjson.dumps("a@example.com")).hexdigest()


def test_paths_reach_into_lists_of_maps_and_lists_of_values():
    image = {
        "pk": {"S": "user-1"},
        "contacts": {"L": [{"M": {"email": {"S": "x@example.com"}, "kind": {"S": "work"}}}, {"S": "not a map"}]},
        "phones": {"SS": ["+100", "+200"]},
    }
    document = action(
        stream_record("MODIFY", keys=KEYS, new_image=image),
        mask_fields=("contacts[].email", "phones[]"),
        mask_key=KEY,
    ).document
    assert document["contacts"] == [{"email": hmac_of("x@example.com"), "kind": "work"}, "not a map"]
    assert document["phones"] == [hmac_of("+100"), hmac_of("+200")]


def test_an_allow_list_keeps_only_the_named_fields_and_always_the_keys():
    image = {**IMAGE, "lines": {"L": [{"M": {"sku": {"S": "a"}, "price": {"N": "3"}}}]}}
    document = action(
        stream_record("MODIFY", keys=KEYS, new_image=image),
        include_fields=("status", "card.brand", "lines[].sku"),
        key_names=frozenset({"pk"}),
    ).document
    assert document == {"pk": "user-1", "status": "active", "card": {"brand": "visa"}, "lines": [{"sku": "a"}]}


def test_an_events_pattern_on_the_old_image_judges_it_when_the_answer_left_it_as_text():
    """A worker reads each page's old images as text (``raw_records.read_answer``): an events pattern
    naming ``dynamodb.OldImage`` must see the image it spells, not drop every record for want of one."""
    was_active = ({"dynamodb": {"OldImage": {"status": {"S": ["active"]}}}},)
    for old, kept in ((IMAGE, True), (CLOSED, False)):
        raw = stream_record("MODIFY", keys=KEYS, new_image=CLOSED, old_image=old, wire_timestamp=True)
        raw["dynamodb"]["OldImage"] = ImageText(orjson.dumps(old))
        assert (action(raw, filter_mode="events", patterns=was_active) is not None) is kept
