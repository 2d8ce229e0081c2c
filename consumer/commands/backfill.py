"""``consumer backfill``: bring the table's existing items into the index while the stream flows.

Checks that nothing can fall between the scan and the stream (``job.check_no_gap``), sets up the index
as workers do, creates (or resumes) the backfill's segments in the lease table, and runs them with
``BackfillRunner`` until every one is done — by this process or by others running the same command
(or workers with ``CDC_BACKFILL=on-new-index``). Interrupted (SIGTERM, Ctrl-C, kill -9), it resumes
where each segment's checkpoint says when run again. On a terminal a progress line shows items,
items/s and an ETA from the table's ``ItemCount``; otherwise a ``backfill_progress`` log line every
few seconds. A summary ends the run; it is true (exit 3) unless every segment is done.
"""

from __future__ import annotations

import sys
import threading
import time

import orjson
import structlog
from prometheus_client import CollectorRegistry

from consumer.commands.progress import ProgressDisplay
from consumer.config import Settings
from consumer.leases.table import LeaseTable
from consumer.observability.metrics import Metrics
from consumer.runtime.assembly import set_up_generation
from consumer.runtime.backfill_job import build_runner, check_no_gap, ensure_segments
from consumer.runtime.clients import aws_clients
from consumer.runtime.stream_source import describe_table, resolve_stream, with_document_ids
from consumer.shards.api import StreamsApi

log = structlog.get_logger(__name__)


def backfill_command(
    settings: Settings, segments: int | None, restart: bool, stop: threading.Event, as_json: bool = False
) -> bool:
    """Run the backfill; True (needs attention) unless every segment is done. Its summary as text, or
    as one JSON object (``as_json``)."""
    aws = aws_clients(settings.aws_region, settings.streams_endpoint_url)
    source = with_document_ids(
        settings, resolve_stream(aws.dynamodb, aws.streams, settings.source_table, settings.stream_arn)
    )
    table = describe_table(aws.dynamodb, source.table_name)
    metrics = Metrics(CollectorRegistry())
    settings, catalog = set_up_generation(settings, source)
    routes = catalog.routing
    leases = LeaseTable(aws.dynamodb, settings.lease_table_name, observe=metrics.observe_aws, aws_clock=aws.clock)
    api = StreamsApi(aws.streams, observe=metrics.observe_aws, aws_clock=aws.clock)
    check_no_gap(leases.list_leases() if leases.exists() else [], api.list_shards(source.stream_arn))
    total = ensure_segments(
        leases, segments or settings.backfill_segments, int(table.get("TableSizeBytes", 0)), restart
    )
    display = ProgressDisplay(int(table.get("ItemCount", 0)), "backfill")
    runner = build_runner(
        settings, source, aws.dynamodb, leases, metrics, routes, catalog, on_progress=display.show, aws_clock=aws.clock
    )
    indices = ", ".join(routes.index_patterns)
    log.info("backfill_started", table=source.table_name, index=indices, segments=total)
    progress = runner.run(stop)
    display.finish()
    tally = progress.tally
    elapsed = time.monotonic() - tally.started
    if as_json:
        summary = {
            "table": source.table_name,
            "indices": list(routes.index_patterns),
            "segments_done": progress.done,
            "segments_total": progress.total,
            "complete": progress.done == progress.total,
            "items": tally.items,
            "seconds": round(elapsed, 3),
            "applied": tally.applied,
            "stale": tally.stale,
            "filtered": tally.filtered,
            "dead_lettered": tally.dead_lettered,
            "read_units": round(tally.read_units, 3),
        }
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        return progress.done < progress.total
    sys.stdout.write(
        f"backfill of {source.table_name} into {indices}: {progress.done}/{progress.total} segments done; "
        f"this process: {tally.items} items in {elapsed:.0f} s ({tally.items / max(elapsed, 1e-9):,.0f}/s): "
        f"{tally.applied} applied, {tally.stale} stale (a newer change was indexed), {tally.filtered} filtered, "
        f"{tally.dead_lettered} dead-lettered; {tally.read_units:,.0f} read units\n"
    )
    if progress.done < progress.total:
        sys.stdout.write("not every segment is done: run `consumer backfill` again to resume\n")
    return progress.done < progress.total
