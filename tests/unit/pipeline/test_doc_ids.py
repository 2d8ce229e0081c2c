"""Document ids from primary keys: injective, spelling-blind, and within OpenSearch's 512 bytes."""

from __future__ import annotations

import base64
import itertools
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.errors import RecordError
from consumer.pipeline import doc_ids, shaping
from consumer.pipeline.doc_ids import HASHED_ID_PREFIX, MAX_ID_BYTES, KeyAttribute, KeySchema, document_id
from tests.support.strategies import dynamo_decimals, spelling_of, tricky_strings


def schema(*types: str) -> KeySchema:
    """A key schema with attributes named hash, range of the given types."""
    return KeySchema(tuple(KeyAttribute(name, type_) for name, type_ in zip(("hash", "range"), types, strict=False)))


# A key *value* is what DynamoDB compares: str, Decimal (so 1.5 == 1.50) or bytes.
KeyValue = str | Decimal | bytes


def key_values(type_: str) -> st.SearchStrategy[KeyValue]:
    if type_ == "S":
        return st.one_of(tricky_strings(max_size=10), long_strings())
    if type_ == "N":
        return dynamo_decimals()
    return st.binary(min_size=1, max_size=40) | st.binary(min_size=1, max_size=8).map(lambda b: b * 100)


def long_strings() -> st.SearchStrategy[str]:
    """Strings around and beyond the 512-byte limit, some multi-byte."""
    return st.builds(lambda s, n: s * n, tricky_strings(max_size=4), st.integers(100, 700))


@st.composite
def attribute_value(draw: st.DrawFn, type_: str, value: KeyValue) -> dict:
    """``value`` as a record's AttributeValue, in any of the forms the wire may carry."""
    if type_ == "N":
        return {"N": draw(spelling_of(value))}
    if type_ == "B":
        return {"B": draw(st.sampled_from([value, base64.b64encode(value).decode()]))}
    return {"S": value}


@st.composite
def schemas_and_keys(draw: st.DrawFn, min_keys: int = 2, max_keys: int = 8) -> tuple[KeySchema, list[tuple]]:
    """A random key schema and distinct keys (by DynamoDB's equality) of it."""
    types = draw(st.lists(st.sampled_from("SNB"), min_size=1, max_size=2))
    strategy = st.tuples(*(key_values(t) for t in types))
    keys = draw(st.lists(strategy, min_size=min_keys, max_size=max_keys, unique=True))
    return schema(*types), keys


@st.composite
def record_keys(draw: st.DrawFn, key_schema: KeySchema, values: tuple) -> dict:
    """The ``dynamodb.Keys`` of one key, its attributes in a random map order."""
    pairs = [
        (attribute.name, draw(attribute_value(attribute.type, value)))
        for attribute, value in zip(key_schema.attributes, values, strict=True)
    ]
    return dict(draw(st.permutations(pairs)))


# --- injectivity -----------------------------------------------------------------------------


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_different_keys_never_share_an_id_and_equal_keys_always_do(data):
    # GIVEN a schema (S/N/B, simple or composite) and distinct keys full of '|', '\\', '#', long
    # strings, numbers and binary
    key_schema, keys = data.draw(schemas_and_keys())

    # WHEN each key gets its id twice, written differently each time (number spelling, bytes or
    # base64, map order)
    first = [document_id(key_schema, data.draw(record_keys(key_schema, key))) for key in keys]
    second = [document_id(key_schema, data.draw(record_keys(key_schema, key))) for key in keys]

    # THEN distinct keys have distinct ids, and each key's two writings have the same id
    assert len(set(first)) == len(keys)
    assert first == second


def test_ids_of_all_short_strings_over_the_escape_characters_are_distinct():
    # GIVEN every composite key whose parts are strings of up to 3 of 'a', '|', '\\', '#'
    alphabet = "a|\\#"
    strings = ["".join(p) for n in range(1, 4) for p in itertools.product(alphabet, repeat=n)]
    key_schema = schema("S", "S")

    # WHEN ids are computed for all 7,056 pairs
    ids = {document_id(key_schema, {"hash": {"S": h}, "range": {"S": r}}) for h in strings for r in strings}

    # THEN no two keys share an id (exhaustive, not sampled)
    assert len(ids) == len(strings) ** 2


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("a|b", "c"), ("a", "b|c")),
        (("a\\", "b"), ("a", "\\b")),
        (("a\\|b", "c"), ("a\\", "b|c")),
        (("#x", "y"), ("\\#x", "y")),
    ],
)
def test_separator_and_escape_characters_cannot_forge_a_composite_key(left, right):
    # GIVEN two composite keys whose naive "hash|range" joins would be equal
    key_schema = schema("S", "S")

    def id_of(pair):
        return document_id(key_schema, {"hash": {"S": pair[0]}, "range": {"S": pair[1]}})

    # WHEN their ids are computed THEN they differ
    assert id_of(left) != id_of(right)


