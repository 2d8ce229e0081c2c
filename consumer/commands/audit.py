"""``consumer audit``: compare the table with the index (each index of the routes: an item is
expected in the index its route puts it in, and nowhere else); with ``--repair``, fix the drift.

Two passes, one page at a time, so memory stays flat whatever the table's size:

1. *Table pass.* Each Scan page (consistent reads, within ``CDC_BACKFILL_MAX_READ_UNITS``) is
   projected as a worker would write it (``consumer.pipeline.repair.project_item``) and compared with the
   live documents of the same ids (one ``_mget``): a document *missing* for an item, or a
   *different* one.
2. *Index pass.* The live documents are scrolled page by page; the items their key fields name are
   read with BatchGetItem; a document without an item (or of an item the state filter leaves out)
   is *extra*. A masked key attribute (``CDC_MASK_FIELDS``) cannot be read back from a document:
   the table pass then keeps the ids it saw (about 100 bytes each) and a document of no such id is
   extra, repaired at the version of the table pass's first read (so an item written since wins).

``--repair`` writes each page's drift as it is found: the table's state for a missing or different
document, a tombstone for an extra one, with the external version ``repair_version(read time of
that page)``: a change made after the read always wins over it, so a repair racing the workers is
safe, and one that lost is reported *stale*.

On a live table, changes still in flight show up as drift; running the audit again tells them
apart from lasting drift. Counts are whole; examples are kept up to ``--limit`` of each kind.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson

from consumer.commands.progress import ProgressDisplay
from consumer.commands.reconcile import Reconciler
from consumer.config import Settings
from consumer.pipeline.bulk import Outcome
from consumer.pipeline.repair import (
    Document,
    Drift,
    Projected,
    RepairAction,
    compare_page,
    extra_ids,
    key_fields,
    key_of_document,
    plan_repair,
    repair_version,
    restore,
)
from consumer.runtime.stream_source import describe_table
from consumer.sink.opensearch import Result

_KINDS = {
    "missing": "in the table, not in the index",
    "extra": "in the index, not in the table",
    "different": "in both, with different fields",
}


@dataclass
class Examples:
    """How many of one kind were found, and the first ``limit`` of them."""

    limit: int
    count: int = 0
    shown: list = field(default_factory=list)

    def add(self, examples: Iterable) -> None:
        for example in examples:
            self.count += 1
            if len(self.shown) < self.limit:
                self.shown.append(example)


@dataclass
class RepairReport:
    """What became of the repair writes: applied, stale ids and (id, error) of poison ones; the
    versions used (one per page read)."""

    limit: int
    first_version: int | None = None
    last_version: int | None = None
    applied: int = 0
    stale: Examples = field(init=False)
    poison: Examples = field(init=False)

    def __post_init__(self) -> None:
        self.stale = Examples(self.limit)
        self.poison = Examples(self.limit)

    @property
    def writes(self) -> int:
        return self.applied + self.stale.count + self.poison.count

    def add(self, version: int, actions: list[RepairAction], results: list[Result]) -> None:
        """Count the outcomes of one page's repair writes."""
        self.first_version = version if self.first_version is None else self.first_version
        self.last_version = version
        for action, (outcome, error) in zip(actions, results, strict=True):
            if outcome is Outcome.APPLIED:
                self.applied += 1
            elif outcome is Outcome.STALE:
                self.stale.add([action.doc_id])
            else:
                self.poison.add([(action.doc_id, error or outcome.value)])


@dataclass
class AuditReport:
    """The outcome of one audit: items and live documents counted, the drift, the repair's outcome."""

    table: str
    index: str  # the indices, comma-separated (patterns for templated routes)
    limit: int
    routed: bool = False  # examples then name their index: <index>/<id>
    items: int = 0
    documents: int = 0
    missing: Examples = field(init=False)
    extra: Examples = field(init=False)
    different: Examples = field(init=False)
    repair: RepairReport | None = None

    def __post_init__(self) -> None:
        self.missing = Examples(self.limit)
        self.extra = Examples(self.limit)
        self.different = Examples(self.limit)

    @property
    def drift(self) -> bool:
        return bool(self.missing.count or self.extra.count or self.different.count)

    def add(self, drift: Drift, index: str) -> None:
        label = (lambda doc_id: f"{index}/{doc_id}") if self.routed else (lambda doc_id: doc_id)
        self.missing.add(map(label, drift.missing))
        self.extra.add(map(label, drift.extra))
        self.different.add((label(doc_id), fields) for doc_id, fields in drift.different)


