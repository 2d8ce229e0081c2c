"""KCL multilang records → the wire form of DynamoDB stream records that ``StreamRecord.from_wire``
reads. Pure.

Under the DynamoDB Streams adapter each multilang record's ``data`` is base64 of the stream record
as JSON, with these differences from GetRecords' wire form: ``ApproximateCreationDateTime`` is in
epoch *milliseconds*, and an image the event has not is an empty object (INSERT carries
``"OldImage": {}``, REMOVE ``"NewImage": {}``). The envelope's ``sequenceNumber`` is the record's
``SequenceNumber``; its ``partitionKey`` is not the item key.

A record whose ``data`` is not such a record is not dropped: it becomes a wire record carrying
``DECODE_ERROR_FIELD`` (and the envelope's sequence number), which ``StreamRecord.from_wire``
refuses with that message, so it is dead-lettered like any malformed record.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from consumer.pipeline.records import DECODE_ERROR_FIELD


def wire_record(data: str, envelope_sequence_number: str | None) -> dict[str, Any]:
    """The wire-form stream record in a multilang record's base64 ``data``."""
    try:
        record = orjson.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError, TypeError) as exc:
        return _undecodable(
            f"KCL record data is not base64 of a JSON stream record ({exc})", envelope_sequence_number, data
        )
    if not isinstance(record, dict) or not isinstance(record.get("dynamodb"), dict):
        return _undecodable("KCL record data is JSON but not a DynamoDB stream record", envelope_sequence_number, data)
    body = dict(record["dynamodb"])
    for image in ("NewImage", "OldImage"):
        if body.get(image) == {}:
            del body[image]
    created = body.get("ApproximateCreationDateTime")
    if isinstance(created, (int, float)) and not isinstance(created, bool):
        body["ApproximateCreationDateTime"] = created / 1000  # milliseconds here, seconds on the wire
    return {**record, "dynamodb": body}


def _undecodable(error: str, sequence_number: str | None, data: Any) -> dict[str, Any]:
    preview = data[:512] if isinstance(data, str) else repr(data)[:512]
    return {
        DECODE_ERROR_FIELD: error,
        "dynamodb": {"SequenceNumber": sequence_number} if sequence_number else {},
        "kclData": preview,
    }
