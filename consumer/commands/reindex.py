"""``consumer reindex``: build the index generation of this configuration and swap the read aliases to
it; ``--rollback``, ``--retire``, ``--abandon``; ``--status`` (docs/generations.md).

The steps are those of ``consumer.runtime.reindex.Reindex``; this module adds how a generation is
proven (``prove``: the audit, repeated until no id differs in two audits in a row, so that a change
in flight is told apart from lasting drift) and the report. Interrupted (SIGTERM, Ctrl-C, kill -9),
running it again resumes: the generation, its backfill segments and its indices are where it left
them.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import orjson
import structlog
from prometheus_client import CollectorRegistry

from consumer.commands.audit import AuditReport, run_audit
from consumer.commands.leases_report import describe_progress
from consumer.commands.progress import ProgressDisplay
from consumer.commands.reconcile import Reconciler
from consumer.config import Settings
from consumer.errors import ConfigError, GenerationRefused
from consumer.observability.metrics import Metrics
from consumer.pipeline.generations import Generation, Registry
from consumer.runtime.assembly import build_routing
from consumer.runtime.clients import aws_clients, opensearch_client
from consumer.runtime.reindex import PROVE_PASSES, Proof, Reindex
from consumer.runtime.stream_source import describe_table, resolve_stream, with_document_ids

log = structlog.get_logger(__name__)

DRIFT_IDS_KEPT = 100_000  # of one audit, to compare with the next


def reindex_command(settings: Settings, action: str, force: bool, as_json: bool, stop: threading.Event) -> bool:
    """Run ``action`` (reindex, rollback, retire, abandon, status); True when it needs attention."""
    reindex = build_reindex(settings, stop)
    if action == "status":
        registry = reindex.store.read()[0]
        sys.stdout.write(render_json(registry) if as_json else render_text(registry, reindex))
        return False
    if action == "rollback":
        registry = reindex.rollback(force)
        sys.stdout.write(f"rolled back: generation {registry.live.number} is live again\n")  # type: ignore[union-attr]
        return False
    if action == "retire":
        retired = reindex.retire(now=force)
        sys.stdout.write(_gone(retired, "retired"))
        return False
    if action == "abandon":
        abandoned = reindex.abandon()
        sys.stdout.write(_gone(abandoned, "abandoned"))
        return False
    table = describe_table(reindex.aws.dynamodb, reindex.source.table_name)
    display = ProgressDisplay(int(table.get("ItemCount", 0)), "reindex")
    started = time.monotonic()
    try:
        generation = reindex.run(lambda built, on_audited: prove(settings, built, stop, on_audited), display.show)
    except GenerationRefused as exc:
        raise ConfigError(str(exc)) from None
    display.finish()
    if generation is None:
        sys.stdout.write("stopped before the swap: run `consumer reindex` again to resume\n")
        return True
    steps = ", ".join(f"{step} {seconds:,.1f} s" for step, seconds in reindex.step_seconds.items())
    sys.stdout.write(
        f"generation {generation.number} is live after {time.monotonic() - started:,.1f} s ({steps or 'already built'}); "
        "the previous generation is "
        f"kept for rollback for {settings.generation_retention_seconds:,.0f} s (consumer reindex --rollback)\n"
    )
    return False


def build_reindex(settings: Settings, stop: threading.Event) -> Reindex:
    aws = aws_clients(settings.aws_region, settings.streams_endpoint_url)
    source = with_document_ids(
        settings, resolve_stream(aws.dynamodb, aws.streams, settings.source_table, settings.stream_arn)
    )
    routes = build_routing(settings, source)
    return Reindex(settings, aws, source, routes, opensearch_client(settings), Metrics(CollectorRegistry()), stop)


def prove(
    settings: Settings, generation: Generation, stop: threading.Event, on_audited: Callable[[int], None]
) -> Proof:
    """Audit ``generation`` (this configuration's) until no id differs in two audits in a row, at most
    ``PROVE_PASSES`` audits; an id that differs in one audit only was a change in flight.
    ``on_audited`` is told the items audited so far, page by page."""
    reconciler = Reconciler.from_settings(settings)
    earlier: set[str] | None = None
    items = 0
    audited = 0  # items and documents compared by the audits before this one

    def page_done(so_far: AuditReport) -> None:
        on_audited(audited + so_far.items + so_far.documents)

    for passes in range(1, PROVE_PASSES + 1):
        report = run_audit(reconciler, repair=False, limit=DRIFT_IDS_KEPT, stop=stop, on_page=page_done)
        audited += report.items + report.documents
        items = report.items
        drifting = _drifting(report)
        log.info("reindex_audit", generation=generation.number, audit=passes, items=items, drifting=len(drifting))
        lasting = drifting if earlier is None else drifting & earlier
        if not lasting or stop.is_set():
            return Proof(passes, items)
        earlier = drifting
        stop.wait(settings.failover_seconds)
    return Proof(PROVE_PASSES, items, tuple(sorted(lasting)))


def _drifting(report: AuditReport) -> set[str]:
    return set(report.missing.shown) | set(report.extra.shown) | {doc_id for doc_id, _fields in report.different.shown}


def render_text(registry: Registry, reindex: Reindex) -> str:
    if not registry.generations:
        return "no generation recorded yet: the workers adopt the first when they start\n"
    lines = [f"{'generation':<12}{'state':<10}{'fingerprint':<18}{'lease table':<40}since"]
    for generation in sorted(registry.generations, key=lambda g: g.number):
        since = generation.left_live_at or generation.live_since or generation.created_at
        applied = "workers running" if reindex.applied(generation) else "no workers"
        lines.append(
            f"{generation.number:<12}{generation.state:<10}{generation.fingerprint:<18}{generation.lease_table:<40}"
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(since))}  ({applied})"
        )
        if generation.state == "building":
            lines.append(f"{'':<12}{describe_progress(generation, reindex.clock())}")
            behind = reindex.behind(generation)
            lines.append(f"{'':<12}catching up: {len(behind)} shards behind the live generation")
    return "\n".join(lines) + "\n"


def render_json(registry: Registry) -> str:
    return orjson.dumps(registry.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"


def _gone(generation: Generation, what: str) -> str:
    return (
        f"generation {generation.number} {what}: its indices are deleted; its lease table {generation.lease_table} "
        "may be deleted too\n"
    )
