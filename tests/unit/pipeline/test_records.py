"""StreamRecord.from_wire: validation at the edge, TTL deletes, and whole-second timestamps."""

from __future__ import annotations

import dataclasses
import datetime as dt

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.errors import RecordError
from consumer.pipeline import records
from consumer.pipeline.records import ImageText, StreamRecord
from tests.support.factories import DEFAULT_SECOND, stream_record


def broken(record: dict, path: str, value: object = ...) -> dict:
    """``record`` with the field at ``path`` (``dynamodb.Keys``) removed, or set to ``value``."""
    *parents, name = path.split(".")
    target = record
    for parent in parents:
        target = target[parent]
    if value is ...:
        del target[name]
    else:
        target[name] = value
    return record


def test_a_boto3_record_is_decoded():
    # GIVEN a MODIFY record as boto3 returns it
    raw = stream_record("MODIFY", keys={"pk": {"S": "a"}}, new_image={"pk": {"S": "a"}, "n": {"N": "1"}}, seq="123")

    # WHEN it is decoded
    record = StreamRecord.from_wire(raw)

    # THEN its fields are typed, and the raw record is kept whole for the dead-letter queue
    assert record.event_name == "MODIFY"
    assert record.keys == {"pk": {"S": "a"}}
    assert record.new_image == {"pk": {"S": "a"}, "n": {"N": "1"}}
    assert record.sequence_number == "123"
    assert record.approximate_second == DEFAULT_SECOND
    assert record.event_id == raw["eventID"]
    assert record.size_bytes == raw["dynamodb"]["SizeBytes"]
    assert not record.is_ttl_delete
    assert record.raw is raw


def test_sequence_numbers_compare_as_numbers_not_text():
    # GIVEN two records whose sequence numbers have different lengths (21 and 22 digits)
    shorter = StreamRecord.from_wire(stream_record(seq="9" * 21))
    longer = StreamRecord.from_wire(stream_record(seq="1" + "0" * 21))

    # WHEN they are compared THEN the longer number is the later one (as text it would sort first)
    assert longer.sequence > shorter.sequence
    assert longer.sequence_number < shorter.sequence_number


def test_a_remove_record_has_no_new_image_even_if_the_stream_sends_one():
    # GIVEN a REMOVE record WHEN decoded THEN there is no document to index
    raw = stream_record("REMOVE")
    raw["dynamodb"]["NewImage"] = {"pk": {"S": "item-1"}}
    assert StreamRecord.from_wire(raw).new_image is None


@pytest.mark.parametrize("view_type", ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"])
def test_a_remove_record_needs_only_its_keys(view_type):
    # GIVEN a REMOVE record of any stream view type WHEN decoded THEN it is valid
    assert StreamRecord.from_wire(stream_record("REMOVE", view_type=view_type)).event_name == "REMOVE"


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("dynamodb", ..., "dynamodb"),
        ("dynamodb", "not an object", "dynamodb"),
        ("eventName", ..., "eventName"),
        ("eventName", "UPSERT", "eventName"),
        ("dynamodb.SequenceNumber", ..., "SequenceNumber"),
        ("dynamodb.SequenceNumber", 6200000000002513011398, "SequenceNumber"),
        ("dynamodb.SequenceNumber", "62000000000025130113x8", "SequenceNumber"),
        ("dynamodb.SequenceNumber", "", "SequenceNumber"),
        ("dynamodb.SequenceNumber", "-1", "SequenceNumber"),
        ("dynamodb.SequenceNumber", "²³", "SequenceNumber"),  # str.isdigit() says yes, int() says no
        ("dynamodb.Keys", ..., "Keys"),
        ("dynamodb.Keys", {}, "Keys"),
        ("dynamodb.Keys", [["pk", "a"]], "Keys"),
        ("dynamodb.NewImage", ..., "NewImage"),
        ("dynamodb.NewImage", "x", "NewImage"),
        ("dynamodb.ApproximateCreationDateTime", ..., "ApproximateCreationDateTime"),
        ("dynamodb.ApproximateCreationDateTime", "2024-01-01T00:00:00Z", "ApproximateCreationDateTime"),
        ("dynamodb.ApproximateCreationDateTime", True, "ApproximateCreationDateTime"),
        ("dynamodb.ApproximateCreationDateTime", float("nan"), "ApproximateCreationDateTime"),
        ("dynamodb.ApproximateCreationDateTime", float("inf"), "ApproximateCreationDateTime"),
        ("dynamodb.SizeBytes", "big", "SizeBytes"),
        ("dynamodb.SizeBytes", None, "SizeBytes"),
    ],
)
def test_each_missing_or_malformed_field_raises_record_error_naming_it(path, value, named):
    # GIVEN a MODIFY record with one field missing or malformed
    raw = broken(stream_record("MODIFY"), path, value)

    # WHEN it is decoded
    # THEN RecordError names the field, so the dead letter says what was wrong
    with pytest.raises(RecordError, match=named):
        StreamRecord.from_wire(raw)


