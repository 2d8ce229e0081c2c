"""deploy/grafana/dashboard.json: a valid dashboard whose every query is PromQL that promtool accepts.

promtool has no command that checks a bare expression, so each panel query (Grafana variables
replaced by plain values) becomes a recording rule in a temporary rules file, and
`promtool check rules` parses them all.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.deploy.helpers import DEPLOY, dashboard_expressions, dashboard_panels, json_file, run, tool

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def test_every_panel_query_is_valid_promql(tmp_path: Path):
    # GIVEN every panel query as a recording rule named after its panel
    rules = [
        {"record": "dashboard:" + re.sub(r"\W+", "_", name).strip("_").lower(), "expr": expr}
        for name, expr in dashboard_expressions()
    ]
    rules_file = tmp_path / "dashboard-rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    # THEN promtool parses them all (its error names the rule, i.e. the panel)
    assert f"SUCCESS: {len(rules)} rules found" in run(tool("promtool"), "check", "rules", rules_file)


def test_dashboard_uses_the_datasource_variable():
    dashboard = json_file(DEPLOY / "grafana" / "dashboard.json")
    assert dashboard["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for panel in dashboard_panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]


def test_panels_have_unique_ids_and_a_place():
    panels = dashboard_panels()
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_dashboard_shows_what_operators_need():
    queries = " ".join(expr for _, expr in dashboard_expressions())
    for needed in [
        "cdc_shard_iterator_age_seconds",  # iterator age per shard
        "cdc_shard_time_since_last_read_seconds",  # time since last read per shard
        "cdc_shard_checkpoint_age_seconds",  # checkpoint age
        "cdc_records_processed_total",  # throughput by outcome
        "cdc_records_dead_lettered_total",  # errors ...
        "cdc_bulk_requests_total",
        "cdc_sink_retries_total",
        'outcome=~"throttled',
        "histogram_quantile(0.5, sum by (le) (rate(cdc_bulk_request_duration_seconds_bucket",  # bulk p50
        "histogram_quantile(0.99, sum by (le) (rate(cdc_bulk_request_duration_seconds_bucket",  # bulk p99
        "cdc_leases_held",  # leases per pod
        "cdc_lease_events_total",
    ]:
        assert needed in queries
