"""The version clock of a shard in KCL mode, kept on the KCL's own lease item.

The daemon owns the lease table (``applicationName``); our processor adds two attributes to its
shard's item: ``checkpointVersion`` (the clock after the last record settled) and
``checkpointVersionAt`` (the sequence number it belongs to, or ``SHARD_END``). They are written
*before* each KCL checkpoint, with one conditional write that requires

* the item's ``checkpoint`` still to be the one the batch started from,
* its ``leaseOwner`` still to be the daemon that owned the lease when this processor started (read
  at ``start``), and
* the stored version not to be above the new one (``attribute_not_exists OR ≤``: the clock only
  grows in the condition itself, not only in the writer's logic),

so:

* the stored version is never below the version of any record at or before the KCL checkpoint
  (the clock only grows, and it is stored before the checkpoint moves);
* a processor that lost its shard to another daemon fails the condition as soon as the lease
  changed owner, and stops before checkpointing (``LeaseLost``): paused and woken up late, it can
  never lower the clock the new owner stored (which would make the new owner's next change lose).

``starting_version`` (pure) decides where a processor's clock starts at ``initialize``: the item's
stored version; for a shard never checkpointed with a version, the highest final version of its
parents (KCL keeps a parent's lease until its children have progressed), so a child's versions
start above its parents'; otherwise 0. When ``checkpointVersionAt`` equals the checkpoint, a
replay from there gives every record exactly the version it had (deterministic replay); when a
crash fell between the version write and the checkpoint, the clock starts ahead and the replayed
records get higher versions than before, which still converges (docs/versioning.md, "KCL mode").

Thread-compatible: one processor (one shard) per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from consumer.errors import ConfigError, ConsumerError

log = structlog.get_logger(__name__)

Item = dict[str, dict[str, Any]]
VERSION, VERSION_AT = "checkpointVersion", "checkpointVersionAt"


@dataclass(frozen=True)
class Start:
    """Where a shard's clock starts, and why (for the log)."""

    version: int
    reason: str


def starting_version(lease: Item | None, parents: dict[str, Item | None]) -> Start:
    """The clock at ``initialize`` from the shard's lease item and its parents' items (None: gone)."""
    if lease is not None and VERSION in lease:
        at = lease.get(VERSION_AT, {}).get("S")
        checkpoint = lease.get("checkpoint", {}).get("S")
        if at == checkpoint:
            return Start(int(lease[VERSION]["N"]), "stored at the checkpoint")
        return Start(int(lease[VERSION]["N"]), f"stored at {at}, ahead of checkpoint {checkpoint}")
    known = [int(item[VERSION]["N"]) for item in parents.values() if item is not None and VERSION in item]
    if known:
        return Start(max(known), "the parents' final version")
    if parents:
        return Start(0, "parents without a stored version: versions from the records' timestamps")
    return Start(0, "a shard without parents, never checkpointed")


def parent_ids(lease: Item | None) -> list[str]:
    """The parent shard ids on a KCL lease item (``parentShardId``, a string set)."""
    if lease is None:
        return []
    value = lease.get("parentShardId", {})
    return sorted(value.get("SS", [])) or ([value["S"]] if "S" in value else [])


class KclVersionStore:
    """Reads and writes the version attributes on the KCL lease table's items."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._owner: str | None = None  # the lease's owner when this processor started: our daemon

    def start(self, shard_id: str) -> Start:
        """Where the shard's clock starts; remembers the lease's owner, which every ``save`` requires."""
        lease = self._get(shard_id)
        if lease is None:
            raise ConfigError(
                f"no lease for {shard_id} in table {self._table!r}: set CDC_KCL_LEASE_TABLE to the daemon's lease "
                "table (its applicationName)"
            )
        self._owner = lease.get("leaseOwner", {}).get("S")
        return starting_version(lease, {parent: self._get(parent) for parent in parent_ids(lease)})

    def save(self, shard_id: str, version: int, at: str, expected_checkpoint: str) -> bool:
        """Store the clock after the batch that ends at ``at``; False when the lease is no longer ours
        (its checkpoint is no longer ``expected_checkpoint``, its owner changed) or holds a later clock."""
        condition = "#checkpoint = :expected AND (attribute_not_exists(#v) OR #v <= :v)"
        names = {"#v": VERSION, "#at": VERSION_AT, "#checkpoint": "checkpoint"}
        values = {":v": {"N": str(version)}, ":at": {"S": at}, ":expected": {"S": expected_checkpoint}}
        if self._owner is not None:
            condition += " AND #owner = :owner"
            names["#owner"] = "leaseOwner"
            values[":owner"] = {"S": self._owner}
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": shard_id}},
                UpdateExpression="SET #v = :v, #at = :at",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise ConsumerError(f"storing the version of {shard_id} in {self._table!r} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise ConsumerError(f"storing the version of {shard_id} in {self._table!r} failed: {exc}") from exc
        return True

    def _get(self, shard_id: str) -> Item | None:
        try:
            answer = self._dynamodb.get_item(
                TableName=self._table, Key={"leaseKey": {"S": shard_id}}, ConsistentRead=True
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise ConfigError(
                    f"KCL lease table {self._table!r} does not exist: set CDC_KCL_LEASE_TABLE to the daemon's "
                    "applicationName"
                ) from exc
            raise ConsumerError(f"reading the lease of {shard_id} from {self._table!r} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise ConsumerError(f"reading the lease of {shard_id} from {self._table!r} failed: {exc}") from exc
        return answer.get("Item")