@pytest.mark.parametrize("event", ["INSERT", "MODIFY"])
@pytest.mark.parametrize("view_type", ["KEYS_ONLY", "OLD_IMAGE"])
def test_an_upsert_without_new_image_names_the_stream_view_type_problem(event, view_type):
    # GIVEN an INSERT/MODIFY from a stream that does not carry new images
    # WHEN decoded THEN RecordError says which view types are the cause
    with pytest.raises(RecordError, match="KEYS_ONLY or OLD_IMAGE"):
        StreamRecord.from_wire(stream_record(event, view_type=view_type))


# --- TTL deletes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "identity",
    [
        {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"},  # boto3 (the API model's names)
        {"type": "Service", "principalId": "dynamodb.amazonaws.com"},  # Lambda events, the TTL guide
    ],
)
def test_a_ttl_delete_is_recognised_by_its_service_identity(identity):
    # GIVEN a REMOVE made by DynamoDB's TTL process, its identity spelt as boto3 or as Lambda does
    raw = stream_record("REMOVE")
    raw["userIdentity"] = identity

    # WHEN decoded THEN it is marked as a TTL delete
    assert StreamRecord.from_wire(raw).is_ttl_delete


def test_the_factorys_ttl_delete_is_recognised():
    assert StreamRecord.from_wire(stream_record("REMOVE", ttl=True)).is_ttl_delete


@pytest.mark.parametrize(
    "identity",
    [
        None,
        {},
        {"Type": "Service", "PrincipalId": "someone-else.amazonaws.com"},
        {"Type": "User", "PrincipalId": "dynamodb.amazonaws.com"},
        {"PrincipalId": "dynamodb.amazonaws.com"},
        {"type": "Service"},
    ],
)
def test_other_deletes_are_not_ttl_deletes(identity):
    # GIVEN a REMOVE whose userIdentity is absent or not exactly DynamoDB's TTL service principal
    raw = stream_record("REMOVE")
    if identity is not None:
        raw["userIdentity"] = identity

    # WHEN decoded THEN it is an ordinary delete
    assert not StreamRecord.from_wire(raw).is_ttl_delete


# --- ApproximateCreationDateTime -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "second"),
    [
        (dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC), 1_700_000_000),
        (dt.datetime(2023, 11, 14, 22, 13, 20, 999_000, tzinfo=dt.UTC), 1_700_000_000),  # moto has ms
        (dt.datetime(2023, 11, 15, 0, 13, 20, tzinfo=dt.timezone(dt.timedelta(hours=2))), 1_700_000_000),
        (1_700_000_000, 1_700_000_000),
        (1_700_000_000.999, 1_700_000_000),
        (0, 0),
    ],
)
def test_approximate_second_is_whole_unix_seconds(value, second):
    # GIVEN a timestamp as boto3 (aware datetime, any zone) or the wire JSON (a number) gives it
    raw = stream_record()
    raw["dynamodb"]["ApproximateCreationDateTime"] = value

    # WHEN decoded THEN it is rounded down to the whole Unix second
    assert StreamRecord.from_wire(raw).approximate_second == second


@given(st.integers(0, 4_000_000_000), st.integers(0, 999_999))
@settings(max_examples=100)
def test_datetime_and_number_forms_give_the_same_second(second, microsecond):
    # GIVEN one instant as a datetime and as a number of seconds
    instant = dt.datetime.fromtimestamp(second, dt.UTC).replace(microsecond=microsecond)
    as_datetime = stream_record(second=second)
    as_datetime["dynamodb"]["ApproximateCreationDateTime"] = instant
    as_number = stream_record(second=second + microsecond / 1_000_000, wire_timestamp=True)

    # WHEN both are decoded THEN both give the whole second
    assert StreamRecord.from_wire(as_datetime).approximate_second == second
    assert StreamRecord.from_wire(as_number).approximate_second == second


