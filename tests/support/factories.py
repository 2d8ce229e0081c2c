"""Factories for test data shaped exactly like what the consumer receives.

``stream_record`` builds one record as boto3's ``dynamodbstreams.get_records`` returns it (the
low-level client: AttributeValues in ``{"S": ...}`` form, ``B`` as bytes, ``ApproximateCreationDateTime``
as a timezone-aware ``datetime``). Tests that need the raw wire JSON form instead pass
``wire_timestamp=True`` (a number of seconds) and base64 text for binary values.

``shard`` and ``lease`` build the frozen dataclasses of ``consumer.shards.api`` and
``consumer.leases.model`` with defaults that make sense, so a test names only what it is about.

Defaults are deterministic: sequence numbers count up from ``FIRST_SEQUENCE`` across calls (strictly
increasing, 22 digits like real ones, never contiguous), and the event id is derived from the
sequence number.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from typing import Any

from consumer.leases.model import TRIM_HORIZON, Lease
from consumer.pipeline.bulk import BulkAction
from consumer.pipeline.doc_ids import KeySchema
from consumer.pipeline.projection import to_bulk_actions
from consumer.pipeline.projection_rules import PROJECT_ALL, ProjectionRules
from consumer.pipeline.routes import Routing, single_route
from consumer.shards.api import Shard

FIRST_SEQUENCE = 6_200_000_000_002_513_011_398  # 22 digits, > 2^63 - 1, as DynamoDB's are
SEQUENCE_STEP = 100_000_000_917  # sequence numbers are not contiguous
DEFAULT_SECOND = 1_700_000_000  # 2023-11-14T22:13:20Z
DEFAULT_KEYS: dict[str, Any] = {"pk": {"S": "item-1"}}
# boto3 (and the API model) name these Type / PrincipalId; Lambda events spell them type / principalId.
TTL_IDENTITY = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
VIEW_TYPES = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")

_sequence_counter = itertools.count()


def next_sequence_number() -> str:
    """A fresh sequence number, larger than every one handed out before in this process."""
    return str(FIRST_SEQUENCE + SEQUENCE_STEP * next(_sequence_counter))


def stream_record(
    event: str = "MODIFY",
    keys: dict[str, Any] | None = None,
    new_image: dict[str, Any] | None = None,
    old_image: dict[str, Any] | None = None,
    seq: str | int | None = None,
    second: float = DEFAULT_SECOND,
    ttl: bool = False,
    view_type: str = "NEW_AND_OLD_IMAGES",
    event_id: str | None = None,
    size_bytes: int | None = None,
    region: str = "us-east-1",
    wire_timestamp: bool = False,
) -> dict[str, Any]:
    """One GetRecords record (a fresh dict each call; tests may mutate it to break it).

    Args:
        event: ``eventName``: INSERT, MODIFY or REMOVE.
        keys: ``dynamodb.Keys``; defaults to ``{"pk": {"S": "item-1"}}``.
        new_image: the NewImage; defaults to the keys plus a ``payload`` attribute. Present only for
            INSERT / MODIFY and a view type that carries new images.
        old_image: the OldImage; defaults to the keys plus a ``payload`` attribute. Present only for
            MODIFY / REMOVE and a view type that carries old images.
        seq: ``SequenceNumber``; an int is turned into its digit string. Defaults to a fresh one
            (``next_sequence_number``).
        second: ``ApproximateCreationDateTime`` in Unix seconds (fractions allowed, as moto has ms).
        ttl: mark the record as a TTL delete (``userIdentity`` of the DynamoDB service principal).
            DynamoDB only sends that on REMOVE records.
        view_type: the stream's ``StreamViewType``; decides which images are present.
        event_id: ``eventID``; defaults to 32 hex digits derived from the sequence number.
        size_bytes: ``SizeBytes``; defaults to a plausible size of keys and images.
        region: ``awsRegion``.
        wire_timestamp: give ``ApproximateCreationDateTime`` as the wire JSON has it (a number)
            instead of the ``datetime`` boto3 gives.
    """
    if event not in ("INSERT", "MODIFY", "REMOVE"):
        raise ValueError(f"event must be INSERT, MODIFY or REMOVE, got {event!r}")
    if view_type not in VIEW_TYPES:
        raise ValueError(f"view_type must be one of {VIEW_TYPES}, got {view_type!r}")
    keys = dict(DEFAULT_KEYS if keys is None else keys)
    sequence_number = next_sequence_number() if seq is None else str(seq)
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": second if wire_timestamp else dt.datetime.fromtimestamp(second, dt.UTC),
        "Keys": keys,
        "SequenceNumber": sequence_number,
        "StreamViewType": view_type,
    }
    if event != "REMOVE" and view_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["NewImage"] = {**keys, "payload": {"S": "new"}} if new_image is None else new_image
    if event != "INSERT" and view_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["OldImage"] = {**keys, "payload": {"S": "old"}} if old_image is None else old_image
    body["SizeBytes"] = _approximate_size(body) if size_bytes is None else size_bytes
    record: dict[str, Any] = {
        "eventID": event_id or hashlib.md5(sequence_number.encode(), usedforsecurity=False).hexdigest(),
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": body,
    }
    if ttl:
        record["userIdentity"] = dict(TTL_IDENTITY)
    return record


def one_index(rules: ProjectionRules = PROJECT_ALL, index: str = "orders") -> Routing:
    """The routing without CDC_ROUTES: every item of table ``orders`` to ``index``, shaped by ``rules``."""
    return single_route("orders", index, rules)


def single_action(
    record: Any, schema: KeySchema, version: int, rules: ProjectionRules = PROJECT_ALL
) -> BulkAction | None:
    """The one action a record makes without routes (None when the rules filter it out)."""
    actions = to_bulk_actions(record, schema, version, one_index(rules))
    assert len(actions) <= 1, actions  # one index: a record never makes a companion tombstone
    return actions[0] if actions else None


def shard(
    shard_id: str,
    parent: str | None = None,
    closed: bool = False,
    starting_sequence: str | None = None,
) -> Shard:
    """A shard as DescribeStream lists it; ``closed`` gives it an ending sequence number."""
    start = starting_sequence or next_sequence_number()
    end = str(int(start) + 10 * SEQUENCE_STEP) if closed else None
    return Shard(shard_id, parent, start, end)


def lease(
    lease_key: str = "shardId-00000001",
    owner: str | None = None,
    counter: int = 0,
    checkpoint: str = TRIM_HORIZON,
    checkpoint_version: int = 0,
    parents: tuple[str, ...] | frozenset[str] = (),
    children: tuple[str, ...] | frozenset[str] = (),
    owner_switches: int = 0,
) -> Lease:
    """A lease snapshot; parents and children may be given as any iterable of shard ids."""
    return Lease(
        lease_key=lease_key,
        owner=owner,
        counter=counter,
        checkpoint=checkpoint,
        checkpoint_version=checkpoint_version,
        owner_switches_since_checkpoint=owner_switches,
        parent_shard_ids=frozenset(parents),
        child_shard_ids=frozenset(children),
    )


def _approximate_size(body: dict[str, Any]) -> int:
    images = (body.get("Keys"), body.get("NewImage"), body.get("OldImage"))
    return sum(len(repr(image)) for image in images if image is not None)


# More attributes than any index takes: OpenSearch's default total fields limit is 1000, the
# service's 3000 (three fields per attribute in the managed policy), so this refuses everywhere.
UNINDEXABLE_ATTRIBUTES = 1100


def unindexable_image(keys: dict[str, Any]) -> dict[str, Any]:
    """A valid item image that no index can hold: too many fields (a document OpenSearch cannot
    take at all, the one kind of refusal that is the record's, not the mapping's)."""
    return {**keys, **{f"attribute_{i}": {"S": "x"} for i in range(UNINDEXABLE_ATTRIBUTES)}}


def poison_batch() -> list[dict[str, Any]]:
    """A good record, one OpenSearch refuses (more fields than an index takes), one malformed
    (unknown eventName), and a good one after them."""
    good = stream_record("INSERT", keys={"pk": {"S": "a"}}, new_image={"pk": {"S": "a"}, "n": {"N": "1"}})
    conflicting = stream_record("INSERT", keys={"pk": {"S": "b"}}, new_image=unindexable_image({"pk": {"S": "b"}}))
    malformed = stream_record("INSERT", keys={"pk": {"S": "c"}})
    malformed["eventName"] = "UPSERT"
    later = stream_record("INSERT", keys={"pk": {"S": "d"}})
    return [good, conflicting, malformed, later]
