"""The pool as one scan of the lease table shows it: how many leases are in each state, and how many
workers are live (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from consumer.leases.model import Lease

LEASE_STATES = ("owned", "expired", "unowned", "waiting", "ended", "vanished")


def lease_states(leases: Sequence[Lease], expired: Mapping[str, bool]) -> Counter[str]:
    """How many leases are in each state: ``waiting`` (unfinished, its parent lease not ended),
    ``vanished`` and ``ended`` (finished), ``expired`` (owned, not renewed for the failover time),
    ``owned`` and ``unowned``."""
    by_key = {lease.lease_key: lease for lease in leases}
    counts: Counter[str] = Counter({state: 0 for state in LEASE_STATES})
    for lease in leases:
        if lease.is_ended:
            counts["vanished" if lease.is_vanished else "ended"] += 1
        elif any(key in by_key and not by_key[key].is_ended for key in lease.parent_shard_ids):
            counts["waiting"] += 1
        elif lease.owner is None:
            counts["unowned"] += 1
        else:
            counts["expired" if expired.get(lease.lease_key) else "owned"] += 1
    return counts


def live_workers(leases: Sequence[Lease], expired: Mapping[str, bool], worker_id: str) -> int:
    """Owners of unexpired leases, and this worker."""
    return len({lease.owner for lease in leases if lease.owner and not expired.get(lease.lease_key)} | {worker_id})
