"""Which leases a worker should take: a pure decision over one view of the lease table.

Rules (the KCL's, DESIGN §3): count only leases that still need an owner (not SHARD_END); the
live workers are the owners of unexpired leases plus this worker; each worker aims at
``target = ceil(active leases / live workers)`` and takes free leases — unowned or expired —
until it holds ``target``. A worker never takes more than it needs to reach the target, which
is what keeps a stable pool from thrashing. Stealing from overloaded workers comes on top of
this in the worker-pool change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseState:
    """What the taker needs to know of one lease."""

    lease_key: str
    owner: str | None
    expired: bool
    ended: bool


def target_per_worker(leases: Sequence[LeaseState], worker_id: str) -> int:
    """ceil(active leases / live workers), this worker counted as live."""
    active = [lease for lease in leases if not lease.ended]
    live = {lease.owner for lease in active if lease.owner and not lease.expired} | {worker_id}
    return math.ceil(len(active) / len(live))


def leases_to_take(leases: Sequence[LeaseState], worker_id: str, held: frozenset[str]) -> list[str]:
    """Keys of free leases to take now, in key order, so that this worker reaches its target.

    ``held`` are the keys this worker holds in memory. A lease that names this worker as owner
    but is not held (a restart that kept ``CDC_WORKER_ID``) is free: its holder is gone.
    """
    target = target_per_worker(leases, worker_id)
    free = [
        lease.lease_key
        for lease in sorted(leases, key=lambda lease: lease.lease_key)
        if not lease.ended
        and lease.lease_key not in held
        and (lease.owner is None or lease.expired or lease.owner == worker_id)
    ]
    return free[: max(0, target - len(held))]
