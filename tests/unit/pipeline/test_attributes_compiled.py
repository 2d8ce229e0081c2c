"""The compiled item converter (consumer/pipeline/_attributes.c) against the Python one it stands for.

Equal means: the same JSON values of the same Python types (an int stays an int, a Decimal keeps its
digits), or the same exception with the same message, on any item, malformed ones included.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer.pipeline import attributes, bulk
from consumer.pipeline.attributes import item_to_json, python_item_to_json
from consumer.pipeline.repair import RepairAction
from tests.support.strategies import BOUNDARY_NUMBERS, MALFORMED_NUMBERS, PLAIN_NUMBERS, number_texts

TAGS = ["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "M", "L"]


def _well_formed_scalars() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda s: {"S": s}, st.text(max_size=12)),
        st.builds(lambda n: {"N": n}, st.one_of(PLAIN_NUMBERS, number_texts(), st.sampled_from(BOUNDARY_NUMBERS))),
        st.builds(lambda b: {"B": b}, st.one_of(st.binary(max_size=6), st.text("AQg=", max_size=8))),
        st.builds(lambda b: {"BOOL": b}, st.booleans()),
        st.just({"NULL": True}),
        st.builds(lambda m: {"SS": m}, st.lists(st.text(max_size=4), max_size=4)),
        st.builds(
            lambda m: {"NS": m}, st.lists(st.one_of(PLAIN_NUMBERS, st.sampled_from(BOUNDARY_NUMBERS)), max_size=4)
        ),
        st.builds(lambda m: {"BS": m}, st.lists(st.binary(max_size=3), max_size=3)),
    )


def _scalars() -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed values, and now and then a malformed one."""
    return st.one_of(
        _well_formed_scalars(),
        _malformed(),
        st.builds(lambda n: {"N": n}, MALFORMED_NUMBERS),
        st.builds(lambda m: {"NS": m}, st.lists(st.one_of(number_texts(), MALFORMED_NUMBERS), max_size=4)),
    )


def _malformed() -> st.SearchStrategy[Any]:
    """What a broken producer, or a type confusion, could put where an AttributeValue belongs."""
    values = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3), st.booleans())
    return st.one_of(
        st.builds(lambda tag, value: {tag: value}, st.sampled_from(TAGS), values),
        st.builds(lambda tag, value: {tag: value}, st.sampled_from(["s", "X", "BOOLEAN", "", "SSS"]), values),
        st.builds(lambda tag, members: {tag: members}, st.sampled_from(["SS", "NS"]), st.lists(values, max_size=3)),
        st.builds(
            lambda tag, members: {tag: tuple(members)}, st.sampled_from(["SS", "L"]), st.lists(st.text(), max_size=2)
        ),
        st.just({"S": "x", "N": "1"}),
        st.just({}),
        values,
        st.lists(values, max_size=2),
    )


def _nested(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.builds(lambda m: {"M": m}, st.dictionaries(st.text(max_size=5), inner, max_size=4)),
            st.builds(lambda elements: {"L": elements}, st.lists(inner, max_size=4)),
        ),
        max_leaves=24,
    )


WELL_FORMED_ITEMS = st.dictionaries(st.text(max_size=6), _nested(_well_formed_scalars()), max_size=8)
ANY_ITEMS = st.one_of(st.dictionaries(st.text(max_size=6), _nested(_scalars()), max_size=8), _malformed())


def _outcome(convert, item: Any) -> tuple:
    try:
        return ("value", _typed(convert(item)))
    except Exception as exc:  # the comparison is the point: whatever one raises, the other must too
        return ("raised", type(exc), str(exc))


def _typed(value: Any) -> Any:
    """The value with each scalar's type beside it (1 == 1.0 == Decimal(1) would hide a difference)."""
    if isinstance(value, dict):
        return {name: _typed(member) for name, member in value.items()}
    if isinstance(value, list):
        return [_typed(member) for member in value]
    return (type(value).__name__, repr(value) if isinstance(value, Decimal | float) else value)


def test_the_compiled_converter_is_built():
    # GIVEN the project installed by make test (or CI, or the image), where a C compiler is present
    # THEN the compiled converter serves; without one the install goes on with the Python converter
    assert attributes.COMPILED, "consumer.pipeline._attributes was not built: install a C compiler, then make venv"
    assert item_to_json is not python_item_to_json


@pytest.mark.parametrize("text", BOUNDARY_NUMBERS)
def test_numbers_at_the_compiled_paths_limits_convert_as_in_python(text):
    # GIVEN a number spelt at one of the compiled path's limits, alone and in a set
    item = {"n": {"N": text}, "ns": {"NS": [text, "5", "-7.25"]}}
    # WHEN both converters convert it THEN the same value of the same type
    assert _outcome(item_to_json, item) == _outcome(python_item_to_json, item)


