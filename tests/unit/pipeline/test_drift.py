"""Type drift: which attributes an index mapping cannot take, and the typed form they go to."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.pipeline.drift import (
    TYPED_FIELD,
    conflicting_attributes,
    divert,
    named_attributes,
    natural_document,
    natural_value,
    reserved_attributes,
    typed_value,
)
from consumer.pipeline.mapping import SCALAR_FIELD

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
names = st.text(min_size=1, max_size=6)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=4),
    max_leaves=20,
)

OBJECT = {"properties": {"city": SCALAR_FIELD}}
MAPPING = {"properties": {"pk": SCALAR_FIELD, "address": OBJECT, "total": SCALAR_FIELD}}


@given(json_values)
@settings(max_examples=300)
def test_the_typed_form_gives_back_exactly_the_value(value):
    # GIVEN any JSON value WHEN put in the typed form and back THEN it is the same value
    assert natural_value(typed_value(value)) == value


@given(st.dictionaries(names, json_values, max_size=6), st.data())
def test_diverting_any_attributes_can_be_undone(document, data):
    # GIVEN a document and any of its attributes WHEN they are diverted and the document read back
    chosen = data.draw(st.lists(st.sampled_from(sorted(document)), unique=True) if document else st.just([]))
    diverted = divert(document, chosen)
    # THEN the diverted attributes left the top level, and natural_document restores the document
    assert not set(chosen) & (set(diverted) - {TYPED_FIELD})
    assert natural_document(diverted) == document


def test_typed_form_names_each_values_kind_and_escapes_dots():
    assert typed_value({"a.b": [1, "x", None, True, Decimal("1.5")]}) == {
        "m": {"a%2Eb": {"l": [{"n": 1}, {"s": "x"}, {"null": True}, {"bool": True}, {"n": Decimal("1.5")}]}}
    }
    assert natural_value({"m": {"100%25%2E": {"s": "y"}}}) == {"100%.": "y"}


def test_a_map_where_the_index_has_a_value_conflicts_and_so_does_the_reverse():
    # GIVEN an index whose "total" holds values and whose "address" is an object
    # WHEN a document brings a map as "total" and a string as "address"
    # THEN both attributes are named, the key never
    document = {"pk": "a", "total": {"amount": 1}, "address": "Paris"}
    assert conflicting_attributes(document, MAPPING, protected={"pk"}) == ["total", "address"]


def test_values_of_any_scalar_kind_fit_the_managed_scalar_mapping():
    # GIVEN the managed policy's field (keyword + text + number) WHEN numbers, strings, booleans,
    # nulls and lists of them arrive THEN nothing conflicts: the mapping does not depend on the kind
    document = {"total": [1, "x", True, None, Decimal("1E+30"), 2.5], "address": {"city": 7}}
    assert conflicting_attributes(document, MAPPING) == []


def test_a_list_mixing_maps_and_values_conflicts_with_itself():
    # GIVEN a new attribute (not mapped yet) that mixes values and maps WHEN judged THEN it is named
    assert conflicting_attributes({"tags": [1, {"a": 2}]}, MAPPING) == ["tags"]
    assert conflicting_attributes({"x": {"a": 1, "a.b": 2}}, MAPPING) == ["x"]
    assert set(conflicting_attributes({"x.y": 1, "x": {"y": {"z": 1}}}, MAPPING)) == {"x", "x.y"}


@pytest.mark.parametrize(
    ("field_type", "value", "fits"),
    [
        ("long", 12, True),
        ("long", 12.5, False),  # no silent truncation to 12
        ("long", Decimal("1E+30"), False),
        ("integer", 2**31, False),
        ("double", Decimal("1.5"), True),
        ("double", "12", False),  # never coerced from a string
        ("double", True, False),
        ("boolean", "true", False),
        ("keyword", 12.5, True),
        ("date", "2024-01-01", True),
        ("flat_object", "x", False),
    ],
)
def test_a_user_mapped_field_takes_only_values_it_holds_exactly(field_type, value, fits):
    mapping = {"properties": {"f": {"type": field_type}}}
    assert (conflicting_attributes({"f": value}, mapping) == []) is fits


def test_a_strict_mapping_names_unmapped_attributes_and_a_disabled_object_takes_anything():
    mapping = {"dynamic": "strict", "properties": {"known": SCALAR_FIELD, "blob": {"type": "object", "enabled": False}}}
    assert conflicting_attributes({"known": 1, "unknown": 2, "blob": "x"}, mapping) == ["unknown"]


def test_the_attribute_opensearch_names_in_a_refusal_is_found_and_a_protected_key_never():
    # GIVEN a date field refusing a value's format (which only OpenSearch can judge)
    error = "400 mapper_parsing_exception: failed to parse field [when] of type [date] in document with id 'a'"
    # WHEN the error is read THEN the named attribute is found; a protected key never is
    assert named_attributes({"pk": "a", "when": "soon"}, error, {"pk"}) == ["when"]
    assert named_attributes({"pk": "a"}, "failed to parse field [pk]", {"pk"}) == []
    race = "400 illegal_argument_exception: mapper [total] cannot be changed from type [float] to [long]"
    assert named_attributes({"total": 1, "a.b": 2}, race) == ["total"]
    assert named_attributes({"a.b": {"c": 1}}, "failed to parse field [a.b.c] of type [long]") == ["a.b"]
    # AND a refusal that names no field (e.g. the total fields limit) explains nothing, even when an
    # attribute happens to be called like the index
    limit = "400 illegal_argument_exception: Limit of total fields [3000] in index [orders] has been exceeded"
    assert named_attributes({"orders": 1, "3000": 2}, limit) == []


def test_names_opensearch_or_the_service_reserve_are_always_diverted():
    document = {"_id": "x", "_cdc_deleted": True, "pk": "a", "_other": 1}
    assert reserved_attributes(document, ("_cdc_deleted", TYPED_FIELD)) == ["_id", "_cdc_deleted"]