def test_a_key_that_spells_a_hashed_id_does_not_collide_with_it():
    # GIVEN a key long enough to be hashed, and a short key whose text is that hashed id
    key_schema = schema("S")
    hashed = document_id(key_schema, {"hash": {"S": "x" * 600}})
    assert hashed.startswith(HASHED_ID_PREFIX)

    # WHEN the short key's id is computed
    forged = document_id(key_schema, {"hash": {"S": hashed}})

    # THEN it is not the hashed id: readable ids never start with '#'
    assert forged != hashed
    assert not forged.startswith("#")


@pytest.mark.parametrize("spellings", [("1.50", "1.5", "15E-1", "0.15e1"), ("100", "1E+2", "100.000"), ("0", "-0")])
def test_equal_numbers_spelled_differently_are_one_id(spellings):
    # GIVEN one numeric key written in several ways (DynamoDB treats them as one item)
    key_schema = schema("N")

    # WHEN their ids are computed THEN there is one id
    assert len({document_id(key_schema, {"hash": {"N": text}}) for text in spellings}) == 1


# --- readability and size --------------------------------------------------------------------


def test_a_single_string_key_is_its_own_id():
    # GIVEN the common case WHEN its id is computed THEN a person can read it in OpenSearch
    single = KeySchema((KeyAttribute("pk", "S"),))
    assert document_id(single, {"pk": {"S": "order-1"}}) == "order-1"


def test_composite_ids_join_parts_in_schema_order_not_map_order():
    # GIVEN a composite key whose map lists the range attribute first
    key_schema = schema("S", "N")
    keys = {"range": {"N": "7.0"}, "hash": {"S": "customer-9"}}

    # WHEN its id is computed THEN it reads hash|range with the canonical number
    assert document_id(key_schema, keys) == "customer-9|7"


@given(st.data())
@settings(max_examples=100, deadline=None)
def test_ids_never_exceed_512_bytes(data):
    # GIVEN any key, including 3 KB ones of multi-byte characters
    key_schema, keys = data.draw(schemas_and_keys(min_keys=1, max_keys=1))
    keys_map = data.draw(record_keys(key_schema, keys[0]))

    # WHEN its id is computed
    doc_id = document_id(key_schema, keys_map)

    # THEN it fits OpenSearch's _id limit
    assert len(doc_id.encode("utf-8")) <= MAX_ID_BYTES


@pytest.mark.parametrize(
    ("value", "hashed"),
    [
        ("x" * 512, False),
        ("x" * 513, True),
        ("é" * 256, False),  # 512 bytes
        ("é" * 256 + "x", True),  # 513 bytes, 257 characters
        ("#" + "x" * 510, False),  # 512 bytes once its '#' is escaped
        ("#" + "x" * 511, True),
    ],
)
def test_ids_longer_than_512_utf8_bytes_are_hashed(value, hashed):
    # GIVEN a key at the 512-byte boundary, counted in UTF-8 bytes (with escapes), not characters
    # WHEN its id is computed
    doc_id = document_id(schema("S"), {"hash": {"S": value}})

    # THEN only an id beyond 512 bytes is replaced by its hash
    assert doc_id.startswith(HASHED_ID_PREFIX) is hashed
    assert len(doc_id.encode("utf-8")) <= MAX_ID_BYTES


# --- schema mismatch -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys",
    [
        {"hash": {"N": "1"}},  # schema says S
        {"hash": {"B": b"x"}},
        {"other": {"S": "x"}},  # the key attribute is missing
        {},
    ],
)
def test_keys_that_do_not_match_the_schema_raise_record_error(keys):
    # GIVEN record keys that disagree with the table's key schema
    # WHEN an id is computed THEN RecordError: the record is rejected, never coerced
    with pytest.raises(RecordError):
        document_id(schema("S"), keys)


def test_a_missing_range_attribute_raises_record_error():
    # GIVEN a composite schema and keys with only the hash attribute WHEN an id is computed THEN RecordError
    with pytest.raises(RecordError, match="range"):
        document_id(schema("S", "S"), {"hash": {"S": "a"}})


def test_key_schema_from_table_description_puts_hash_first():
    # GIVEN a DescribeTable answer that lists the RANGE key before the HASH key
    table = {
        "KeySchema": [
            {"AttributeName": "sk", "KeyType": "RANGE"},
            {"AttributeName": "pk", "KeyType": "HASH"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "pk", "AttributeType": "S"},
        ],
    }

    # WHEN the schema is built THEN hash comes first, with each attribute's type
    assert KeySchema.from_table_description(table) == KeySchema((KeyAttribute("pk", "S"), KeyAttribute("sk", "N")))


@pytest.mark.parametrize("attributes", [(), tuple(KeyAttribute(n, "S") for n in "abc"), (KeyAttribute("a", "M"),)])
def test_impossible_key_schemas_are_refused(attributes):
    # GIVEN no key, three keys, or a non-scalar key WHEN a schema is built THEN ValueError
    with pytest.raises(ValueError):
        KeySchema(attributes)


MASK_KEY = b"a-masking-key-of-32-bytes-------"


