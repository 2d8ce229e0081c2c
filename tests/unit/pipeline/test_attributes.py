"""DynamoDB AttributeValues → JSON values, and the number policy of consumer.pipeline.attributes."""

from __future__ import annotations

import base64
import decimal
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.errors import RecordError
from consumer.pipeline.attributes import attribute_to_json, canonical_number, dumps_json, item_to_json, number_to_json
from tests.support.strategies import LONG_MAX, LONG_MIN, dynamo_decimals, number_texts, same_number, spelling_of

EXACT = decimal.Context(prec=100)


def emitted(json_value: int | float | Decimal) -> str:
    """The JSON text of a value as the sink serialises it."""
    return dumps_json(json_value).decode()


def denoted(json_value: int | float | Decimal) -> Decimal:
    """The decimal number a JSON value denotes once serialised as the sink does."""
    return EXACT.create_decimal(emitted(json_value))


# --- every type ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ({"S": "héllo"}, "héllo"),
        ({"S": ""}, ""),
        ({"N": "42"}, 42),
        ({"N": "19.99"}, 19.99),
        ({"B": b"\x00\xffbin"}, base64.b64encode(b"\x00\xffbin").decode()),
        ({"B": "AP9iaW4="}, "AP9iaW4="),  # wire JSON already carries base64 text
        ({"BOOL": True}, True),
        ({"BOOL": False}, False),
        ({"NULL": True}, None),
        ({"SS": ["b", "a", "c"]}, ["a", "b", "c"]),
        ({"NS": ["10", "9", "-1.5"]}, [-1.5, 9, 10]),
        ({"BS": [b"\x02", b"\x01"]}, ["AQ==", "Ag=="]),
        ({"L": [{"S": "x"}, {"N": "1"}, {"NULL": True}]}, ["x", 1, None]),
        ({"M": {"a": {"S": "x"}, "b": {"BOOL": False}}}, {"a": "x", "b": False}),
        ({"L": []}, []),
        ({"M": {}}, {}),
    ],
)
def test_each_type_converts_to_its_json_value(attribute, expected):
    # GIVEN one AttributeValue of each DynamoDB type
    # WHEN it is converted
    # THEN it becomes the documented JSON value (sets sorted, binary as base64, NULL as null)
    assert attribute_to_json(attribute) == expected


def test_nested_maps_and_lists_convert_recursively():
    # GIVEN an item whose attributes nest maps in lists in maps, with every scalar type inside
    item = {
        "pk": {"S": "order-1"},
        "lines": {
            "L": [
                {"M": {"sku": {"S": "a"}, "qty": {"N": "2"}, "tags": {"SS": ["z", "y"]}}},
                {"M": {"sku": {"S": "b"}, "price": {"N": "12345678901234567890.5"}, "blob": {"B": b"\x01"}}},
                {"L": [{"L": [{"NULL": True}, {"BOOL": True}]}]},
            ]
        },
    }

    # WHEN the item is converted
    document = item_to_json(item)

    # THEN every level is converted, and the number that no double holds is an exact Decimal,
    # written as a JSON number with all its digits
    assert document == {
        "pk": "order-1",
        "lines": [
            {"sku": "a", "qty": 2, "tags": ["y", "z"]},
            {"sku": "b", "price": Decimal("12345678901234567890.5"), "blob": "AQ=="},
            [[None, True]],
        ],
    }
    assert b'"price":12345678901234567890.5' in dumps_json(document)


@given(st.lists(st.text(max_size=5), unique=True, min_size=1, max_size=6), st.randoms(use_true_random=False))
@settings(max_examples=50)
def test_equal_sets_give_equal_documents_whatever_their_order(members, rng):
    # GIVEN the same string set listed in two orders
    shuffled = list(members)
    rng.shuffle(shuffled)

    # WHEN both are converted
    # THEN the JSON arrays are equal
    assert attribute_to_json({"SS": members}) == attribute_to_json({"SS": shuffled})


# --- the number policy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("-0", 0),
        ("1.0", 1),
        ("1E+3", 1000),
        (str(LONG_MAX), LONG_MAX),
        (str(LONG_MIN), LONG_MIN),
        (str(LONG_MAX + 1), Decimal(str(LONG_MAX + 1))),
        (str(LONG_MIN - 1), Decimal(str(LONG_MIN - 1))),
        ("19.99", 19.99),
        ("19.90", 19.9),
        ("0.00001", 0.00001),
        ("0.000001", Decimal("0.000001")),  # orjson would write a float this small as 1e-6
        ("1e-7", Decimal("0.0000001")),
        ("0.1", 0.1),
        ("0.30000000000000004", Decimal("0.30000000000000004")),
        ("1.00000000000000000001", Decimal("1.00000000000000000001")),
        ("1.0000000000000001", Decimal("1.0000000000000001")),  # 17 digits: the nearest double is 1.0
        ("123456789012345.67", Decimal("123456789012345.67")),
        ("12345678901234.5", 12345678901234.5),
        ("3.14159265358979323846264338327950288", Decimal("3.14159265358979323846264338327950288")),
        ("12345678901234567890123", Decimal("12345678901234567890123")),
        ("1E+20", Decimal("100000000000000000000")),
    ],
)
def test_number_policy_examples(text, expected):
    # GIVEN an N value WHEN it is converted
    # THEN a plain long is an int, a plain decimal of ≤ 15 digits a float, anything else a Decimal
    result = number_to_json(text)
    assert result == expected
    assert type(result) is type(expected)


