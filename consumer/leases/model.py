"""The lease of one shard, with the KCL's attribute names so existing tools can read the table.

Attributes: ``leaseKey`` (shard id), ``leaseOwner``, ``leaseCounter``, ``checkpoint`` (a sequence
number, or TRIM_HORIZON | LATEST | SHARD_END), ``ownerSwitchesSinceCheckpoint``,
``parentShardId`` (SS), ``childShardIds`` (SS); and ours:

* ``checkpointVersion``: the version clock at the checkpoint (consumer.pipeline.versioning), which a resumed
  or child shard starts from;
* ``streamArn``: the stream the shard belongs to. Every write is conditional on it, so leases of two
  streams never mix in one table (a worker only touches its stream's leases, and retires the old
  stream's when the table's stream is replaced);
* ``endReason`` with ``vanishedAfter``: a shard that vanished (its records expired, or the stream is
  gone) is ended with ``endReason = "vanished"`` and the last sequence number applied, so the loss is
  on record and its children can proceed;
* ``latestAnchorAt``: for a lease at ``LATEST``, the second (AWS's clock, less a margin) before the
  first ``LATEST`` iterator of the shard was taken. Whoever reads the shard next before a
  checkpoint reads it from ``TRIM_HORIZON`` and skips only the records older than that second, so
  nothing written after the first reader started is skipped (``consumer.shards.task``).

Informational wall-clock attributes, for people reading the table (never used to judge expiry,
which runs on each worker's monotonic clock): ``lastUpdatedAt`` (every write), ``checkpointedAt``
and ``checkpointRecordAt`` (the checkpointed record's ApproximateCreationDateTime), epoch seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

TRIM_HORIZON = "TRIM_HORIZON"
LATEST = "LATEST"
SHARD_END = "SHARD_END"
SENTINELS = (TRIM_HORIZON, LATEST, SHARD_END)
SEGMENT_PREFIX = "backfill:"
RENEWALS_PER_FAILOVER = 3  # the KCL's cadence: a lease survives two failed renewals in a row  # the key of a backfill segment's lease (consumer.backfill.segments)


@dataclass(frozen=True)
class Lease:
    """A snapshot of one lease-table item. Immutable: every write returns a new snapshot."""

    lease_key: str
    owner: str | None
    counter: int
    checkpoint: str
    checkpoint_version: int = 0
    owner_switches_since_checkpoint: int = 0
    parent_shard_ids: frozenset[str] = frozenset()
    child_shard_ids: frozenset[str] = frozenset()
    stream_arn: str | None = None
    end_reason: str | None = None
    vanished_after: str | None = None
    latest_anchor_at: int | None = None
    last_updated_at: float | None = field(default=None, compare=False)
    checkpointed_at: float | None = field(default=None, compare=False)
    checkpoint_record_at: float | None = field(default=None, compare=False)

    @property
    def is_ended(self) -> bool:
        return self.checkpoint == SHARD_END

    @property
    def is_vanished(self) -> bool:
        return self.end_reason == "vanished"

    @property
    def is_segment(self) -> bool:
        """A backfill segment's lease, not a shard's."""
        return self.lease_key.startswith(SEGMENT_PREFIX)

    @property
    def has_sequence_checkpoint(self) -> bool:
        return self.checkpoint not in SENTINELS

    def bumped(self, **changes: Any) -> Lease:
        """This lease after a successful write: counter + 1 and the given field changes."""
        return replace(self, counter=self.counter + 1, **changes)

    def to_item(self) -> dict[str, Any]:
        """The DynamoDB item (low-level AttributeValue form)."""
        item: dict[str, Any] = {
            "leaseKey": {"S": self.lease_key},
            "leaseCounter": {"N": str(self.counter)},
            "checkpoint": {"S": self.checkpoint},
            "checkpointVersion": {"N": str(self.checkpoint_version)},
            "ownerSwitchesSinceCheckpoint": {"N": str(self.owner_switches_since_checkpoint)},
        }
        if self.owner:
            item["leaseOwner"] = {"S": self.owner}
        if self.parent_shard_ids:
            item["parentShardId"] = {"SS": sorted(self.parent_shard_ids)}
        if self.child_shard_ids:
            item["childShardIds"] = {"SS": sorted(self.child_shard_ids)}
        if self.stream_arn:
            item["streamArn"] = {"S": self.stream_arn}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Lease:
        return cls(
            lease_key=item["leaseKey"]["S"],
            owner=item.get("leaseOwner", {}).get("S"),
            counter=int(item.get("leaseCounter", {}).get("N", "0")),
            checkpoint=item.get("checkpoint", {}).get("S", TRIM_HORIZON),
            checkpoint_version=int(item.get("checkpointVersion", {}).get("N", "0")),
            owner_switches_since_checkpoint=int(item.get("ownerSwitchesSinceCheckpoint", {}).get("N", "0")),
            parent_shard_ids=frozenset(item.get("parentShardId", {}).get("SS", [])),
            child_shard_ids=frozenset(item.get("childShardIds", {}).get("SS", [])),
            stream_arn=item.get("streamArn", {}).get("S"),
            end_reason=item.get("endReason", {}).get("S"),
            vanished_after=item.get("vanishedAfter", {}).get("S"),
            latest_anchor_at=int(anchor) if (anchor := _optional_number(item, "latestAnchorAt")) is not None else None,
            last_updated_at=_optional_number(item, "lastUpdatedAt"),
            checkpointed_at=_optional_number(item, "checkpointedAt"),
            checkpoint_record_at=_optional_number(item, "checkpointRecordAt"),
        )


def _optional_number(item: dict[str, Any], name: str) -> float | None:
    value = item.get(name, {}).get("N")
    return float(value) if value is not None else None


def shard_leases(leases: Iterable[Lease]) -> list[Lease]:
    """The leases of stream shards among ``leases``: the lease table without the backfill's segments."""
    return [lease for lease in leases if not lease.is_segment]


def renew_interval(failover_seconds: float) -> float:
    """Seconds between renewals of a held lease (and between a worker's ticks)."""
    return failover_seconds / RENEWALS_PER_FAILOVER
