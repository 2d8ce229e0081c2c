"""The audit's report, for a person (text) and for a script (JSON), and the repair's outcomes."""

from __future__ import annotations

import json

from consumer.commands.audit import AuditReport, Examples, RepairReport, render_json, render_text
from consumer.pipeline.bulk import Outcome
from consumer.pipeline.repair import Drift, RepairAction

DRIFT = Drift(missing=("m1", "m2"), extra=("e1",), different=(("d1", ("name", "price")),))


def report_of(*drifts: Drift, limit: int = 10, items: int = 10, documents: int = 9) -> AuditReport:
    report = AuditReport("orders", "orders", limit, items=items, documents=documents)
    for drift in drifts:
        report.add(drift, "orders")
    return report


def test_counts_are_whole_and_examples_stop_at_the_limit():
    examples = Examples(limit=2)
    examples.add(["a", "b"])
    examples.add(["c"])
    assert (examples.count, examples.shown) == (3, ["a", "b"])


def test_the_repair_outcomes_are_counted_by_kind_across_pages():
    repair = RepairReport(limit=10)
    actions = [RepairAction(doc_id, 9, "index", {}) for doc_id in ("a", "s", "p")]
    repair.add(9, actions, [(Outcome.APPLIED, None), (Outcome.STALE, "409 conflict"), (Outcome.POISON, "400 mapper")])
    repair.add(12, actions[:1], [(Outcome.APPLIED, None)])
    assert (repair.applied, repair.stale.shown, repair.poison.shown) == (2, ["s"], [("p", "400 mapper")])
    assert (repair.first_version, repair.last_version, repair.writes) == (9, 12, 4)


def test_the_text_report_counts_each_kind_and_shows_examples_up_to_the_limit():
    # GIVEN an audit that found two missing, one extra and one different document among 10 items
    report = report_of(DRIFT, limit=1)

    # WHEN it is rendered
    lines = render_text(report).splitlines()

    # THEN the counts are whole and the examples limited
    assert lines == [
        "table orders (10 items) vs index orders (9 documents): drift found",
        "  missing          2  in the table, not in the index",
        "  extra            1  in the index, not in the table",
        "  different        1  in both, with different fields",
        "examples (up to 1 of each):",
        "  missing   m1",
        "  extra     e1",
        "  different d1  fields: name, price",
    ]


def test_the_json_report_has_counts_examples_and_the_repair():
    report = report_of(DRIFT, limit=5)
    report.repair = RepairReport(limit=5)
    actions = [RepairAction(doc_id, 9, "index", {}) for doc_id in ("m1", "m2", "d1", "e1")]
    report.repair.add(9, actions, [(Outcome.APPLIED, None)] * 3 + [(Outcome.STALE, "409")])

    body = json.loads(render_json(report))

    assert (body["items"], body["documents"], body["drift"]) == (10, 9, True)
    assert body["missing"] == {"count": 2, "examples": ["m1", "m2"]}
    assert body["different"]["examples"] == [{"id": "d1", "fields": ["name", "price"]}]
    assert body["repair"] == {
        "versions": [9, 9],
        "applied": 3,
        "stale": {"count": 1, "examples": ["e1"]},
        "poison": {"count": 0, "examples": []},
    }


def test_no_drift_is_said_plainly():
    report = report_of(items=3, documents=3)
    assert render_text(report).splitlines()[0] == "table orders (3 items) vs index orders (3 documents): no drift"
    assert json.loads(render_json(report))["repair"] is None
