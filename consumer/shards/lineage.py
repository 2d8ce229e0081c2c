"""Shard lineage decisions (pure): which leases to create, when a child may start, which to delete.

The rule that decides "this shard is finished", and so must never be leased again:

    A shard is finished when its lease is at SHARD_END, or when some lease of a *descendant* of it
    has progressed (a sequence checkpoint or SHARD_END).

Descendants are found through the parent links of the listing (``ParentShardId``) and of the leases
(``parentShardId``), so the rule holds whatever DescribeStream shows. Why it holds after any
sequence of clean-ups, restarts and listings that omit or include old shards:

1. A child is read only once every parent lease that exists is at SHARD_END (``start_version``),
   and leases are created parents first, so a progressed lease means every ancestor that had a
   lease was read to its end: the rule never calls an unread shard finished.
2. Clean-up (``leases_to_delete``) deletes an ended lease only once every child lease has
   progressed, and those children stay until *their* children have progressed: below every deleted
   lease there is always a progressed lease, so a deleted shard stays finished by the rule, even
   while DescribeStream keeps listing it for the 24 h retention. Each shard is thus read from its
   start at most once over the pool's life (replays after the last checkpoint aside).
3. Listings only add or drop shards; dropping an old shard drops nothing the rule needs below it
   (descendants are younger and listed longer), and a shard never listed again is never leased.

Which shards are wanted at all depends on the pool's initial position: TRIM_HORIZON wants every
shard that is not finished; LATEST wants the open shards at start-up (at LATEST) and every shard
with a leased ancestor (at TRIM_HORIZON: all its records are newer than the pool's start).

The lease table stays small: a lease is kept while its shard is open, or ended with a child that has
not progressed yet; so at most every open shard plus each open shard's parent (a split's parent once
for both children): leases ≤ 2 × open shards, whatever the depth of the listed lineage.

A corrupt listing (a parent link cycle, an id that is empty or too long, a shard listed twice) does
not stop the others: ``plan_leases`` reports it as an ``Anomaly`` and decides what it can.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from consumer.leases.model import LATEST, SHARD_END, TRIM_HORIZON, Lease
from consumer.shards.api import Shard

MAX_SHARD_ID_LENGTH = 65  # DynamoDB Streams' limit


@dataclass(frozen=True)
class Anomaly:
    """Something wrong with a listing: ``kind`` (cycle, bad_id, duplicate) and the shard."""

    kind: str
    shard_id: str
    detail: str


@dataclass(frozen=True)
class LeasePlan:
    """The leases to create, parents first, and what was wrong with the listing."""

    leases: list[Lease]
    anomalies: list[Anomaly]


def plan_leases(
    shards: Iterable[Shard], existing: Sequence[Lease], initial_position: str, stream_arn: str | None = None
) -> LeasePlan:
    """Leases to create for shards that have none and are wanted (module docstring), parents first."""
    listed, anomalies = _usable(shards)
    parents = _parent_links(listed, existing)
    anomalies += _cycles(parents)
    in_cycle = {anomaly.shard_id for anomaly in anomalies if anomaly.kind == "cycle"}
    leased = {lease.lease_key for lease in existing}
    finished = finished_shards(existing, parents)
    created: list[Lease] = []
    for shard in parents_first(listed.values()):
        if shard.shard_id in leased or shard.shard_id in finished or shard.shard_id in in_cycle:
            continue
        checkpoint = _start_of(shard, initial_position, leased, parents)
        if checkpoint is None:
            continue
        lineage = frozenset({shard.parent_shard_id}) if shard.parent_shard_id else frozenset()
        created.append(
            Lease(
                shard.shard_id,
                owner=None,
                counter=0,
                checkpoint=checkpoint,
                parent_shard_ids=lineage,
                stream_arn=stream_arn,
            )
        )
        leased.add(shard.shard_id)
    return LeasePlan(created, anomalies)


def new_leases(shards: Iterable[Shard], existing: Sequence[Lease], initial_position: str) -> list[Lease]:
    """The leases of ``plan_leases``, without the anomalies."""
    return plan_leases(shards, existing, initial_position).leases


def finished_shards(leases: Iterable[Lease], parents: Mapping[str, frozenset[str]]) -> set[str]:
    """Every shard the rule of the module docstring calls finished."""
    finished: set[str] = set()
    stack = [lease.lease_key for lease in leases if has_progressed(lease)]
    finished.update(lease.lease_key for lease in leases if lease.is_ended)
    seen: set[str] = set()
    while stack:
        shard_id = stack.pop()
        if shard_id in seen:
            continue
        seen.add(shard_id)
        for parent in parents.get(shard_id, ()):
            finished.add(parent)
            stack.append(parent)
    return finished


def _start_of(
    shard: Shard, initial_position: str, leased: set[str], parents: Mapping[str, frozenset[str]]
) -> str | None:
    """Where a new lease of ``shard`` starts, or None when the pool does not want the shard."""
    if initial_position == TRIM_HORIZON or _has_leased_ancestor(shard.shard_id, leased, parents):
        return TRIM_HORIZON
    return None if shard.is_closed else LATEST  # LATEST: a shard closed before the start is not wanted


def _has_leased_ancestor(shard_id: str, leased: set[str], parents: Mapping[str, frozenset[str]]) -> bool:
    stack, seen = list(parents.get(shard_id, ())), {shard_id}
    while stack:
        ancestor = stack.pop()
        if ancestor in leased:
            return True
        if ancestor not in seen:
            seen.add(ancestor)
            stack.extend(parents.get(ancestor, ()))
    return False


def _usable(shards: Iterable[Shard]) -> tuple[dict[str, Shard], list[Anomaly]]:
    """The listed shards by id, without those no lease can name; and what was wrong."""
    listed: dict[str, Shard] = {}
    anomalies = []
    for shard in shards:
        shard_id = shard.shard_id
        if not isinstance(shard_id, str) or not shard_id.strip() or len(shard_id) > MAX_SHARD_ID_LENGTH:
            anomalies.append(Anomaly("bad_id", str(shard_id)[:80], "empty or longer than 65 characters"))
            continue
        if shard_id in listed:
            anomalies.append(Anomaly("duplicate", shard_id, "listed twice; the first listing is used"))
            continue
        listed[shard_id] = shard
    return listed, anomalies


def _parent_links(listed: Mapping[str, Shard], leases: Iterable[Lease]) -> dict[str, frozenset[str]]:
    """Shard id → parent ids, from the listing and from the leases (which outlive the listing)."""
    parents: dict[str, set[str]] = {}
    for shard in listed.values():
        if shard.parent_shard_id:
            parents.setdefault(shard.shard_id, set()).add(shard.parent_shard_id)
    for lease in leases:
        if lease.parent_shard_ids:
            parents.setdefault(lease.lease_key, set()).update(lease.parent_shard_ids)
    return {shard_id: frozenset(ids) for shard_id, ids in parents.items()}


def _cycles(parents: Mapping[str, frozenset[str]]) -> list[Anomaly]:
    """Shards whose parent links lead back to themselves (a corrupt answer)."""
    anomalies = []
    for start in sorted(parents):
        stack, seen = list(parents[start]), set()
        while stack:
            shard_id = stack.pop()
            if shard_id == start:
                anomalies.append(Anomaly("cycle", start, "its parent links lead back to it; not leased"))
                break
            if shard_id not in seen:
                seen.add(shard_id)
                stack.extend(parents.get(shard_id, ()))
    return anomalies


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