@settings(max_examples=300, deadline=None)
@given(item=WELL_FORMED_ITEMS)
@example(item={"ledger": {"N": "1000005426138762552420429"}, "bins": {"NS": ["283", "-1.5", "143"]}})
@example(item={"deep": {"L": [{"L": [{"M": {"x": {"NS": ["1E+3", "7"]}}}]}]}})
def test_the_compiled_converter_equals_the_python_one_on_any_item(item):
    # GIVEN a random item: every type, nested, numbers in every spelling
    # WHEN both converters convert it
    # THEN they give the same values of the same types
    assert _outcome(item_to_json, item) == _outcome(python_item_to_json, item)


@settings(max_examples=200, deadline=None)
@given(item=ANY_ITEMS)
def test_the_compiled_converter_refuses_what_the_python_one_refuses(item):
    # GIVEN a random item with malformed values among the good ones (or no item at all)
    # WHEN both converters convert it
    # THEN the same values, or the same error with the same message
    assert _outcome(item_to_json, item) == _outcome(python_item_to_json, item)


def test_without_the_compiled_converter_the_python_one_serves():
    # GIVEN an interpreter where the extension cannot be imported (an install without a C compiler)
    program = (
        "import sys; sys.modules['consumer.pipeline._attributes'] = None\n"
        "from consumer.pipeline import attributes, bulk, doc_ids\n"
        "item = {'n': {'N': '19.99'}, 'l': {'L': [{'S': 'x'}]}}\n"
        "print(attributes.COMPILED, attributes.item_to_json(item))\n"
        "print(bulk.item_lines is bulk.python_item_lines, bulk.item_lines(item, frozenset(), b'', 'i', 1).split()[1])\n"
        "schema = doc_ids.KeySchema((doc_ids.KeyAttribute('n', 'N'), doc_ids.KeyAttribute('s', 'S')))\n"
        "print(doc_ids.compiled_readable_id, doc_ids.document_id(schema, {'n': {'N': '1.50'}, 's': {'S': 'a|b'}}))\n"
    )
    # WHEN it converts an item, writes its text and makes an id
    answer = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    # THEN the Python converter, writer and ids serve, with the same results
    assert answer.stdout.splitlines() == [
        "False {'n': 19.99, 'l': ['x']}",
        'True b\'{"n":19.99,"l":["x"]}\'',
        "None 1.5|a\\|b",
    ]


# --- the JSON text written straight from the item (in C, inside item_lines) -----------------------

RESERVED = frozenset({"_id", "_cdc_deleted"})
# names and strings dumps_json refuses or escapes: quotes, backslashes, control characters,
# non-ASCII, lone surrogates
AWKWARD_TEXT = st.text(st.sampled_from(['"', "\\", "\n", "\x00", "\x1f", "\x7f", "é", "☃", "\U0001f600", "a"]))
AWKWARD_ITEMS = st.dictionaries(
    st.one_of(st.text(max_size=6), AWKWARD_TEXT, st.sampled_from(sorted(RESERVED))),
    _nested(st.one_of(_well_formed_scalars(), st.builds(lambda s: {"S": s}, AWKWARD_TEXT))),
    max_size=8,
)


def _compiled_text(item: Any, reserved: frozenset[str]) -> bytes | None:
    """The item's JSON text as the compiled writer writes it (within its _bulk lines)."""
    lines = bulk.compiled_item_lines(item, reserved, b"", "id", 1)
    return None if lines is None else lines[lines.index(b"\n") + 1 : -1]


def _assert_writes_the_definition(write, item: Any) -> None:
    """``write(item, RESERVED)`` gives the definition: item_to_json's document as dumps_json writes it,
    or the same error; or None, for the caller's path to decide, where the definition gives None (a
    reserved name, a document dumps_json refuses) or the item is one the writer leaves to the caller."""
    try:
        outcome: tuple = ("value", write(item, RESERVED))
    except Exception as exc:  # the comparison is the point
        outcome = ("raised", type(exc), str(exc))
    expected = _definition(item)
    if outcome == ("value", None) and expected != outcome:
        assert _left_to_the_caller(item), f"None for an item the writer should write: {expected}"
    else:
        assert outcome == expected


def _definition(item: Any) -> tuple:
    converted = _outcome(python_item_to_json, item)
    if converted[0] == "raised":
        return converted
    if not RESERVED.isdisjoint(item):
        return ("value", None)
    try:
        return ("value", attributes.dumps_json(python_item_to_json(item)))
    except TypeError:
        return ("value", None)


def _left_to_the_caller(value: Any, depth: int = 0) -> bool:
    """Whether the writer may answer None where the definition raises: not a dict, a reserved
    top-level name, and anywhere a name that is not a str, a string that is not valid Unicode, or
    nesting beyond 64 maps and lists."""
    if depth == 0 and (not isinstance(value, dict) or not RESERVED.isdisjoint(value)):
        return True
    if depth > 128:
        return True
    if isinstance(value, str):
        return not _is_unicode(value)
    if isinstance(value, dict):
        return any(not isinstance(name, str) or _left_to_the_caller(name, 1) for name in value) or any(
            _left_to_the_caller(member, depth + 1) for member in value.values()
        )
    if isinstance(value, list | tuple):
        return any(_left_to_the_caller(member, depth + 1) for member in value)
    return False


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(item=st.one_of(WELL_FORMED_ITEMS, AWKWARD_ITEMS))
@example(item={"n": {"N": "-007.50"}, "ns": {"NS": ["10", "-1.5", "9007199254740993", "0.25"]}})
@example(item={"s": {"S": "\ud800"}, "later": {"N": "1e5x"}})
@example(item={"_id": {"S": "x"}})
def test_the_written_text_is_what_dumps_json_writes_of_the_converted_item(item):
    # GIVEN a random item: every type, nested, numbers in every spelling, awkward strings and names
    # WHEN its JSON text is written straight from it
    # THEN it is byte for byte dumps_json(python_item_to_json(item)), or the same error, or None where
    # the caller's path must decide (a reserved name, a document that is not JSON)
    _assert_writes_the_definition(_compiled_text, item)


