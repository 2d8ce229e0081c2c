"""Shard sync: the stream's shards → the lease table, and the stream the table's leases belong to.

``ShardSync`` is the I/O around ``consumer.shards.lineage``:

* ``sync(leases)`` lists the stream's shards (DescribeStream, every page), creates the leases the
  lineage rule wants (conditional puts: several workers may sync at once), deletes the finished
  leases clean-up allows, and retires the ended leases of a replaced stream. ``leases`` is the
  worker's one scan of the table for this tick.
* ``children_of(shard_id)`` creates the leases of a shard's children as soon as it ends, so they
  can be taken at once instead of at the next periodic sync.
* ``confirm_vanished(shard_id)`` asks DescribeStream whether a shard that answered ResourceNotFound
  is gone: not listed any more, or its stream gone.
* ``follow_stream()`` re-resolves the table's ``LatestStreamArn`` (workers configured by table
  name): a disabled and re-enabled stream, or a recreated table, gives a new stream, which is then
  followed from TRIM_HORIZON; the old stream's leases are read to their end and retired.

A corrupt listing (``lineage.Anomaly``) is logged and counted, never fatal. Thread-safe: calls are
serialised by a lock (the tick and a shard ending may sync at once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import structlog

from consumer.errors import ConsumerError, LeaseLostError, ShardNotFoundError
from consumer.leases.model import Lease
from consumer.leases.table import LeaseTable
from consumer.observability.metrics import Metrics
from consumer.shards.api import Shard, StreamApi
from consumer.shards.lineage import Anomaly, leases_to_delete, plan_leases

log = structlog.get_logger(__name__)

LISTING_REUSE_SECONDS = 2.0  # a listing younger than this answers children_of and confirm_vanished


@dataclass(frozen=True)
class SyncResult:
    created: list[Lease]
    deleted: int


class ShardSync:
    """Keeps the lease table in step with the stream's shards."""

    def __init__(
        self,
        api: StreamApi,
        table: LeaseTable,
        stream_arn: str,
        initial_position: str,
        metrics: Metrics,
        resolve_stream: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._table = table
        self.stream_arn = stream_arn
        self._initial_position = initial_position
        self._metrics = metrics
        self._resolve_stream = resolve_stream
        self._clock = clock
        self._lock = threading.RLock()
        self._listing: list[Shard] = []
        self._listed_at = float("-inf")
        self._reported: set[tuple[str, str]] = set()

    def sync(self, leases: list[Lease]) -> SyncResult:
        """Create the wanted leases and delete the finished ones; ``leases`` is this tick's scan."""
        with self._lock:
            shards = self._list()
            own, others = self._split_by_stream(leases)
            plan = plan_leases(shards, own, self._initial_position, self.stream_arn)
            self._report(plan.anomalies)
            blocked = {lease.lease_key for lease in others}
            base = max((lease.checkpoint_version for lease in others), default=0)
            created = [lease for lease in plan.leases if self._create(lease, blocked, base)]
            deleted = self._delete(leases_to_delete(own)) + self._delete([lease for lease in others if lease.is_ended])
            return SyncResult(created, deleted)

    def children_of(self, shard_id: str, leases: list[Lease]) -> list[Lease]:
        """The leases of ``shard_id``'s children, created when missing: those this call created and
        those ``leases`` (a fresh scan) shows unowned, ready to be taken."""
        with self._lock:
            if not any(shard.parent_shard_id == shard_id for shard in self._fresh_listing()):
                self._list(force=True)
            own, others = self._split_by_stream(leases)
            children = [shard for shard in self._listing if shard.parent_shard_id == shard_id]
            plan = plan_leases(children, own, self._initial_position, self.stream_arn)
            blocked = {lease.lease_key for lease in others}
            created = [lease for lease in plan.leases if self._create(lease, blocked, 0)]
            ids = {shard.shard_id for shard in children}
            return created + [lease for lease in own if lease.lease_key in ids and lease.owner is None]

    def confirm_vanished(self, shard_id: str) -> bool:
        """Whether a shard that answered ResourceNotFound is gone (unlisted, or its stream gone)."""
        with self._lock:
            try:
                listing = self._list(force=self._clock() - self._listed_at > LISTING_REUSE_SECONDS)
            except ShardNotFoundError:
                return True
            except ConsumerError as exc:
                log.warning("vanished_shard_check_failed", shard_id=shard_id, error=str(exc))
                return False
            return shard_id not in {shard.shard_id for shard in listing}

    def follow_stream(self) -> str | None:
        """Re-resolve the table's stream; returns the new stream ARN when it changed, else None."""
        if self._resolve_stream is None:
            return None
        latest = self._resolve_stream()
        with self._lock:
            if latest == self.stream_arn:
                return None
            old, self.stream_arn = self.stream_arn, latest
            self._listing, self._listed_at = [], float("-inf")
        self._metrics.stream_replaced.inc()
        log.error(
            "stream_replaced",
            old_stream_arn=old,
            new_stream_arn=latest,
            action="changes made while no stream existed are in neither stream: once the workers caught up, run "
            "`consumer audit --repair` (or `consumer backfill`); the old stream's leases are read to their end and retired",
        )
        return latest

    def _list(self, force: bool = True) -> list[Shard]:
        if force or not self._listing:
            self._listing = self._api.list_shards(self.stream_arn)
            self._listed_at = self._clock()
        return self._listing

    def _fresh_listing(self) -> list[Shard]:
        return self._listing if self._clock() - self._listed_at <= LISTING_REUSE_SECONDS else self._list(force=True)

    def _split_by_stream(self, leases: list[Lease]) -> tuple[list[Lease], list[Lease]]:
        """This stream's leases (and those written before leases named their stream), and the others."""
        own = [lease for lease in leases if lease.stream_arn in (None, self.stream_arn)]
        return own, [lease for lease in leases if lease.stream_arn not in (None, self.stream_arn)]

    def _create(self, lease: Lease, blocked: set[str], base_version: int) -> bool:
        if lease.lease_key in blocked:
            self._report(
                [Anomaly("held_by_old_stream", lease.lease_key, "a lease of the replaced stream has this key")]
            )
            return False
        if base_version > lease.checkpoint_version:
            # A replaced stream's last changes were versioned on its own clocks: start above them.
            lease = replace(lease, checkpoint_version=base_version)
        if not self._table.create_lease(lease):
            return False
        self._metrics.lease_events.labels(event="created").inc()
        log.info(
            "lease_created",
            shard_id=lease.lease_key,
            checkpoint=lease.checkpoint,
            parent_shard_ids=sorted(lease.parent_shard_ids),
        )
        return True

    def _delete(self, leases: list[Lease]) -> int:
        deleted = 0
        for lease in leases:
            try:
                self._table.delete(lease)
            except LeaseLostError:
                continue  # changed since the scan (another worker cleaned it up): fine
            deleted += 1
            self._metrics.lease_events.labels(event="deleted").inc()
            log.info("lease_deleted", shard_id=lease.lease_key, stream_arn=lease.stream_arn)
        return deleted

    def _report(self, anomalies: list[Anomaly]) -> None:
        """Log each anomaly once per worker, count every sighting."""
        for anomaly in anomalies:
            self._metrics.lineage_anomalies.labels(kind=anomaly.kind).inc()
            if (anomaly.kind, anomaly.shard_id) not in self._reported:
                self._reported.add((anomaly.kind, anomaly.shard_id))
                log.error("shard_listing_anomaly", kind=anomaly.kind, shard_id=anomaly.shard_id, detail=anomaly.detail)