# --- the compiled reading (consumer/pipeline/_attributes_records.c) -----------------------------

# What a field can hold: what the wire has, and what a broken producer or another transport might
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.sampled_from(["", "0", "12", "١٢", "INSERT", "REMOVE", "Service", "dynamodb.amazonaws.com"]),
    st.just({}),
    st.just([]),
    st.just(dt.datetime(2024, 6, 1, 12, 0, 0, 500000, tzinfo=dt.UTC)),
)
FIELDS = [
    "eventName",
    "eventID",
    "userIdentity",
    "userIdentity.type",
    "userIdentity.principalId",
    "userIdentity.Type",
    "userIdentity.PrincipalId",
    "_cdc_decode_error",
    "dynamodb",
    "dynamodb.Keys",
    "dynamodb.NewImage",
    "dynamodb.OldImage",
    "dynamodb.SequenceNumber",
    "dynamodb.ApproximateCreationDateTime",
    "dynamodb.SizeBytes",
]


@st.composite
def wire_records(draw: st.DrawFn) -> dict:
    """A record in any form: as the wire has it, with TTL identities, and with fields removed or odd."""
    record = stream_record(
        draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"])),
        ttl=draw(st.booleans()),
        second=draw(st.one_of(st.integers(0, 2**32), st.floats(0, 2**32))),
        view_type=draw(st.sampled_from(["NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY"])),
        wire_timestamp=draw(st.booleans()),
    )
    if "userIdentity" in record and draw(st.booleans()):  # Lambda's spelling instead of boto3's, or the reverse
        record["userIdentity"] = {
            {"Type": "type", "PrincipalId": "principalId", "type": "Type", "principalId": "PrincipalId"}[name]: value
            for name, value in record["userIdentity"].items()
        }
    body = record.get("dynamodb")
    for name in ("NewImage", "OldImage"):
        if isinstance(body.get(name), dict) and draw(st.booleans()):  # as consumer.shards.raw_records leaves it
            body[name] = ImageText(orjson.dumps(body[name]))
    for path in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        parent = record
        *parents, name = path.split(".")
        for step in parents:
            parent = parent.setdefault(step, {}) if isinstance(parent, dict) else {}
        if isinstance(parent, dict):
            parent[name] = draw(st.one_of(ODD_VALUES, st.just(...)))
            if parent[name] is ...:
                del parent[name]
    return record


def _read(read, raw: dict) -> tuple:
    try:
        record = read(raw)
    except Exception as exc:  # the comparison is the point: whatever one raises, the other must too
        return ("raised", type(exc), str(exc))
    return ("record", type(record), vars(record), record.raw is raw)


@settings(max_examples=400, deadline=None)
@given(raw=wire_records())
def test_the_compiled_reading_is_the_python_one_on_any_record(raw):
    # GIVEN a record as the wire has it, as boto3 has it, or broken in up to three fields
    # WHEN from_wire (its fields read in C where they are plain) and the Python definition read it
    # THEN the same record, field by field and of the same types, or the same error
    compiled, python = _read(StreamRecord.from_wire, raw), _read(StreamRecord.python_from_wire, raw)
    assert compiled == python
    if compiled[0] == "record":
        assert [type(value) for value in compiled[2].values()] == [type(value) for value in python[2].values()]
        # AND an image left as text is the image the record had, once asked for
        for name, image_of in (("OldImage", lambda r: r.old_image), ("NewImage", lambda r: r.new_image)):
            image = raw["dynamodb"].get(name)
            expected = image.item() if isinstance(image, ImageText) else image if isinstance(image, dict) else None
            if name == "NewImage" and raw["eventName"] == "REMOVE":
                expected = None
            assert image_of(StreamRecord.from_wire(raw)) == image_of(StreamRecord.python_from_wire(raw)) == expected


def test_plain_wire_records_are_read_in_c():
    # GIVEN the project installed by make test (a C compiler present) and a record as the wire has it
    raw = stream_record("MODIFY", ttl=False, wire_timestamp=True)
    # THEN its fields are read in C, and they are the dataclass's fields, as its __init__ sets them
    fields = records.compiled_read_record(raw)
    assert fields is not None and list(fields) == [field.name for field in dataclasses.fields(StreamRecord)]
    assert StreamRecord.from_wire(raw) == StreamRecord.python_from_wire(raw)
