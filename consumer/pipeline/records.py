"""Typed view of a DynamoDB Streams record, validated once at the edge.

``StreamRecord.from_wire`` accepts a record as boto3 returns it (or as the wire JSON has it) and
either yields a frozen ``StreamRecord`` or raises ``RecordError`` naming the field at fault; the
raw dict is kept so a poison record can be dead-lettered whole. Its images may be ``ImageText``s,
each image as the GetRecords answer spelt it (``consumer.shards.raw_records``): it is parsed the first
time ``new_image`` or ``old_image`` is asked for, which a plain INSERT, MODIFY or REMOVE never does
(its NewImage is written as a document from its text: ``consumer.pipeline.bulk.image_lines``).

Where the build had a C compiler, the fields of a plain wire record are read in C
(``consumer/pipeline/_attributes_records.c``); every other record is read by ``python_from_wire``,
the definition. Pure and thread-safe.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from consumer.errors import RecordError


class ImageText:
    """An item image as a GetRecords answer spelt it: its DynamoDB JSON text, checked to be JSON
    orjson reads (``consumer/pipeline/_attributes_pages.c``), parsed by ``item`` when asked for."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = text

    def item(self) -> dict[str, Any]:
        """The image, parsed now (each call parses it again)."""
        return orjson.loads(self.text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageText) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"ImageText({len(self.text)} bytes)"


def as_image(value: Any) -> Any:
    """``value`` with an ``ImageText`` parsed into the image it spells; any other value as it is."""
    return value.item() if type(value) is ImageText else value


try:
    from consumer.pipeline._attributes import read_record as compiled_read_record
    from consumer.pipeline._attributes import register_image_text
except ImportError:  # built without a C compiler: python_from_wire serves
    compiled_read_record = None
else:
    register_image_text(ImageText)

EventName = Literal["INSERT", "MODIFY", "REMOVE"]
EVENT_NAMES = ("INSERT", "MODIFY", "REMOVE")
TTL_PRINCIPAL = "dynamodb.amazonaws.com"
# Set by a transport that received a record it could not decode (consumer.kcl.records): the record
# is refused with this message, so it is dead-lettered instead of dropped.
DECODE_ERROR_FIELD = "_cdc_decode_error"


@dataclass(frozen=True)
class StreamRecord:
    """One change of one item, as the stream delivered it."""

    event_id: str
    event_name: EventName
    keys: dict[str, Any] = field(repr=False)
    new_image_as_read: dict[str, Any] | ImageText | None = field(repr=False)  # new_image, maybe unparsed
    old_image_as_read: dict[str, Any] | ImageText | None = field(repr=False)  # old_image, maybe unparsed
    sequence_number: str
    approximate_second: int
    size_bytes: int
    is_ttl_delete: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @functools.cached_property
    def new_image(self) -> dict[str, Any] | None:
        """The item after the change (None for a REMOVE); parsed here the first time when the answer left
        it as text."""
        return as_image(self.new_image_as_read)

    @functools.cached_property
    def old_image(self) -> dict[str, Any] | None:
        """The image before the change, when the stream has one; parsed here the first time when the
        answer left it as text."""
        return as_image(self.old_image_as_read)

    @property
    def sequence(self) -> int:
        """The sequence number as an int: compare these, never the strings."""
        return int(self.sequence_number)

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> StreamRecord:
        """Validate and wrap one record from GetRecords."""
        fields = compiled_read_record(raw) if compiled_read_record is not None else None
        if fields is None:
            return cls.python_from_wire(raw)
        record = object.__new__(cls)
        object.__setattr__(record, "__dict__", fields)  # every field, as __init__ would set them: faster
        return record

    @classmethod
    def python_from_wire(cls, raw: dict[str, Any]) -> StreamRecord:
        """``from_wire`` in Python throughout: the definition, and the path of every record C leaves to it."""
        if DECODE_ERROR_FIELD in raw:
            raise RecordError(str(raw[DECODE_ERROR_FIELD]))
        body = raw.get("dynamodb")
        if not isinstance(body, dict):
            raise RecordError("record has no 'dynamodb' object")
        event_name = raw.get("eventName")
        if event_name not in EVENT_NAMES:
            raise RecordError(f"eventName {event_name!r} is not one of {EVENT_NAMES}")
        sequence_number = body.get("SequenceNumber")
        if not is_sequence_number(sequence_number):
            raise RecordError(f"SequenceNumber {sequence_number!r} is not a digit string")
        keys = body.get("Keys")
        if not isinstance(keys, dict) or not keys:
            raise RecordError("record has no dynamodb.Keys")
        new_image = body.get("NewImage")
        if event_name != "REMOVE" and not isinstance(new_image, (dict, ImageText)):
            raise RecordError(f"{event_name} record has no NewImage: is the stream KEYS_ONLY or OLD_IMAGE?")
        # boto3 returns the API model's names (Type, PrincipalId); Lambda events and the TTL guide
        # spell them type, principalId. Accept both.
        identity = raw.get("userIdentity") or {}
        identity_type = identity.get("Type", identity.get("type"))
        principal = identity.get("PrincipalId", identity.get("principalId"))
        return cls(
            event_id=str(raw.get("eventID", "")),
            event_name=event_name,
            keys=keys,
            new_image_as_read=new_image if event_name != "REMOVE" else None,
            old_image_as_read=body.get("OldImage") if isinstance(body.get("OldImage"), (dict, ImageText)) else None,
            sequence_number=sequence_number,
            approximate_second=_whole_seconds(body.get("ApproximateCreationDateTime")),
            size_bytes=_size_bytes(body.get("SizeBytes", 0)),
            is_ttl_delete=identity_type == "Service" and principal == TTL_PRINCIPAL,
            raw=raw,
        )


def is_sequence_number(value: Any) -> bool:
    """A digit string; isascii() because str.isdigit() also accepts digits like "²" that int() refuses."""
    return isinstance(value, str) and value.isascii() and value.isdigit()


def _whole_seconds(value: Any) -> int:
    """ApproximateCreationDateTime as whole Unix seconds (boto3 gives datetime, wire JSON a number)."""
    if isinstance(value, dt.datetime):
        return int(value.timestamp() // 1)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return int(value // 1)
    raise RecordError(f"ApproximateCreationDateTime {value!r} is not a timestamp")


def _size_bytes(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RecordError(f"SizeBytes {value!r} is not a number of bytes") from None
