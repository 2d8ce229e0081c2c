"""The shared factories produce what boto3 really returns, so tests built on them mean something."""

from __future__ import annotations

import datetime as dt

import botocore.session
import pytest

from consumer.pipeline.records import StreamRecord
from tests.support.factories import stream_record

MODEL = botocore.session.get_session().get_service_model("dynamodbstreams")


def assert_fits_shape(value, shape, path="Record"):
    """Every key and Python type of ``value`` is what botocore's parser gives for ``shape``."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), path
        unknown = set(value) - set(shape.members)
        assert not unknown, f"{path} has members boto3 never returns: {unknown}"
        for name, member in value.items():
            assert_fits_shape(member, shape.members[name], f"{path}.{name}")
    elif kind == "map":
        assert isinstance(value, dict), path
        for key, member in value.items():
            assert isinstance(key, str), path
            assert_fits_shape(member, shape.value, f"{path}[{key!r}]")
    elif kind == "list":
        assert isinstance(value, list), path
        for i, member in enumerate(value):
            assert_fits_shape(member, shape.member, f"{path}[{i}]")
    else:
        python_type = {"string": str, "long": int, "integer": int, "boolean": bool, "blob": bytes}.get(kind)
        if kind == "timestamp":
            assert isinstance(value, dt.datetime) and value.tzinfo is not None, f"{path} is not an aware datetime"
        else:
            assert isinstance(value, python_type), f"{path} is {type(value).__name__}, boto3 gives {kind}"


@pytest.mark.parametrize(
    ("event", "view_type", "ttl"),
    [
        ("INSERT", "NEW_AND_OLD_IMAGES", False),
        ("MODIFY", "NEW_IMAGE", False),
        ("MODIFY", "OLD_IMAGE", False),
        ("REMOVE", "KEYS_ONLY", False),
        ("REMOVE", "NEW_AND_OLD_IMAGES", True),
    ],
)
def test_stream_record_has_the_shape_boto3_returns(event, view_type, ttl):
    # GIVEN a factory record with every kind of attribute value
    image = {
        "pk": {"S": "a"},
        "n": {"N": "1.5"},
        "b": {"B": b"\x00"},
        "sets": {"L": [{"SS": ["x"]}, {"NS": ["1"]}, {"BS": [b"\x01"]}]},
        "m": {"M": {"null": {"NULL": True}, "bool": {"BOOL": False}}},
    }
    raw = stream_record(event, keys={"pk": {"S": "a"}}, new_image=image, old_image=image, view_type=view_type, ttl=ttl)

    # WHEN it is checked against botocore's model of GetRecords' Record
    # THEN every member name and value type is one boto3 produces
    assert_fits_shape(raw, MODEL.shape_for("Record"))


def test_images_follow_the_event_and_the_stream_view_type():
    def images(event, view_type):
        body = stream_record(event, view_type=view_type)["dynamodb"]
        return ("NewImage" in body, "OldImage" in body)

    assert images("INSERT", "NEW_AND_OLD_IMAGES") == (True, False)
    assert images("MODIFY", "NEW_AND_OLD_IMAGES") == (True, True)
    assert images("REMOVE", "NEW_AND_OLD_IMAGES") == (False, True)
    assert images("MODIFY", "KEYS_ONLY") == (False, False)
    assert images("MODIFY", "OLD_IMAGE") == (False, True)


def test_default_sequence_numbers_are_long_increasing_digit_strings():
    # GIVEN records made one after another without a sequence number
    numbers = [stream_record()["dynamodb"]["SequenceNumber"] for _ in range(3)]

    # THEN they are 21–40 digits, above 2^63 - 1, and increase numerically
    assert all(n.isdigit() and 21 <= len(n) <= 40 and int(n) > 2**63 - 1 for n in numbers)
    assert [int(n) for n in numbers] == sorted(int(n) for n in numbers)
    assert len(set(numbers)) == 3


def test_factory_records_decode():
    # GIVEN default records of each event WHEN decoded THEN they are valid
    for event in ("INSERT", "MODIFY", "REMOVE"):
        assert StreamRecord.from_wire(stream_record(event)).event_name == event


def test_wire_timestamp_gives_the_number_the_wire_json_has():
    raw = stream_record(second=1_700_000_000.25, wire_timestamp=True)
    assert raw["dynamodb"]["ApproximateCreationDateTime"] == 1_700_000_000.25
