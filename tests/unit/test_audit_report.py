"""The audit's report, for a person (text) and for a script (JSON), and the repair's outcomes."""

from __future__ import annotations

import json

from consumer.audit import AuditReport, render_json, render_text, summarize
from consumer.repair import Drift, RepairAction
from consumer.sink.bulk import Outcome

DRIFT = Drift(missing=("m1", "m2"), extra=("e1",), different=(("d1", ("name", "price")),))


def test_the_repair_outcomes_are_grouped_by_kind():
    actions = [RepairAction(doc_id, 9, "index", {}) for doc_id in ("a", "s", "p")]
    results = [(Outcome.APPLIED, None), (Outcome.STALE, "409 conflict"), (Outcome.POISON, "400 mapper")]
    repair = summarize(9, actions, results)
    assert (repair.applied, repair.stale, repair.poison) == (("a",), ("s",), (("p", "400 mapper"),))


def test_the_text_report_counts_each_kind_and_shows_examples_up_to_the_limit():
    # GIVEN an audit that found two missing, one extra and one different document among 10 items
    report = AuditReport("orders", "orders", 10, DRIFT)

    # WHEN it is rendered with a limit of one example per kind
    lines = render_text(report, limit=1).splitlines()

    # THEN the counts are whole, the examples limited, and documents = items - missing + extra
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
    actions = [RepairAction(doc_id, 9, "index", {}) for doc_id in ("m1", "m2", "d1", "e1")]
    results = [(Outcome.APPLIED, None)] * 3 + [(Outcome.STALE, "409")]
    report = AuditReport("orders", "orders-v2", 10, DRIFT, summarize(9, actions, results))

    body = json.loads(render_json(report, limit=5))

    assert (body["items"], body["documents"], body["drift"]) == (10, 9, True)
    assert body["missing"] == {"count": 2, "examples": ["m1", "m2"]}
    assert body["different"]["examples"] == [{"id": "d1", "fields": ["name", "price"]}]
    assert body["repair"] == {
        "version": 9,
        "applied": 3,
        "stale": {"count": 1, "examples": ["e1"]},
        "poison": {"count": 0, "examples": []},
    }


def test_no_drift_is_said_plainly():
    report = AuditReport("orders", "orders", 3, Drift())
    assert render_text(report, 10).splitlines()[0] == "table orders (3 items) vs index orders (3 documents): no drift"
    assert json.loads(render_json(report, 10))["repair"] is None