def run_audit(
    reconciler: Reconciler,
    repair: bool,
    limit: int,
    stop: threading.Event,
    on_page: Callable[[AuditReport], None] | None = None,
) -> AuditReport:
    """Both passes, page by page, repairing each page's drift when asked; ``on_page`` sees the report
    after each page of either pass."""
    routed = len(reconciler.routing.routes) > 1 or reconciler.routing.routes[0].index.templated
    report = AuditReport(
        reconciler.table, reconciler.indices, limit, routed, repair=RepairReport(limit) if repair else None
    )
    schema = reconciler.schema
    # A masked key attribute cannot be read back from a document: the second pass then judges by the
    # ids the first one saw, with their index (held whole, about 100 bytes each), at the time of its
    # first read.
    table_ids: set[tuple[str, str]] | None = set() if schema.masked else None
    first_read_at: float | None = None
    for page in reconciler.table_pages(stop):
        projected = reconciler.projected(page)
        report.items += len(projected)
        if table_ids is not None:
            table_ids.update((placed.index, doc_id) for doc_id, placed in projected.items())
            first_read_at = page.read_at if first_read_at is None else first_read_at
        for index, expected in _by_index(projected).items():
            drift = compare_page(expected, reconciler.live_documents(index, expected))
            report.add(drift, index)
            if report.repair is not None and drift.found:
                version = repair_version(page.read_at)
                actions = plan_repair(drift, expected, version, index)
                report.repair.add(version, actions, reconciler.apply(actions, stop))
        if on_page is not None:
            on_page(report)
    for index, page_documents in reconciler.index_pages():
        documents = dict(page_documents)
        report.documents += len(documents)
        if table_ids is not None:
            read_at = first_read_at if first_read_at is not None else reconciler.read_time(time.monotonic())
            extra = [doc_id for doc_id in documents if (index, doc_id) not in table_ids]
        else:
            keys = [key for key in (key_of_document(schema, document) for document in documents.values()) if key]
            read_at, items = reconciler.current_items(keys, stop)
            extra = extra_ids(schema, index, documents, items, reconciler.routing)
        report.add(Drift(extra=tuple(extra)), index)
        if report.repair is not None and extra:
            version = repair_version(read_at)
            actions = [
                restore(doc_id, None, version, key_fields(schema, documents[doc_id]), index=index) for doc_id in extra
            ]
            report.repair.add(version, actions, reconciler.apply(actions, stop))
        if on_page is not None:
            on_page(report)
    return report


def _by_index(projected: dict[str, Projected]) -> dict[str, dict[str, Document]]:
    """The page's expected documents (id → document) grouped by their index."""
    grouped: dict[str, dict[str, Document]] = {}
    for doc_id, placed in projected.items():
        grouped.setdefault(placed.index, {})[doc_id] = placed.document
    return grouped


def render_text(report: AuditReport) -> str:
    """The report for a person: counts, examples up to the limit, the repair's outcome."""
    verdict = "drift found" if report.drift else "no drift"
    lines = [
        f"table {report.table} ({report.items} items) vs index {report.index} ({report.documents} documents): {verdict}"
    ]
    kinds = {"missing": report.missing, "extra": report.extra, "different": report.different}
    lines += [f"  {kind:<10}{kinds[kind].count:>8}  {meaning}" for kind, meaning in _KINDS.items()]
    examples = [
        *(("missing", doc_id) for doc_id in report.missing.shown),
        *(("extra", doc_id) for doc_id in report.extra.shown),
        *(("different", f"{doc_id}  fields: {', '.join(fields)}") for doc_id, fields in report.different.shown),
    ]
    if examples:
        lines.append(f"examples (up to {report.limit} of each):")
        lines += [f"  {kind:<10}{text}" for kind, text in examples]
    if report.repair is not None:
        lines += _repair_lines(report.repair)
    return "\n".join(lines) + "\n"


def render_json(report: AuditReport) -> str:
    """The report for a script: counts, examples up to the limit, the repair's outcome."""
    repair = report.repair
    body = {
        "table": report.table,
        "index": report.index,
        "items": report.items,
        "documents": report.documents,
        "drift": report.drift,
        "missing": {"count": report.missing.count, "examples": report.missing.shown},
        "extra": {"count": report.extra.count, "examples": report.extra.shown},
        "different": {
            "count": report.different.count,
            "examples": [{"id": doc_id, "fields": list(fields)} for doc_id, fields in report.different.shown],
        },
        "repair": None
        if repair is None
        else {
            "versions": [repair.first_version, repair.last_version] if repair.writes else [],
            "applied": repair.applied,
            "stale": {"count": repair.stale.count, "examples": repair.stale.shown},
            "poison": {
                "count": repair.poison.count,
                "examples": [{"id": doc_id, "error": error} for doc_id, error in repair.poison.shown],
            },
        },
    }
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n"


def _repair_lines(repair: RepairReport) -> list[str]:
    versions = "" if not repair.writes else f" with versions {repair.first_version} … {repair.last_version}"
    lines = [
        f"repair{versions}: {repair.writes} writes, {repair.applied} applied, "
        f"{repair.stale.count} stale, {repair.poison.count} poison"
    ]
    lines += [f"  {'stale':<10}{doc_id}  a newer change is already indexed" for doc_id in repair.stale.shown]
    lines += [f"  {'poison':<10}{doc_id}  {error}" for doc_id, error in repair.poison.shown]
    if repair.stale.count or repair.poison.count:
        lines.append("run `consumer audit` again: stale ids settle as the workers catch up; poison ones need a fix")
    return lines


def audit_command(settings: Settings, as_json: bool, repair: bool, limit: int, stop: threading.Event) -> bool:
    """Run ``consumer audit`` with the workers' settings and print its report; True when drift was found.
    Its progress (items of the table, then documents of the index, compared) goes to stderr: a line on
    a terminal, else a log line every few seconds."""
    reconciler = Reconciler.from_settings(settings)
    estimate = 2 * int(describe_table(reconciler.dynamodb, reconciler.table).get("ItemCount", 0))
    display, started = ProgressDisplay(estimate, "audit"), time.monotonic()
    report = run_audit(
        reconciler, repair, limit, stop, on_page=lambda so_far: display.count(so_far.items + so_far.documents, started)
    )
    display.finish()
    sys.stdout.write(render_json(report) if as_json else render_text(report))
    return report.drift