@given(st.lists(st.tuples(key_values("S"), key_values("N")), min_size=2, max_size=20, unique=True))
def test_a_masked_key_attribute_gives_ids_that_stay_injective_and_never_show_it(keys):
    # GIVEN a composite key whose hash attribute is masked
    masked = schema("S", "N").masking(frozenset({"hash", "not-a-key"}), MASK_KEY)
    assert masked.masked == {"hash"}

    ids = [document_id(masked, {"hash": {"S": h}, "range": {"N": str(r)}}) for h, r in keys]
    # THEN different keys keep different ids, no id shows the hash value, and each starts with its digest
    assert len(set(ids)) == len({(h, Decimal(r)) for h, r in keys})
    assert all(doc_id.startswith("hmac-sha256:") and "|" in doc_id for doc_id in ids)
    assert all(h not in doc_id for (h, _), doc_id in zip(keys, ids, strict=True) if len(h) >= 12)


def test_a_masked_string_key_is_the_digest_that_stands_for_it_in_the_document():
    # GIVEN a table keyed by an email, masked
    masked = KeySchema((KeyAttribute("email", "S"),)).masking(frozenset({"email"}), MASK_KEY)

    # THEN the id is the same digest that masking puts in _source, and another key changes it
    doc_id = document_id(masked, {"email": {"S": "alice@example.com"}})
    assert doc_id == shaping.masked("alice@example.com", MASK_KEY)
    assert doc_id != document_id(masked, {"email": {"S": "bob@example.com"}})
    # AND another masking key gives other ids (the digest is keyed), no key gives a plain digest
    other = KeySchema((KeyAttribute("email", "S"),)).masking(frozenset({"email"}), b"another-key-of-16-bytes")
    assert document_id(other, {"email": {"S": "alice@example.com"}}) != doc_id
    unkeyed = KeySchema((KeyAttribute("email", "S"),)).masking(frozenset({"email"}), None)
    assert document_id(unkeyed, {"email": {"S": "alice@example.com"}}).startswith("sha256:")
    # AND a schema that masks nothing keeps readable ids
    assert document_id(schema("S").masking(frozenset({"email"}), MASK_KEY), {"hash": {"S": "a"}}) == "a"


# --- the compiled ids ------------------------------------------------------------------------


def test_the_compiled_ids_are_built():
    # GIVEN the project installed by make test (a C compiler present) THEN plain keys get their ids in C
    assert doc_ids.compiled_readable_id is not None


# Keys at the compiled path's edges: escapes, a leading '#', spellings C leaves to Python, ids
# around 512 bytes, strings that are not Unicode, attributes missing, mistyped or doubled
EDGE_KEYS = [
    (("S",), {"hash": {"S": "#a|b\\c"}}),
    (("S",), {"hash": {"S": "\ud800"}}),
    (("S",), {"hash": {"S": "a", "N": "1"}}),
    (("S",), {"hash": {"N": "1"}}),
    (("S",), {"hash": "text"}),
    (("S",), {"hash": {"S": 7}}),
    (("N", "S"), {"hash": {"N": "-007.50"}, "range": {"S": "x" * 509}}),
    (("N", "S"), {"hash": {"N": "1"}, "range": {"S": "x" * 510}}),
    (("N", "S"), {"hash": {"N": "1"}, "range": {"S": "|" * 300}}),
    (("B", "N"), {"hash": {"B": "AQI="}, "range": {"N": "1E+3"}}),
    (("B", "N"), {"hash": {"B": b"\x01\x02"}, "range": {"N": "0.000001"}}),
    (("S", "N"), {"range": {"N": "1"}}),
    (("N",), {"hash": {"N": "-0"}}),
    (("N",), {"hash": {"N": "12345678901234567890123456789012345678"}}),
]


@pytest.mark.parametrize(("types", "keys"), EDGE_KEYS)
def test_the_compiled_ids_are_the_python_ones_at_the_edges(types, keys):
    # GIVEN keys at one of the compiled path's edges
    # WHEN document_id (compiled where it can) and the Python definition make their id
    # THEN the same id, or the same error
    key_schema = schema(*types)
    assert _id_or_error(document_id, key_schema, keys) == _id_or_error(doc_ids.python_document_id, key_schema, keys)


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_the_compiled_ids_are_the_python_ones_on_any_keys(data):
    # GIVEN a schema and distinct keys in every spelling (numbers, bytes or base64, long strings)
    key_schema, keys = data.draw(schemas_and_keys())
    written = [data.draw(record_keys(key_schema, key)) for key in keys]

    # WHEN each gets its id from document_id (compiled where it can) and from the Python definition
    # THEN the same id
    for record_keys_ in written:
        assert document_id(key_schema, record_keys_) == doc_ids.python_document_id(key_schema, record_keys_)


def _id_or_error(make_id, key_schema: KeySchema, keys: dict) -> tuple:
    try:
        return ("id", make_id(key_schema, keys))
    except Exception as exc:  # the comparison is the point: whatever one raises, the other must too
        return ("raised", type(exc), str(exc))
