"""``consumer audit``: compare the table with the index; with ``--repair``, fix the drift.

The table is scanned with consistent reads and every item projected as a worker would write it
(``consumer.repair.project_item``); the index is scrolled in full. Drift is a document *missing*
for an item, an *extra* document without an item, or a *different* document. ``--repair`` writes
the table's state for each drifted id (index, or a tombstone for an extra one; tombstones in the
index count as absent items) with the external
version ``repair_version(read time of the scan)``: a change made after the scan always wins over
it, so a repair racing the workers is safe, and one that lost is reported *stale*.

On a live table, changes still in flight show up as drift; running the audit again tells them
apart from lasting drift. The table's documents are held in memory during the audit.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from consumer.config import Settings
from consumer.reconcile import Reconciler
from consumer.repair import Drift, RepairAction, compare, plan_repair, repair_version
from consumer.sink.bulk import Outcome
from consumer.sink.opensearch import Result

_KINDS = {
    "missing": "in the table, not in the index",
    "extra": "in the index, not in the table",
    "different": "in both, with different fields",
}


@dataclass(frozen=True)
class RepairReport:
    """What became of the repair writes: ids applied and stale, (id, error) of poison ones."""

    version: int
    applied: tuple[str, ...]
    stale: tuple[str, ...]
    poison: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AuditReport:
    """The outcome of one audit."""

    table: str
    index: str
    items: int
    drift: Drift
    repair: RepairReport | None = None

    @property
    def documents(self) -> int:
        """Documents in the index: every item's but the missing ones, plus the extra ones."""
        return self.items - len(self.drift.missing) + len(self.drift.extra)


def run_audit(reconciler: Reconciler, repair: bool, stop: threading.Event) -> AuditReport:
    """Scan the table, scroll the index, compare, and repair the drift when asked."""
    read_at, expected = reconciler.scan_table()
    drift = compare(expected, reconciler.scroll_index())
    report = AuditReport(reconciler.table, reconciler.index, len(expected), drift)
    if not (repair and drift.found):
        return report
    version = repair_version(read_at)
    actions = plan_repair(drift, expected, version)
    return AuditReport(
        report.table, report.index, report.items, drift, summarize(version, actions, reconciler.apply(actions, stop))
    )


def summarize(version: int, actions: list[RepairAction], results: list[Result]) -> RepairReport:
    """Group the outcomes of the repair writes by kind."""
    applied, stale, poison = [], [], []
    for action, (outcome, error) in zip(actions, results, strict=True):
        if outcome is Outcome.APPLIED:
            applied.append(action.doc_id)
        elif outcome is Outcome.STALE:
            stale.append(action.doc_id)
        else:
            poison.append((action.doc_id, error or outcome.value))
    return RepairReport(version, tuple(applied), tuple(stale), tuple(poison))


def render_text(report: AuditReport, limit: int) -> str:
    """The report for a person: counts, up to ``limit`` examples of each kind, the repair's outcome."""
    drift = report.drift
    verdict = "drift found" if drift.found else "no drift"
    lines = [
        f"table {report.table} ({report.items} items) vs index {report.index} ({report.documents} documents): {verdict}"
    ]
    counts = {"missing": len(drift.missing), "extra": len(drift.extra), "different": len(drift.different)}
    lines += [f"  {kind:<10}{counts[kind]:>8}  {meaning}" for kind, meaning in _KINDS.items()]
    examples = [
        *(("missing", doc_id) for doc_id in drift.missing[:limit]),
        *(("extra", doc_id) for doc_id in drift.extra[:limit]),
        *(("different", f"{doc_id}  fields: {', '.join(fields)}") for doc_id, fields in drift.different[:limit]),
    ]
    if examples:
        lines.append(f"examples (up to {limit} of each):")
        lines += [f"  {kind:<10}{text}" for kind, text in examples]
    if report.repair is not None:
        lines += _repair_lines(report.repair, limit)
    return "\n".join(lines) + "\n"


def render_json(report: AuditReport, limit: int) -> str:
    """The report for a script: counts, up to ``limit`` examples of each kind, the repair's outcome."""
    drift = report.drift
    repair = report.repair
    body = {
        "table": report.table,
        "index": report.index,
        "items": report.items,
        "documents": report.documents,
        "drift": drift.found,
        "missing": {"count": len(drift.missing), "examples": list(drift.missing[:limit])},
        "extra": {"count": len(drift.extra), "examples": list(drift.extra[:limit])},
        "different": {
            "count": len(drift.different),
            "examples": [{"id": doc_id, "fields": list(fields)} for doc_id, fields in drift.different[:limit]],
        },
        "repair": None
        if repair is None
        else {
            "version": repair.version,
            "applied": len(repair.applied),
            "stale": {"count": len(repair.stale), "examples": list(repair.stale[:limit])},
            "poison": {
                "count": len(repair.poison),
                "examples": [{"id": doc_id, "error": error} for doc_id, error in repair.poison[:limit]],
            },
        },
    }
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n"


def _repair_lines(repair: RepairReport, limit: int) -> list[str]:
    total = len(repair.applied) + len(repair.stale) + len(repair.poison)
    lines = [
        f"repair with version {repair.version}: {total} writes, {len(repair.applied)} applied, "
        f"{len(repair.stale)} stale, {len(repair.poison)} poison"
    ]
    lines += _listed("stale", (f"{doc_id}  a newer change is already indexed" for doc_id in repair.stale), limit)
    lines += _listed("poison", (f"{doc_id}  {error}" for doc_id, error in repair.poison), limit)
    if repair.stale or repair.poison:
        lines.append("run `consumer audit` again: stale ids settle as the workers catch up; poison ones need a fix")
    return lines


def _listed(kind: str, texts: Iterable[str], limit: int) -> list[str]:
    return [f"  {kind:<10}{text}" for _, text in zip(range(limit), texts, strict=False)]


def audit_command(settings: Settings, as_json: bool, repair: bool, limit: int) -> bool:
    """Run ``consumer audit`` with the workers' settings and print its report; True when drift was found."""
    report = run_audit(Reconciler.from_settings(settings), repair, threading.Event())
    sys.stdout.write(render_json(report, limit) if as_json else render_text(report, limit))
    return report.drift.found
