"""The ``_bulk`` lines of an item image written straight from its text (``bulk.image_lines``, compiled in
``consumer/pipeline/_attributes_images.c``) against the definition, the image parsed and written by
``bulk.python_item_lines``.

The images are the ones a worker hands it: cut out of a GetRecords answer by ``raw_records.read_answer``,
spelt every way JSON allows (escapes anywhere, ASCII only, whitespace, repeated names) and malformed
every way a producer could (unknown tags, values of the wrong type, two tags, numbers not spelt
plainly). Equal means the same lines; the compiled writer may instead answer None, which sends the
record down the parsed path, but never lines the definition would not write, and never lines where the
definition raises. Images as the service writes them must be written, not left to the parsed path.
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer.pipeline import bulk
from consumer.pipeline.records import ImageText
from consumer.shards.raw_records import read_answer
from tests.support.json_text import Obj, spell
from tests.support.strategies import BOUNDARY_NUMBERS, MALFORMED_NUMBERS, PLAIN_NUMBERS, number_texts

RESERVED = frozenset({"_id", "_cdc_deleted", "é"})
HEAD = bulk.meta_head("index", "orders")
TEXTS = st.one_of(
    st.text(max_size=8),
    st.text(st.sampled_from(['"', "\\", "/", "\n", "\x00", "\x1f", "\x7f", "é", "\u2028", "😀", "a"]), max_size=6),
)
PLAIN_NAMES = st.text(st.sampled_from(["a", "b", "_", " ", "é", "/", "😀"]), max_size=5)
NAMES = st.one_of(PLAIN_NAMES, PLAIN_NAMES, TEXTS, st.sampled_from([*sorted(RESERVED), "_ida", "_", ""]))
NUMBERS = st.one_of(PLAIN_NUMBERS, number_texts(), st.sampled_from(BOUNDARY_NUMBERS), MALFORMED_NUMBERS)
BASE64 = st.binary(max_size=6).map(lambda b: __import__("base64").b64encode(b).decode())


ESCAPED_S = "S "  # stands for the tag S spelt with an escape (a tag with an escape is Python's to read)


def _attribute(tag: str, value: Any) -> Obj:
    return Obj([(tag, value)])


SCALARS = st.one_of(
    st.builds(lambda s: _attribute("S", s), TEXTS),
    st.builds(lambda n: _attribute("N", n), NUMBERS),
    st.builds(lambda b: _attribute("B", b), BASE64),
    st.builds(lambda b: _attribute("BOOL", b), st.booleans()),
    st.builds(lambda b: _attribute("NULL", b), st.booleans()),
    st.builds(lambda m: _attribute("SS", m), st.lists(TEXTS, max_size=4)),
    st.builds(lambda m: _attribute("NS", m), st.lists(NUMBERS, max_size=4)),
    st.builds(lambda m: _attribute("BS", m), st.lists(BASE64, max_size=3)),
)
# what a broken producer could put where an attribute value belongs (no JSON numbers: the scan leaves
# an answer holding one in an image whole, so no image of that kind reaches image_lines)
ODD_VALUES = st.one_of(st.none(), st.booleans(), TEXTS, st.lists(st.booleans(), max_size=2), st.just(Obj([])))
MALFORMED = st.one_of(
    st.builds(_attribute, st.sampled_from(["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "M", "L"]), ODD_VALUES),
    st.builds(_attribute, st.sampled_from(["s", "X", "BOOLEAN", "", "SSS", ESCAPED_S]), ODD_VALUES),
    st.builds(
        lambda tag, members: _attribute(tag, members),
        st.sampled_from(["SS", "NS", "BS"]),
        st.lists(ODD_VALUES, max_size=3),
    ),
    st.just(Obj([("S", "x"), ("N", "1")])),
    st.just(Obj([("S", "x"), ("S", "y")])),
    st.just(Obj([])),
    ODD_VALUES,
)


def _values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.builds(lambda m: _attribute("M", Obj(m)), st.lists(st.tuples(NAMES, inner), max_size=4)),
            st.builds(lambda elements: _attribute("L", elements), st.lists(inner, max_size=4)),
        ),
        max_leaves=20,
    )


IMAGES = st.builds(
    Obj, st.lists(st.tuples(NAMES, _values(st.one_of(SCALARS, SCALARS, SCALARS, MALFORMED))), max_size=8)
)


def _spell(value: Any, rng: random.Random, odd_names: float = 0.1) -> str:
    """JSON text of ``value`` in a random spelling: whitespace, and strings escaped at random (names,
    type tags among them, now and then: ``odd_names``)."""
    return spell(
        value,
        lambda: rng.choice(["", "", " ", "\n\t "]),
        lambda text, is_name: _spell_string(text, rng, odd_names if is_name else 0.4),
    )


def _spell_string(text: str, rng: random.Random, odd: float = 0.4) -> str:
    """A JSON string for ``text``: mostly as orjson writes it, now and then with characters escaped that
    need none (``\\u0061``, ``\\/``, ``\\u00e9``), or escaped the other way (``\\u000a`` for ``\\n``)."""
    if text is ESCAPED_S:
        return '"\\u0053"'
    if rng.random() >= odd:
        return orjson.dumps(text).decode()
    spelt = []
    for character in text:
        code = ord(character)
        choice = rng.random()
        if character == "/" and choice < 0.5:
            spelt.append("\\/")
        elif code > 0xFFFF:
            spelt.append(
                character if choice < 0.7 else json.dumps(character)[1:-1]
            )  # a surrogate pair: the scan's to refuse
        elif choice < 0.4 or character in '"\\' or code < 0x20:
            spelt.append(f"\\u{code:04x}" if choice < 0.2 or code < 0x20 else json.dumps(character)[1:-1])
        else:
            spelt.append(character)
    return '"' + "".join(spelt) + '"'


def _cut_image(image_text: str) -> ImageText | None:
    """The image as read_answer leaves it, cut out of an answer (None: the scan left the answer whole)."""
    body = '{"Records":[{"eventName":"INSERT","dynamodb":{"NewImage":' + image_text + "}}]}"
    image = read_answer("GetRecords", body.encode(), "application/x-amz-json-1.0")["Records"][0]["dynamodb"]["NewImage"]
    return image if isinstance(image, ImageText) else None


def _definition(text: bytes, doc_id: str, version: int, reserved: frozenset[str] = RESERVED) -> tuple:
    try:
        return ("lines", bulk.python_item_lines(orjson.loads(text), reserved, HEAD, doc_id, version))
    except Exception as exc:  # noqa: BLE001 - RecordError, or the TypeError of a set of odd members: either way no lines
        return ("raised", type(exc), str(exc))


@settings(max_examples=800, deadline=None)
@given(
    image=IMAGES, seed=st.integers(0, 2**32), doc_id=st.sampled_from(["a", "é|\\"]), version=st.integers(0, 2**63 - 1)
)
@example(image=Obj([("a", _attribute("S", "x")), ("a", _attribute("S", "y"))]), seed=0, doc_id="a", version=1)
@example(
    image=Obj([("m", _attribute("M", Obj([("b", _attribute("N", "1")), ("b", _attribute("N", "2"))])))]),
    seed=0,
    doc_id="a",
    version=1,
)
@example(image=Obj([("é", _attribute("S", "x"))]), seed=0, doc_id="a", version=1)
@example(
    image=Obj([("ns", _attribute("NS", ["10", "-1.5", "9007199254740993", "0.25", "1.50"]))]),
    seed=0,
    doc_id="a",
    version=1,
)
@example(image=Obj([("n", _attribute("N", "1e5"))]), seed=0, doc_id="a", version=1)
def test_the_lines_written_from_an_image_text_are_the_definitions(image, seed, doc_id, version):
    # GIVEN a random image, malformed ones too, spelt any way JSON allows and cut out of an answer
    cut = _cut_image(_spell(image, random.Random(seed)))
    if cut is None:
        return  # the scan left the answer whole: there is no image text to write from
    # WHEN its lines are written from its text, and by the definition from the parsed image
    written = bulk.image_lines(cut.text, RESERVED, HEAD, doc_id, version)
    # THEN the definition's lines, or None: never lines where the definition writes others or raises
    assert written is None or ("lines", written) == _definition(cut.text, doc_id, version)


# Images as the service writes them: names, strings and set members of any characters, numbers as
# DynamoDB spells them (plain integers of up to 18 digits, decimals of up to 15), no repeats
SERVICE_NUMBERS = st.one_of(
    st.integers(-(10**18) + 1, 10**18 - 1).map(str),
    st.decimals(min_value=-(10**9), max_value=10**9, places=4, allow_nan=False)
    .map(lambda d: str(d.normalize()))
    .filter(lambda s: "E" not in s and not s.startswith(("0.0000", "-0.0000"))),
)
SERVICE_SCALARS = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=12)),
    st.builds(lambda n: {"N": n}, SERVICE_NUMBERS),
    st.builds(lambda b: {"B": b}, BASE64),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(
        lambda m: {"SS": sorted(m)},
        st.sets(
            st.text(
                st.characters(blacklist_characters='"\\', blacklist_categories=("Cc", "Cs")), min_size=1, max_size=5
            ),
            min_size=1,
            max_size=4,
        ),
    ),
    st.builds(lambda m: {"NS": sorted(m)}, st.sets(SERVICE_NUMBERS, min_size=1, max_size=4)),
)
SERVICE_NAMES = st.text(
    st.characters(blacklist_characters='"\\', blacklist_categories=("Cc", "Cs")), max_size=10
).filter(lambda name: name not in RESERVED)
SERVICE_IMAGES = st.dictionaries(
    SERVICE_NAMES,
    st.recursive(
        SERVICE_SCALARS,
        lambda inner: st.one_of(
            st.builds(lambda m: {"M": m}, st.dictionaries(SERVICE_NAMES, inner, max_size=4)),
            st.builds(lambda elements: {"L": elements}, st.lists(inner, max_size=4)),
        ),
        max_leaves=20,
    ),
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(image=SERVICE_IMAGES, version=st.integers(0, 2**63 - 1))
def test_every_image_as_the_service_writes_it_is_written_from_its_text(image, version):
    # GIVEN an image as DynamoDB's stream spells it, cut out of an answer
    cut = _cut_image(orjson.dumps(image).decode())
    assert cut is not None
    # WHEN its lines are written from its text
    written = bulk.image_lines(cut.text, RESERVED, HEAD, "doc", version)
    # THEN they are written there (not left to the parsed path), and they are the definition's
    assert written is not None
    assert ("lines", written) == _definition(cut.text, "doc", version)
    assert orjson.loads(written.split(b"\n")[1]) == orjson.loads(
        bulk.python_item_lines(image, RESERVED, HEAD, "doc", version).split(b"\n")[1]
    )


def test_the_python_definition_serves_where_nothing_was_compiled():
    # GIVEN an image's text WHEN the Python definition writes its lines THEN item_lines' of the parsed image
    image = {"pk": {"S": "a\nb"}, "n": {"N": "1.50"}, "tags": {"SS": ["b", "a"]}}
    text = orjson.dumps(image)
    assert bulk.python_image_lines(text, RESERVED, HEAD, "doc", 3) == bulk.python_item_lines(
        image, RESERVED, HEAD, "doc", 3
    )
    assert bulk.image_lines(text, RESERVED, HEAD, "doc", 3) == bulk.python_image_lines(text, RESERVED, HEAD, "doc", 3)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.tuples(PLAIN_NAMES, TEXTS.filter(lambda s: not any(ord(c) > 0xFFFF for c in s))), max_size=6),
    seed=st.integers(0, 2**32),
)
@example(values=[("a", 'x"y\\z/\n\x00\x7fé\u2028')], seed=1)
def test_strings_spelt_with_any_escapes_are_written_from_the_text(values, seed):
    # GIVEN an image of strings under plain names, the strings spelt with escapes JSON allows anywhere
    # (\u0061 for a, \/ for /, \u000a for a newline), no surrogate pairs (the scan leaves those whole)
    rng = random.Random(seed)
    names = list(dict.fromkeys(name for name, _ in values))
    image = Obj([(name, _attribute("S", text)) for name, (_, text) in zip(names, values, strict=False)])
    cut = _cut_image(_spell(image, rng, odd_names=0))
    assert cut is not None
    # WHEN its lines are written from its text THEN they are, and they are the definition's
    written = bulk.image_lines(cut.text, RESERVED - {"é"}, HEAD, "doc", 1)
    assert written is not None
    assert ("lines", written) == _definition(cut.text, "doc", 1, RESERVED - {"é"})
