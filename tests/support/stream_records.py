"""How a change becomes a DynamoDB Streams record as the test stream server stores and sends it.

Pure functions, no state:

* ``wire_value``: boto3 form (``datetime``, ``bytes``) to wire JSON form (epoch seconds, base64 text);
* ``shaped_record``: the record GetRecords returns, with the stream's sequence number, view type
  and size, the images the view type carries, and ApproximateCreationDateTime rounded down to the
  second as DynamoDB does;
* ``partition_hash``: the md5 hash that routes a change to a shard, equal for equal DynamoDB keys
  however their numbers are spelled;
* ``stream_label``: a StreamLabel (ISO 8601 UTC with milliseconds).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import Any

NEW_IMAGE_VIEWS = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
OLD_IMAGE_VIEWS = ("OLD_IMAGE", "NEW_AND_OLD_IMAGES")


def shaped_record(wire: dict[str, Any], seq: int, arn: str, view_type: str, region: str, now: float) -> dict[str, Any]:
    """The stored record for change ``wire`` (wire form) numbered ``seq`` in stream ``arn``."""
    source = wire["dynamodb"]
    second = source.get("ApproximateCreationDateTime")
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": math.floor(now if second is None else float(second)),
        "Keys": source["Keys"],
    }
    if view_type in NEW_IMAGE_VIEWS and source.get("NewImage") is not None:
        body["NewImage"] = source["NewImage"]
    if view_type in OLD_IMAGE_VIEWS and source.get("OldImage") is not None:
        body["OldImage"] = source["OldImage"]
    body["SequenceNumber"] = str(seq)
    body["SizeBytes"] = max(1, len(json.dumps([body.get(name) for name in ("Keys", "NewImage", "OldImage")])))
    body["StreamViewType"] = view_type
    record = {
        "eventID": wire.get("eventID") or hashlib.md5(f"{arn}/{seq}".encode(), usedforsecurity=False).hexdigest(),
        "eventName": wire["eventName"],
        "eventVersion": wire.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": wire.get("awsRegion", region),
        "dynamodb": body,
    }
    identity = wire.get("userIdentity")
    if identity:  # the API model's names; Lambda events spell them type / principalId
        record["userIdentity"] = {
            "Type": identity.get("Type", identity.get("type")),
            "PrincipalId": identity.get("PrincipalId", identity.get("principalId")),
        }
    return record


def wire_value(value: Any) -> Any:
    """A copy of ``value`` in wire JSON form: datetimes as epoch seconds, bytes as base64 text."""
    if isinstance(value, dict):
        return {key: wire_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [wire_value(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return value


def partition_hash(keys: dict[str, Any]) -> int:
    """md5 of the canonical key (wire form), as an int in [0, 2^128): equal DynamoDB keys hash alike,
    however their numbers are spelled ("1.50" and "1.5")."""
    canonical = json.dumps(
        {name: _canonical_value(value) for name, value in keys.items()}, sort_keys=True, separators=(",", ":")
    )
    return int(hashlib.md5(canonical.encode(), usedforsecurity=False).hexdigest(), 16)


def stream_label(epoch_seconds: float) -> str:
    """A StreamLabel as DynamoDB writes it: an ISO 8601 UTC time with milliseconds."""
    moment = dt.datetime.fromtimestamp(epoch_seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _canonical_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"N"}:
        try:
            number = Decimal(value["N"])
        except InvalidOperation:
            return value
        with localcontext(Context(prec=100)):  # DynamoDB numbers have 38 digits: never round them
            return {"N": "0" if number == 0 else str(number.normalize())}
    return value
