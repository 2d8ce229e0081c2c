"""What a dead letter holds, and its one serialisation (pure, thread-safe).

A dead letter says which change could not be applied and why, and holds what a person or
``consumer redrive`` needs to act on it, without spreading more of the item than the index shows:

* ``record``: the change's identity — ``eventID``, ``eventName`` and ``dynamodb.Keys`` /
  ``SequenceNumber`` / ``ApproximateCreationDateTime`` as the stream gave them (redrive reads the
  item's current state by its keys);
* ``document``: the item image *as it would have been indexed*, shaped by the same rules
  (``CDC_INCLUDE_FIELDS``, ``CDC_DROP_FIELDS``, ``CDC_MASK_FIELDS``): no field the index would not
  hold, no unmasked value; None when the record could not be decoded that far;
* ``raw_record``: the whole stream record, only with ``CDC_DEAD_LETTER_RAW_RECORDS=true``.

The key attributes are kept as they are: without them no one could find the item again.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
from dataclasses import dataclass
from typing import Any

import orjson

from consumer.pipeline.attributes import canonical_decimal_text, item_to_json
from consumer.pipeline.projection import shape_document
from consumer.pipeline.projection_rules import PROJECT_ALL, ProjectionRules
from consumer.pipeline.records import ImageText, as_image


@dataclass(frozen=True)
class DeadLetter:
    """A change that could not be applied, and why."""

    shard_id: str
    sequence_number: str | None
    error: str
    record: dict[str, Any]
    attempts: int = 1
    document: dict[str, Any] | None = None
    raw_record: dict[str, Any] | None = None


def letter_for(
    shard_id: str,
    raw: dict[str, Any],
    error: str,
    rules: ProjectionRules = PROJECT_ALL,
    keep_raw: bool = False,
    attempts: int = 1,
) -> DeadLetter:
    """The dead letter of stream record ``raw`` (as GetRecords gave it, possibly malformed)."""
    body = raw.get("dynamodb") if isinstance(raw.get("dynamodb"), dict) else {}
    sequence_number = body.get("SequenceNumber") if isinstance(body.get("SequenceNumber"), str) else None
    identity = {
        "eventID": raw.get("eventID"),
        "eventName": raw.get("eventName"),
        "dynamodb": {
            "Keys": body.get("Keys"),
            "SequenceNumber": body.get("SequenceNumber"),
            "ApproximateCreationDateTime": body.get("ApproximateCreationDateTime"),
        },
    }
    return DeadLetter(
        shard_id,
        sequence_number,
        error,
        identity,
        attempts,
        _shaped_image(body, rules),
        raw if keep_raw else None,
    )


def _shaped_image(body: dict[str, Any], rules: ProjectionRules) -> dict[str, Any] | None:
    image = as_image(body.get("NewImage"))
    if not isinstance(image, dict):
        image = as_image(body.get("OldImage"))
    if not isinstance(image, dict):
        return None
    try:
        return shape_document(item_to_json(image), rules)
    except Exception:  # noqa: BLE001 - a record that cannot be shaped is dead-lettered without its image
        return None


def to_json(letter: DeadLetter, now: str) -> bytes:
    """The one serialisation of a dead letter (no trailing newline); ``now`` is ISO 8601 UTC."""
    body: dict[str, Any] = {
        "dead_lettered_at": now,
        "shard_id": letter.shard_id,
        "sequence_number": letter.sequence_number,
        "error": letter.error,
        "attempts": letter.attempts,
        "record": letter.record,
        "document": letter.document,
    }
    if letter.raw_record is not None:
        body["raw_record"] = letter.raw_record
    return orjson.dumps(body, default=_json_default)


def _json_default(value: Any) -> Any:
    """boto3 hands records with bytes (B, BS) and datetimes, shaped documents hold the number
    policy's Decimals, raw records may hold images as the answer spelt them: keep them all lossless."""
    if isinstance(value, ImageText):
        return orjson.Fragment(value.text)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, set):
        return sorted(value)
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return orjson.Fragment(canonical_decimal_text(value))
    return str(value)
