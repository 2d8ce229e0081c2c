"""A GetRecords answer read with its images cut out (``raw_records.read_answer``, the scan in
``consumer/pipeline/_attributes_pages.c``) is the answer orjson reads whole, or the same error: on
random answers spelt every way JSON allows (escapes, whitespace, key orders, repeated keys, numbers
and odd values where images belong), and on answers broken at random. The scan is compiled: built
without a C compiler, answers are parsed whole, and the tests that expect images left as text fail,
as make test means them to."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer.aws.json_client import BadAnswerError
from consumer.pipeline.letters import letter_for, to_json
from consumer.pipeline.records import ImageText, StreamRecord
from consumer.shards.raw_records import read_answer
from tests.support.factories import stream_record
from tests.support.json_text import Obj, spell

TEXTS = st.text(max_size=8) | st.sampled_from(["", '"', "\\", "/", "\x00", "\x1f", "é", "😀", "\u2028", "\ufffe"])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXTS
ATTRIBUTES = st.recursive(
    st.one_of(
        st.builds(lambda s: Obj([("S", s)]), TEXTS),
        st.builds(lambda n: Obj([("N", str(n))]), st.integers()),
        st.builds(lambda b: Obj([("BOOL", b)]), st.booleans()),
        st.just(Obj([("NULL", True)])),
        st.builds(lambda m: Obj([("SS", m)]), st.lists(TEXTS, max_size=3)),
    ),
    lambda inner: st.one_of(
        st.builds(lambda m: Obj([("M", Obj(m))]), st.lists(st.tuples(TEXTS, inner), max_size=3)),
        st.builds(lambda members: Obj([("L", members)]), st.lists(inner, max_size=3)),
    ),
    max_leaves=12,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.builds(Obj, st.lists(st.tuples(TEXTS, inner), max_size=3)),
    max_leaves=8,
)
# images as DynamoDB writes them, and now and then anything JSON can hold (numbers included)
DYNAMODB_IMAGES = st.builds(Obj, st.lists(st.tuples(TEXTS, ATTRIBUTES), max_size=5))
IMAGES = st.one_of(
    DYNAMODB_IMAGES,
    DYNAMODB_IMAGES,
    DYNAMODB_IMAGES,
    st.builds(Obj, st.lists(st.tuples(TEXTS, JSON_VALUES), max_size=3)),
)
BODY_NAMES = st.sampled_from(["Keys", "NewImage", "OldImage", "SequenceNumber", "SizeBytes", "StreamViewType"])
RECORD_NAMES = st.sampled_from(["eventID", "eventName", "dynamodb", "userIdentity", "awsRegion"])


@st.composite
def records(draw: st.DrawFn, odd: bool) -> Obj:
    body = [
        ("Keys", Obj([("pk", Obj([("S", draw(TEXTS))]))])),
        ("SequenceNumber", str(draw(st.integers(0, 10**40)))),
        ("SizeBytes", draw(st.integers(0, 400_000))),
        ("ApproximateCreationDateTime", draw(st.floats(0, 2**32))),
    ]
    for name in ("NewImage", "OldImage"):
        if draw(st.integers(0, 3)):
            body.append((name, draw(IMAGES if odd else DYNAMODB_IMAGES)))
    if odd:  # now and then: a repeated name, or an odd value where an image belongs
        body += draw(st.lists(st.tuples(BODY_NAMES, JSON_VALUES | IMAGES), max_size=2 if draw(st.booleans()) else 0))
    body = draw(st.permutations(body))
    members = [("eventID", draw(TEXTS)), ("eventName", draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"])))]
    members.append(("dynamodb", Obj(body) if not odd or draw(st.integers(0, 9)) else draw(JSON_VALUES)))
    if odd:
        members += draw(st.lists(st.tuples(RECORD_NAMES, JSON_VALUES), max_size=1))
    return Obj(draw(st.permutations(members)))


@st.composite
def answers(draw: st.DrawFn, odd: bool = True) -> bytes:
    """An answer's bytes, spelt one of the ways a JSON writer may spell it; ``odd``: with what the
    service never writes (numbers and other values where images belong, repeated names, astral
    characters as escaped surrogate pairs)."""
    listed = st.lists(
        st.one_of(records(odd), records(odd), records(odd), JSON_VALUES if odd else records(odd)), max_size=4
    )
    members: list[tuple[str, Any]] = [("Records", draw(listed))]
    if draw(st.booleans()):
        members.append(("NextShardIterator", draw(TEXTS)))
    if odd and draw(st.integers(0, 5)) == 0:
        members.append((draw(st.sampled_from(["Records", "Other"])), draw(JSON_VALUES)))
    ascii_only, spaced = odd and draw(st.integers(0, 3)) == 0, draw(st.booleans())
    answer = Obj(draw(st.permutations(members)))
    return spell(
        answer, lambda: " \n\t" if spaced else "", lambda text, _: json.dumps(text, ensure_ascii=ascii_only)
    ).encode()


def _parsed(read, body: bytes) -> tuple:
    try:
        return ("answer", _with_images(read("GetRecords", body, "application/x-amz-json-1.0")))
    except BadAnswerError as exc:
        return ("bad answer", str(exc))


def _whole(operation: str, body: bytes, content_type: str) -> Any:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadAnswerError("not JSON") from None
    if not isinstance(answer, dict):
        raise BadAnswerError("not a JSON object")
    return answer


def _with_images(answer: Any) -> Any:
    """The answer with each ImageText parsed where it stands."""
    if isinstance(answer, ImageText):
        return ("image", answer.item())
    if isinstance(answer, dict):
        return {name: _with_images(value) for name, value in answer.items()}
    if isinstance(answer, list):
        return [_with_images(value) for value in answer]
    return answer


def _plain(answer: Any) -> Any:
    """The answer as read whole, with each image the scan would have left as text so marked."""
    answer = copy.deepcopy(answer)
    if isinstance(answer, dict) and isinstance(answer.get("Records"), list):
        for record in answer["Records"]:
            body = record.get("dynamodb") if isinstance(record, dict) else None
            for name in ("NewImage", "OldImage"):
                if isinstance(body, dict) and isinstance(body.get(name), dict):
                    body[name] = ("image", body[name])
    return answer


@settings(max_examples=600, deadline=None)
@given(body=answers())
@example(body=b'{"Records":[{"dynamodb":{"OldImage":{"a":{"N":"1"}}}}]}')
@example(body=b'{"Records":[{"dynamodb":{"OldImage":{"a":{"S":"x"}},"OldImage":5}}]}')
@example(body=b'{"Records":[{"dynamodb":{"Old\\u0049mage":{"a":{"S":"x"}},"OldImage":{"b":{"S":"y"}}}}]}')
@example(body=b'{"Records":[{"dynamodb":{"OldImage":{"b":{"S":"y"}},"Old\\u0049mage":5}}]}')
@example(body=b'{"Records":[{"dynamodb":{"OldImage":{"b":{"S":"y"}}},"dynam\\u006fdb":5}]}')
@example(body=b'{"Records":[{"dynamodb":{"OldImage":{"b":{"S":"y"}}}}],"Rec\\u006frds":[]}')
@example(body=b'{"Records":[{"dynamodb":{"OldImage":{"a":{"S":"\\ud83d\\ude00"}}}}]}')
@example(body=b'{"Records":[{"dynamodb":{"OldImage":{"a":{"S":"\\ud800"}}}}]}')
@example(body=b'{"Records":[{"dynamodb":{"OldImage":{"a":{"S":"\xed\xa0\x80"}}}}]}')
@example(body=b'{"Records":[{"dynamodb":{"NewImage":{"a":{"S":"x"}},"NewImage":{"b":{"S":"y"}}}}]}')
@example(body=b'{"Records":[{"dynamodb":{"New\\u0049mage":{"a":{"S":"x"}},"NewImage":{"b":{"S":"y"}}}}]}')
@example(body=b'{"Records":[{"dynamodb":{"NewImage":{"a":{"S":"x"}},"OldImage":{"a":{"S":"x"}}}}]}')
def test_an_answer_read_with_its_images_cut_out_is_the_answer_read_whole(body):
    # GIVEN an answer spelt any way JSON allows
    # WHEN it is read with its images cut out, and read whole by orjson
    cut, whole = _parsed(read_answer, body), _parsed(_whole, body)
    # THEN the same answer, or both refuse it: every image left as text (parsing to what orjson read
    # there), or the answer parsed whole where the scan could not be sure
    assert cut[0] == whole[0]
    if cut[0] == "answer":
        assert cut[1] == _plain(whole[1]) or cut[1] == whole[1]


@settings(max_examples=600, deadline=None)
@given(body=answers(), data=st.data())
def test_an_answer_broken_anywhere_is_refused_or_read_as_orjson_reads_it(body, data):
    # GIVEN an answer cut short, with a byte changed, or with bytes inserted
    at = data.draw(st.integers(0, len(body)))
    broken = data.draw(
        st.sampled_from(
            [
                body[:at],
                body[:at] + data.draw(st.binary(min_size=1, max_size=1)) + body[at + 1 :],
                body[:at]
                + data.draw(st.sampled_from([b'"', b"\\", b"{", b"}", b"[", b",", b":", b"\xff", b"1"]))
                + body[at:],
            ]
        )
    )
    # WHEN both read it, THEN the same answer, or both refuse it
    cut, whole = _parsed(read_answer, broken), _parsed(_whole, broken)
    assert cut[0] == whole[0]
    if cut[0] == "answer":
        assert cut[1] == _plain(whole[1]) or cut[1] == whole[1]


@settings(max_examples=300, deadline=None)
@given(body=answers(odd=False))
def test_every_image_of_an_answer_as_the_service_writes_it_is_left_as_text(body):
    # GIVEN an answer as the service writes it: any characters, whitespace and member order
    # WHEN it is read with its images cut out
    cut = _parsed(read_answer, body)
    # THEN every image is left as text, and parses to what orjson read there
    assert cut == ("answer", _plain(orjson.loads(body)))


def test_a_plain_answer_leaves_every_image_as_text_and_parses_the_rest():
    # GIVEN an answer of INSERT, MODIFY and REMOVE records with their images, as the service writes it
    listed = [stream_record(event, wire_timestamp=True) for event in ("INSERT", "MODIFY", "REMOVE")]
    body = orjson.dumps({"Records": listed, "NextShardIterator": "next"})
    # WHEN it is read
    answer = read_answer("GetRecords", body, "application/x-amz-json-1.0")
    # THEN each image is left as its text, everything else is parsed
    for name, count in (("NewImage", 2), ("OldImage", 2)):
        images = [record["dynamodb"][name] for record in answer["Records"] if name in record["dynamodb"]]
        assert len(images) == count and all(isinstance(image, ImageText) for image in images)
        assert [image.item() for image in images] == [
            record["dynamodb"][name] for record in listed if name in record["dynamodb"]
        ]
    assert answer["Records"][1]["dynamodb"]["Keys"] == listed[1]["dynamodb"]["Keys"]
    assert answer["NextShardIterator"] == "next"


def test_a_record_with_its_images_as_text_reads_and_dead_letters_as_it_does_parsed():
    # GIVEN records read from an answer (images as text), and the same records parsed whole
    listed = [stream_record(event, wire_timestamp=True) for event in ("REMOVE", "MODIFY", "INSERT")]
    body = orjson.dumps({"Records": listed})
    read = read_answer("GetRecords", body, "application/x-amz-json-1.0")["Records"]
    for as_text, parsed in zip(read, orjson.loads(body)["Records"], strict=True):
        # WHEN each is read as a stream record (in C and in Python) and dead-lettered whole
        record, python = StreamRecord.from_wire(as_text), StreamRecord.python_from_wire(as_text)
        # THEN the same images, and the same dead letter, its image and its raw record included
        assert record.old_image == python.old_image == StreamRecord.from_wire(parsed).old_image
        assert record.new_image == python.new_image == StreamRecord.from_wire(parsed).new_image
        letters = [letter_for("shard", raw, "rejected", keep_raw=True) for raw in (as_text, parsed)]
        assert letters[0].document is not None
        assert to_json(letters[0], "now") == to_json(letters[1], "now")
