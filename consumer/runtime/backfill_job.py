"""A backfill job: its preconditions, its segments, and a runner built from the workers' settings.

Used by ``consumer backfill`` (``consumer.commands.backfill``) and by workers started with
``CDC_BACKFILL=on-new-index`` (``consumer.runtime.app``).

**No gap between scan and stream.** A backfill writes each item's state as a page read it; a change
made after that page was read must therefore reach the index through the stream. ``check_no_gap``
refuses to start unless every open shard of the table's stream has a lease of this pool: with
TRIM_HORIZON, such a lease reads its shard from its oldest record, so every change made after the
scan began is read; with LATEST, a lease reads from when its worker first asks for an iterator, so a
lease still at LATEST (no record read yet) could miss changes made between the scan and that moment:
the backfill refuses those too, and asks for TRIM_HORIZON (whose replay of the last 24 h is harmless:
external versions make it idempotent) or for the shards to have been read once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from consumer.aws.clock import CLOCK_SKEW_MARGIN_SECONDS, EVENTUAL_CONSISTENCY_MARGIN_SECONDS, AwsClock
from consumer.backfill.runner import BackfillRunner, BackfillTally
from consumer.backfill.scan import ReadRate, SegmentScan
from consumer.backfill.segments import default_segments, parse_key, segment_leases
from consumer.config import Settings
from consumer.errors import ConfigError
from consumer.leases.model import LATEST, Lease
from consumer.leases.table import LeaseTable
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.pipeline.routes import Routing
from consumer.runtime.assembly import build_dead_letters, build_sink
from consumer.runtime.stream_source import StreamSource
from consumer.shards.api import Shard
from consumer.sink.dlq import DurableDeadLetters
from consumer.sink.index_catalog import IndexCatalog

log = structlog.get_logger(__name__)


def check_no_gap(leases: list[Lease], shards: list[Shard]) -> None:
    """Raise ConfigError unless every open shard (of ``shards``, the stream's listing) has a lease
    that reads it from where the scan begins."""
    open_shards = {shard.shard_id for shard in shards if not shard.is_closed}
    by_key = {lease.lease_key: lease for lease in leases if not lease.is_segment}
    missing = sorted(open_shards - set(by_key))
    if missing:
        raise ConfigError(
            f"the stream's leases do not exist yet for {len(missing)} open shards (e.g. {missing[0]}): start the "
            "workers (consumer run) first, so that every change made after the backfill begins is read from the "
            "stream; then run the backfill"
        )
    at_latest = sorted(key for key in open_shards if by_key[key].checkpoint == LATEST)
    if at_latest:
        raise ConfigError(
            f"{len(at_latest)} open shards (e.g. {at_latest[0]}) have leases at LATEST that no worker has read yet: "
            "changes made before their first read could be missing. Start the pool with "
            "CDC_INITIAL_POSITION=TRIM_HORIZON (its replay of the retained 24 h is harmless), or wait until each "
            "of those shards received a change"
        )


def ensure_segments(leases: LeaseTable, wanted: int | None, table_size_bytes: int, restart: bool) -> int:
    """Create the backfill's segment leases when missing; returns their number.

    An existing backfill keeps its number of segments (its checkpoints are positions of those
    segments); ``restart`` deletes it first, to scan the whole table again.
    """
    existing = [lease for lease in leases.list_leases() if lease.is_segment]
    if restart:
        for lease in existing:
            leases.delete(lease)
        existing = []
    if existing:
        total = parse_key(existing[0].lease_key)[1]
        if wanted is not None and wanted != total:
            raise ConfigError(
                f"a backfill in {total} segments exists already ({sum(1 for s in existing if s.is_ended)} done): "
                f"resume it without CDC_BACKFILL_SEGMENTS={wanted}, or start over with --restart"
            )
        return total
    total = wanted or default_segments(table_size_bytes)
    for lease in segment_leases(total):
        leases.create_lease(lease)
    log.info("backfill_segments_created", segments=total)
    return total


def build_runner(
    settings: Settings,
    source: StreamSource,
    dynamodb: Any,
    leases: LeaseTable,
    metrics: Metrics,
    routes: Routing,
    catalog: IndexCatalog,
    health: Health | None = None,
    on_progress: Callable[[BackfillTally], None] | None = None,
    page_items: int | None = None,
    aws_clock: AwsClock | None = None,
) -> BackfillRunner:
    """A runner writing with the workers' sink, routes and dead-letter destination. ``aws_clock``: the
    process's (its earlier answers bound the first page's read time too)."""
    margin = CLOCK_SKEW_MARGIN_SECONDS if settings.backfill_consistent_read else EVENTUAL_CONSISTENCY_MARGIN_SECONDS
    scan = SegmentScan(
        dynamodb,
        source.table_name,
        ReadRate(settings.backfill_max_read_units),
        consistent=settings.backfill_consistent_read,
        read_margin=margin,
        observe=metrics.observe_aws,
        page_limit=page_items,
        retry_base_seconds=settings.retry_base_seconds,
        retry_cap_seconds=settings.retry_max_delay_seconds,
        aws_clock=aws_clock,
    )
    return BackfillRunner(
        source.key_schema,
        routes,
        scan,
        build_sink(settings, source.key_schema, metrics, health, catalog),
        DurableDeadLetters(build_dead_letters(settings, metrics), metrics, health),
        leases.unscoped(),
        settings.worker_id,
        metrics,
        settings.failover_seconds,
        on_progress,
    )
