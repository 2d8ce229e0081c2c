"""A pure simulation of a stream's shard lineage and a pool's lease table, on a simulated clock.

``SimStream`` rolls shards over and splits them as DynamoDB does, lists the shards of the last 24 h
(closed shards drop out of the listing 24 h after they close, so old ancestors disappear), and
knows which shards received records. ``SimPool`` drives the real lineage decisions
(``consumer.shards.lineage``) against a dict standing for the lease table: syncs create leases,
reads move leases forward (a sequence checkpoint once a shard has records, SHARD_END once a closed
shard is read), clean-ups delete. It records every lease ever created per shard, so tests can check
that a shard is never leased (read from its start) twice. No I/O, no sleeping.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field, replace

from consumer.leases.model import SHARD_END, TRIM_HORIZON, Lease
from consumer.shards.api import Shard
from consumer.shards.lineage import leases_to_delete, plan_leases, start_version

HOUR = 3600
RETENTION = 24 * HOUR


@dataclass
class SimShard:
    shard_id: str
    parent: str | None
    born: float
    closed_at: float | None = None
    has_records: bool = False

    def listed(self, now: float) -> Shard:
        end = "9" * 22 if self.closed_at is not None else None
        return Shard(self.shard_id, self.parent, "1" * 22, end)


@dataclass
class SimStream:
    """Partitions whose shards roll over (one child) or split (two children)."""

    rng: random.Random
    shards: dict[str, SimShard] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new_shard(self, parent: str | None, now: float) -> str:
        shard_id = f"shardId-{next(self._ids):020d}-{self.rng.getrandbits(32):08x}"
        self.shards[shard_id] = SimShard(shard_id, parent, now)
        return shard_id

    def open_shards(self) -> list[str]:
        return sorted(s.shard_id for s in self.shards.values() if s.closed_at is None)

    def close(self, shard_id: str, now: float, children: int = 1) -> list[str]:
        self.shards[shard_id].closed_at = now
        return [self.new_shard(shard_id, now) for _ in range(children)]

    def write(self, shard_id: str) -> None:
        self.shards[shard_id].has_records = True

    def listing(self, now: float) -> list[Shard]:
        """What DescribeStream lists: every shard not yet 24 h past its close, in random order."""
        shown = [s.listed(now) for s in self.shards.values() if s.closed_at is None or now - s.closed_at < RETENTION]
        self.rng.shuffle(shown)
        return shown


@dataclass
class SimPool:
    """The lease table and the pool's decisions on it."""

    stream: SimStream
    initial_position: str = TRIM_HORIZON
    table: dict[str, Lease] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)  # shard id → leases ever created for it

    def sync(self, now: float) -> None:
        for lease in plan_leases(self.stream.listing(now), list(self.table.values()), self.initial_position).leases:
            if lease.lease_key in self.table:
                continue  # the conditional put would fail: another worker created it first
            self.table[lease.lease_key] = lease
            self.created[lease.lease_key] = self.created.get(lease.lease_key, 0) + 1

    def read(self) -> None:
        """Every lease that may be read moves as far as its shard allows."""
        for key in sorted(self.table):
            lease = self.table[key]
            if lease.is_ended or start_version(lease, self.table) is None:
                continue
            shard = self.stream.shards[key]
            if shard.closed_at is not None:
                self.table[key] = replace(lease, checkpoint=SHARD_END)
            elif shard.has_records and not lease.has_sequence_checkpoint:
                self.table[key] = replace(lease, checkpoint="6" * 22)

    def clean_up(self) -> None:
        for lease in leases_to_delete(list(self.table.values())):
            del self.table[lease.lease_key]
