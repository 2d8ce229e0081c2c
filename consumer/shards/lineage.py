"""Shard lineage decisions (pure): which leases to create, and when a child may start.

* Parent before child: a shard is read only once every parent that has a lease is at SHARD_END;
  its version clock then starts above every parent's last version (consumer.versioning).
* TRIM_HORIZON leases the whole lineage. LATEST leases the open shards at start-up at LATEST;
  afterwards every shard whose parent is leased starts at TRIM_HORIZON, because all of its records
  are newer than the consumer's start.
* Clean-up: a SHARD_END lease is deleted once every child lease has progressed past its start and
  no parent lease remains; such a shard is never leased again, even while DescribeStream still
  lists it (re-reading it would replay old changes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from consumer.leases.model import LATEST, SHARD_END, TRIM_HORIZON, Lease
from consumer.shards.api import Shard


def new_leases(shards: Iterable[Shard], existing: Sequence[Lease], initial_position: str) -> list[Lease]:
    """Leases to create for shards that have none, parents before children."""
    leased = {lease.lease_key for lease in existing}
    finished = {parent for lease in existing if has_progressed(lease) for parent in lease.parent_shard_ids}
    created = []
    for shard in parents_first(shards):
        if shard.shard_id in leased or shard.shard_id in finished:
            continue
        parent_leased = shard.parent_shard_id is not None and shard.parent_shard_id in leased
        if initial_position == TRIM_HORIZON or parent_leased:
            checkpoint = TRIM_HORIZON
        elif not shard.is_closed:
            checkpoint = LATEST
        else:
            continue  # closed before a LATEST consumer started: nothing of it is wanted
        parents = frozenset({shard.parent_shard_id}) if shard.parent_shard_id else frozenset()
        created.append(Lease(shard.shard_id, owner=None, counter=0, checkpoint=checkpoint, parent_shard_ids=parents))
        leased.add(shard.shard_id)
    return created


def parents_first(shards: Iterable[Shard]) -> list[Shard]:
    """Shards ordered so that each comes after its parent (when the parent is listed)."""
    by_id = {shard.shard_id: shard for shard in shards}
    ordered: list[Shard] = []
    placed: set[str] = set()

    def place(shard: Shard) -> None:
        chain = []
        while shard.shard_id not in placed:
            chain.append(shard)
            placed.add(shard.shard_id)
            parent = by_id.get(shard.parent_shard_id or "")
            if parent is None:
                break
            shard = parent
        ordered.extend(reversed(chain))

    for shard in sorted(by_id.values(), key=lambda s: s.shard_id):
        place(shard)
    return ordered


def start_version(lease: Lease, leases: Mapping[str, Lease]) -> int | None:
    """The version clock a consumer of ``lease`` starts from, or None while a parent is unfinished."""
    parents = [leases[key] for key in lease.parent_shard_ids if key in leases]
    if any(not parent.is_ended for parent in parents):
        return None
    return max([lease.checkpoint_version] + [parent.checkpoint_version for parent in parents])


def has_progressed(lease: Lease) -> bool:
    """Whether the lease's shard has been read past its start (a sequence checkpoint or SHARD_END)."""
    return lease.has_sequence_checkpoint or lease.is_ended


def leases_to_delete(leases: Sequence[Lease]) -> list[Lease]:
    """Unowned SHARD_END leases whose children all progressed and whose parents are gone.

    A lease with no child lease yet is kept: its children still need its final version clock.
    """
    keys = {lease.lease_key for lease in leases}
    children: dict[str, list[Lease]] = {}
    for lease in leases:
        for parent in lease.parent_shard_ids:
            children.setdefault(parent, []).append(lease)
    return [
        lease
        for lease in leases
        if lease.checkpoint == SHARD_END
        and lease.owner is None
        and not (lease.parent_shard_ids & keys)
        and children.get(lease.lease_key)
        and all(has_progressed(child) for child in children[lease.lease_key])
    ]