@given(dynamo_decimals().flatmap(lambda value: st.tuples(st.just(value), spelling_of(value))))
@settings(max_examples=500)
def test_emitted_json_always_denotes_exactly_the_dynamodb_number(value_and_text):
    # GIVEN any DynamoDB number, in any spelling
    value, text = value_and_text

    # WHEN it is converted and serialised as the bulk body serialises it
    result = number_to_json(text)

    # THEN the JSON text denotes exactly that number: no silent loss of precision, ever
    assert denoted(result) == value


@given(dynamo_decimals().flatmap(lambda value: st.tuples(st.just(value), spelling_of(value))))
@settings(max_examples=300)
def test_number_policy_picks_the_documented_json_type(value_and_text):
    # GIVEN any DynamoDB number, in any spelling
    value, text = value_and_text

    # WHEN it is converted
    result = number_to_json(text)

    # THEN an integer within a Java long is an int; anything else is a float or Decimal, and in
    # every case the JSON text is the canonical decimal (so an exact keyword search matches it)
    integral = value == value.to_integral_value()
    if integral and LONG_MIN <= value <= LONG_MAX:
        assert type(result) is int
    else:
        assert type(result) in (float, Decimal)
    assert emitted(result) == canonical_number(text)


def test_number_set_is_sorted_numerically_not_as_text():
    # GIVEN a number set whose text order differs from its numeric order
    # WHEN it is converted
    # THEN the members are in numeric order, each under the number policy
    assert attribute_to_json({"NS": ["100", "20", "3", "1E+30", "-0.5"]}) == [
        -0.5,
        3,
        20,
        100,
        Decimal("1000000000000000000000000000000"),
    ]


# --- canonical text --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spellings",
    [
        ("1.50", "1.5", "15E-1", "0.15e1", "+1.5"),
        ("0", "-0", "0.000", "0E+10", "-0E-5"),
        ("100", "1E+2", "1e2", "100.00", "0.1E3"),
        ("-12.5", "-125E-1", "-12.500"),
    ],
)
def test_canonical_number_is_equal_for_spellings_of_one_number(spellings):
    # GIVEN several spellings of one number WHEN they are canonicalised THEN the texts are equal
    assert len({canonical_number(text) for text in spellings}) == 1


@given(dynamo_decimals().flatmap(lambda value: st.tuples(spelling_of(value), spelling_of(value))))
@settings(max_examples=300)
def test_canonical_number_ignores_spelling(texts):
    # GIVEN two spellings of the same number WHEN canonicalised THEN the texts are equal
    left, right = texts
    assert canonical_number(left) == canonical_number(right)


@given(number_texts(), number_texts())
@settings(max_examples=300)
def test_canonical_number_separates_different_numbers(left, right):
    # GIVEN two numbers WHEN canonicalised THEN the texts are equal exactly when the numbers are
    assert (canonical_number(left) == canonical_number(right)) == same_number(left, right)


@given(number_texts())
@settings(max_examples=200)
def test_canonical_number_denotes_the_number_and_is_a_fixed_point(text):
    # GIVEN any number WHEN canonicalised THEN the text is the same number, and canonical already
    canonical = canonical_number(text)
    assert same_number(canonical, text)
    assert canonical_number(canonical) == canonical


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attribute",
    [
        {},
        {"S": "a", "N": "1"},
        {"X": "a"},
        {"N": "abc"},
        {"N": ""},
        {"N": "NaN"},
        {"N": "Infinity"},
        {"N": "-inf"},
        {"N": None},
        {"NS": ["1", "two"]},
        {"M": {"a": {"N": "sNaN"}}},
        {"L": [{"S": "ok"}, {"Y": 1}]},
        "x",
        {"M": "not a map"},
        {"L": ["x"]},
        {"BOOL": "false"},
        {"SS": "abc"},
        {"N": "9" * 4301},  # Python refuses to turn an int this long into text (ValueError)
        {"N": "1E+999999999"},  # a billion digits if written out: would hang
        {"N": "1E+126"},  # above DynamoDB's range (9.99…E+125)
        {"N": "1E-131"},  # below it (1E-130)
        {"N": "1." + "1" * 38},  # 39 significant digits (DynamoDB keeps 38)
        {"N": "0" * 600 + "1"},  # longer than any number DynamoDB writes
    ],
)
def test_bad_attribute_values_raise_record_error(attribute):
    # GIVEN a malformed AttributeValue WHEN it is converted THEN RecordError (the record is poison)
    with pytest.raises(RecordError):
        attribute_to_json(attribute)


@pytest.mark.parametrize(
    "text",
    [
        "9.9999999999999999999999999999999999999E+125",
        "-9.9999999999999999999999999999999999999E+125",
        "1E-130",
        "-1E-130",
    ],
)
def test_the_ends_of_dynamodbs_number_range_convert_exactly(text):
    # GIVEN the largest and smallest magnitudes DynamoDB stores WHEN converted
    # THEN they are accepted, and the canonical text denotes exactly the same number
    assert Decimal(canonical_number(text)) == Decimal(text)


def test_a_bad_item_raises_record_error():
    # GIVEN an item that is not a map of AttributeValues WHEN converted THEN RecordError
    with pytest.raises(RecordError):
        item_to_json(["pk", {"S": "x"}])  # type: ignore[arg-type]
