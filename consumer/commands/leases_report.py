"""The lease table as a person reads it (pure): one row per lease, a text table and JSON.

``lease_rows(leases, now, failover_seconds)`` decides each row; ``render_table`` and
``render_json`` only format. ``consumer leases`` (consumer.commands.cli) is the I/O around them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from consumer.leases.model import SENTINELS, Lease
from consumer.pipeline.generations import Generation

OWNED, EXPIRED, ENDED, UNOWNED = "owned", "expired", "ended", "unowned"
UNKNOWN_AGE, NONE = "?", "—"
_SHORT_DIGITS = 10  # sequence numbers are 21+ digits; their tail tells neighbouring checkpoints apart
_COLUMNS = ("SHARD", "OWNER", "STATE", "CHECKPOINT", "PARENT", "AGE", "LAG", "SWITCHES")
_RIGHT_ALIGNED = frozenset({"AGE", "LAG", "SWITCHES"})


@dataclass(frozen=True)
class LeaseRow:
    """What ``consumer leases`` shows of one lease. Immutable.

    Attributes:
        shard: the lease key (shard id).
        owner: the worker holding the lease, None when nobody does.
        state: ``owned``, ``expired``, ``ended`` or ``unowned`` (see ``lease_state``).
        checkpoint: the full checkpoint: a sequence number or TRIM_HORIZON | LATEST | SHARD_END.
        parents: the parent shard ids, sorted.
        age_seconds: seconds since the lease item was last written, None when unknown.
        lag_seconds: at the last checkpoint, how far the checkpointed record's creation time was
            behind the checkpoint's write; None when unknown.
        owner_switches: owner changes since the last checkpoint (a lease that keeps moving without
            progress points at a shard no worker can get through).
        counter: ``leaseCounter``; it moves on every renewal, so two runs show whether a lease lives.
        generation: the index generation whose lease table holds the lease (None: generations off).
    """

    shard: str
    owner: str | None
    state: str
    checkpoint: str
    parents: tuple[str, ...]
    age_seconds: float | None
    lag_seconds: float | None
    owner_switches: int
    counter: int
    generation: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "parents": list(self.parents)}


def lease_rows(
    leases: Iterable[Lease], now: float, failover_seconds: float, generation: int | None = None
) -> list[LeaseRow]:
    """One row per lease, parents before children, then by shard id.

    ``now`` is the wall clock (epoch seconds) the ages are measured against; ``generation``, the index
    generation the leases belong to.
    """
    rows = []
    for lease in parents_first(leases):
        age = _elapsed(lease.last_updated_at, now)
        rows.append(
            LeaseRow(
                shard=lease.lease_key,
                owner=lease.owner,
                state=lease_state(lease, age, failover_seconds),
                checkpoint=lease.checkpoint,
                parents=tuple(sorted(lease.parent_shard_ids)),
                age_seconds=age,
                lag_seconds=_elapsed(lease.checkpoint_record_at, lease.checkpointed_at),
                owner_switches=lease.owner_switches_since_checkpoint,
                counter=lease.counter,
                generation=generation,
            )
        )
    return rows


def lease_state(lease: Lease, age_seconds: float | None, failover_seconds: float) -> str:
    """``ended`` (checkpoint SHARD_END), ``unowned``, ``expired`` or ``owned``.

    ``expired`` is an approximation for display: the lease item has not been written for longer
    than ``failover_seconds`` by the wall clock. Workers never judge expiry that way; each one
    watches ``leaseCounter`` change on its own monotonic clock, so skewed clocks cannot expire a
    live lease. With no known age (an item written by an older version) a held lease shows ``owned``.
    """
    if lease.is_ended:
        return ENDED
    if lease.owner is None:
        return UNOWNED
    if age_seconds is not None and age_seconds > failover_seconds:
        return EXPIRED
    return OWNED


def parents_first(leases: Iterable[Lease]) -> list[Lease]:
    """Leases by generation (a lease whose parents have no lease is generation 0), then by key."""
    by_key = {lease.lease_key: lease for lease in leases}
    generations: dict[str, int] = {}

    def generation(key: str, seen: frozenset[str]) -> int:
        if key not in generations:
            parents = [p for p in by_key[key].parent_shard_ids if p in by_key and p not in seen]
            generations[key] = 1 + max((generation(p, seen | {key}) for p in parents), default=-1)
        return generations[key]

    return sorted(by_key.values(), key=lambda lease: (generation(lease.lease_key, frozenset()), lease.lease_key))


def render_table(rows: Sequence[LeaseRow]) -> str:
    """Aligned columns under a header, then a summary line."""
    cells = [_COLUMNS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    lines = [_aligned(line, widths) for line in cells]
    return "\n".join([*lines, "", summary(rows)]) + "\n"


def generation_heading(generation: Generation, now: float) -> str:
    """E.g. ``generation 2 (building), lease table orders-leases-g2; reindex: fill, 1,200 items filled
    (last moved 3 s ago)``: the line above a generation's leases."""
    heading = f"generation {generation.number} ({generation.state}), lease table {generation.lease_table}"
    if generation.state == "building":
        heading += f"; {describe_progress(generation, now)}"
    return heading