@settings(max_examples=200, deadline=None)
@given(item=ANY_ITEMS)
def test_the_written_text_refuses_what_the_python_converter_refuses(item):
    # GIVEN a random item with malformed values among the good ones (or no item at all)
    # WHEN its JSON text is written THEN the same error with the same message, or the same text
    _assert_writes_the_definition(_compiled_text, item)


@settings(max_examples=100, deadline=None)
@given(item=st.one_of(WELL_FORMED_ITEMS, AWKWARD_ITEMS, ANY_ITEMS))
@example(item={"": {"SS": [None, None]}})  # the conversion's own TypeError is raised, not taken for dumps_json's
def test_the_python_text_writer_writes_the_definition_too(item):
    # GIVEN any item WHEN the Python fallback (an install without a C compiler) writes its text
    # THEN the definition, as the compiled writer does
    _assert_writes_the_definition(attributes.python_item_json, item)


def test_items_nested_beyond_the_writers_depth_are_left_to_the_caller():
    # GIVEN an item nested 100 maps deep (beyond the writer's 64 levels, within orjson's 255)
    item: dict[str, Any] = {"leaf": {"S": "x"}}
    for _ in range(100):
        item = {"m": {"M": item}}
    # WHEN its text is asked for THEN None: the caller builds the document, which dumps_json writes
    assert _compiled_text(item, RESERVED) is None
    assert attributes.dumps_json(item_to_json(item)).count(b"{") == 101


# --- the _bulk lines of an item indexed as it is (item_lines) ------------------------------------

IDS = st.one_of(st.text(max_size=30), AWKWARD_TEXT, st.sampled_from(["customer#1|2", "a\\|b", "\ud800"]))
VERSIONS = st.one_of(
    st.integers(0, 2**62),
    st.sampled_from([0, 1, 2**63 - 1, 2**63, -1, -(2**63), -(2**63) - 1, 10**30]),
)
INDEX_NAMES = st.one_of(st.sampled_from(["orders", "orders-2026.12", 'q"uote']), st.text(min_size=1, max_size=12))


def _lines_outcome(write, item: Any, head: bytes, doc_id: str, version: int) -> tuple:
    try:
        return ("value", write(item, RESERVED, head, doc_id, version))
    except Exception as exc:  # the comparison is the point
        return ("raised", type(exc), str(exc))


@settings(max_examples=300, deadline=None)
@given(item=st.one_of(WELL_FORMED_ITEMS, AWKWARD_ITEMS, ANY_ITEMS), doc_id=IDS, version=VERSIONS, index=INDEX_NAMES)
@example(item={"n": {"N": "1"}}, doc_id="\ud800", version=1, index="orders")  # an id that is not JSON
@example(item={"n": {"N": "1e5x"}}, doc_id="\ud800", version=1, index="orders")  # ... before a malformed item
@example(item={"n": {"N": "1"}}, doc_id="a", version=2**63, index="orders")  # a version beyond 64 bits
def test_the_written_lines_are_what_encode_action_writes_of_the_item_as_it_is(item, doc_id, version, index):
    # GIVEN a random item (malformed ones too), id, version and index
    head = bulk.meta_head("index", index)
    # WHEN its _bulk lines are written in C and by the Python definition
    compiled = _lines_outcome(bulk.item_lines, item, head, doc_id, version)
    expected = _lines_outcome(bulk.python_item_lines, item, head, doc_id, version)
    # THEN the same lines, or the same error; where one of them leaves the item to the
    # caller's path (None) and the other does not, an item that is the caller's to decide (a reserved
    # name the definition checks first, or one of _compiled_text's cases)
    if compiled != expected and ("value", None) in (compiled, expected):
        assert _left_to_the_caller(item), f"compiled {compiled}, definition {expected}"
    else:
        assert compiled == expected
    # AND the lines are encode_action's of the action indexing the item's text (python_item_json's),
    # which an action holding those lines gives as its source
    if expected[0] == "value" and expected[1] is not None:
        lines, text = expected[1], attributes.python_item_json(item, RESERVED)
        assert lines == bulk.encode_action(index, RepairAction(doc_id, version, "index", text, index))
        assert RepairAction(doc_id, version, "index", None, index, item, lines).source == text
        assert orjson.loads(lines.split(b"\n")[0]) == {
            "index": {"_index": index, "_id": doc_id, "version": version, "version_type": "external"}
        }
