"""Which leases a worker should take: a pure decision over one view of the lease table.

Rules (the KCL's, DESIGN §3): count only leases that still need an owner (not SHARD_END); the
live workers are the owners of unexpired leases plus this worker; each worker aims at
``target = ceil(active leases / live workers)`` (never above ``max_leases``, CDC_MAX_LEASES_PER_WORKER)
and takes free leases — unowned or expired — until it holds ``target``. A worker never takes more
than it needs to reach the target.

Only when nothing is free does it steal, from the most-loaded worker, and only if that worker holds
more than the target, or holds exactly the target while the stealer is two or more below it (the
KCL's rule: without it, a pool scaled from 2 to 3 workers over 4 shards would leave the new worker
idle at 2/2/0). It steals as many as it needs in one cycle, but never so many that the victim drops
below the target (one, in the KCL's case): a worker joining a pool of 1000 shards is balanced in a
cycle or two, not after hundreds of one-lease steals. Either way the victim holds at least two more
leases than the stealer, and after the steal neither is past the other, so every steal strictly
narrows the spread: a stable pool converges to owners differing by at most one lease, and then stops
changing (no thrash).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseState:
    """What the taker needs to know of one lease."""

    lease_key: str
    owner: str | None
    expired: bool
    ended: bool


def target_per_worker(leases: Sequence[LeaseState], worker_id: str, max_leases: int | None = None) -> int:
    """ceil(active leases / live workers), this worker counted as live, and at most ``max_leases``."""
    active = [lease for lease in leases if not lease.ended]
    live = {lease.owner for lease in active if lease.owner and not lease.expired} | {worker_id}
    target = math.ceil(len(active) / len(live))
    return target if max_leases is None else min(target, max_leases)


def leases_to_take(
    leases: Sequence[LeaseState],
    worker_id: str,
    held: frozenset[str],
    max_leases: int | None = None,
    avoid: frozenset[str] = frozenset(),
    reclaim_own: bool = True,
) -> list[str]:
    """Keys of free leases to take now, in key order, so that this worker reaches its target.

    ``held`` are the keys this worker holds in memory. With ``reclaim_own`` (a worker's first cycle:
    a restart that kept ``CDC_WORKER_ID``, as the KCL reclaims its leases at start-up), a lease that
    names this worker as owner but is not held is free: its holder is gone. Later such a lease is
    free only once expired: a live holder of it is another process with this worker's id
    (``LeaseCoordinator`` stops the worker). Leases in ``avoid`` (shards this worker gave up after
    failing on them) are left to other workers.
    """
    target = target_per_worker(leases, worker_id, max_leases)
    free = [
        lease.lease_key
        for lease in sorted(leases, key=lambda lease: lease.lease_key)
        if not lease.ended and lease.lease_key not in avoid and _is_free(lease, worker_id, held, reclaim_own)
    ]
    return free[: max(0, target - len(held))]


def leases_to_steal(
    leases: Sequence[LeaseState],
    worker_id: str,
    held: frozenset[str],
    rng: random.Random | None = None,
    max_leases: int | None = None,
    reclaim_own: bool = True,
) -> list[str]:
    """Keys of leases to steal now, all from one victim, or none. Call only when ``leases_to_take``
    found nothing.

    The leases are picked at random among the victim's, so that several stealers rarely collide.
    """
    active = [lease for lease in leases if not lease.ended]
    if any(_is_free(lease, worker_id, held, reclaim_own) for lease in active):
        return []
    target = target_per_worker(leases, worker_id, max_leases)
    needed = target - len(held)
    counts = Counter(lease.owner for lease in active if lease.owner and lease.owner != worker_id and not lease.expired)
    if needed <= 0 or not counts:
        return []
    victim, victim_count = min(counts.items(), key=lambda item: (-item[1], item[0]))
    if victim_count > target:
        steal = min(needed, victim_count - target)
    elif victim_count == target and needed > 1:
        steal = 1
    else:
        return []
    candidates = sorted(lease.lease_key for lease in active if lease.owner == victim)
    return sorted((rng or random).sample(candidates, steal))


def _is_free(lease: LeaseState, worker_id: str, held: frozenset[str], reclaim_own: bool) -> bool:
    mine = reclaim_own and lease.owner == worker_id
    return lease.lease_key not in held and (lease.owner is None or lease.expired or mine)