def describe_progress(generation: Generation, now: float) -> str:
    """Where the reindex of a building generation stands, and how long since it last moved."""
    progress = generation.progress
    silent = f"last moved {format_duration(max(0.0, now - generation.moved_at()))} ago"
    if progress is None:
        return f"reindex: not started ({silent}): run `consumer reindex` with this generation's configuration"
    counted = {"fill": "items filled", "catch-up": "shards behind", "proof": "items audited"}.get(progress.step)
    return f"reindex: {progress.step}" + (f", {progress.count:,} {counted}" if counted else "") + f" ({silent})"


def render_json(rows: Sequence[LeaseRow]) -> str:
    """A JSON array of row objects, full checkpoints, seconds as numbers (null when unknown)."""
    return json.dumps([row.as_dict() for row in rows], indent=2, ensure_ascii=False) + "\n"


def summary(rows: Sequence[LeaseRow]) -> str:
    """E.g. ``4 leases: 2 owned by 2 workers (w-a: 1, w-b: 1), 1 ended, 0 unowned, 1 expired``."""
    states = Counter(row.state for row in rows)
    workers = Counter(row.owner for row in rows if row.state == OWNED)
    owned = f"{states[OWNED]} owned"
    if workers:
        per_worker = ", ".join(f"{owner}: {count}" for owner, count in sorted(workers.items()))
        owned += f" by {_plural(len(workers), 'worker')} ({per_worker})"
    rest = ", ".join(f"{states[state]} {state}" for state in (ENDED, UNOWNED, EXPIRED))
    return f"{_plural(len(rows), 'lease')}: {owned}, {rest}"


def format_duration(seconds: float | None) -> str:
    """``4.2s``, ``3m10s``, ``2h05m``, ``3d04h``; ``?`` when unknown."""
    if seconds is None:
        return UNKNOWN_AGE
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def short_checkpoint(checkpoint: str) -> str:
    """Sentinels as they are; a long sequence number as ``…`` and its last digits."""
    if checkpoint in SENTINELS or len(checkpoint) <= _SHORT_DIGITS + 1:
        return checkpoint
    return "…" + checkpoint[-_SHORT_DIGITS:]


def _cells(row: LeaseRow) -> tuple[str, ...]:
    return (
        row.shard,
        row.owner or NONE,
        row.state,
        short_checkpoint(row.checkpoint),
        ",".join(row.parents) or NONE,
        format_duration(row.age_seconds),
        NONE if row.lag_seconds is None else format_duration(row.lag_seconds),
        str(row.owner_switches),
    )


def _aligned(cells: Sequence[str], widths: Sequence[int]) -> str:
    padded = (
        cell.rjust(width) if column in _RIGHT_ALIGNED else cell.ljust(width)
        for column, cell, width in zip(_COLUMNS, cells, widths, strict=True)
    )
    return "  ".join(padded).rstrip()


def _elapsed(start: float | None, end: float | None) -> float | None:
    """``end - start`` in milliseconds' precision, never negative (clocks of two hosts may disagree)."""
    if start is None or end is None:
        return None
    return round(max(0.0, end - start), 3)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
