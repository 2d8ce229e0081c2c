"""deploy/prometheus: the alert rules pass promtool's checks and unit tests, every alert is tested
firing and not firing, and every alert names its severity and a runbook section that exists."""

from __future__ import annotations

import pytest

from tests.deploy.helpers import ALERT_TESTS, ALERTS, OPERATIONS, alert_rules, markdown_anchors, run, tool, yaml_file

RUNBOOK = "https://runbooks.example.com/cdc-consumer/operations.md#"  # the one base operators set (docs/operations.md, "Alerts")


def test_promtool_checks_the_rules():
    assert "SUCCESS" in run(tool("promtool"), "check", "rules", ALERTS)


def test_promtool_unit_tests_pass():
    assert "SUCCESS" in run(tool("promtool"), "test", "rules", ALERT_TESTS)


def _cases(firing: bool) -> set[str]:
    """Alert names that some unit test expects to fire (firing=True) or to stay silent."""
    return {
        case["alertname"]
        for test in yaml_file(ALERT_TESTS)["tests"]
        for case in test["alert_rule_test"]
        if bool(case.get("exp_alerts")) == firing
    }


@pytest.mark.parametrize("firing", [True, False], ids=["firing", "not-firing"])
def test_every_alert_has_a_unit_test(firing):
    missing = {rule["alert"] for rule in alert_rules()} - _cases(firing)
    assert not missing, f"alerts without a {'firing' if firing else 'not-firing'} case in {ALERT_TESTS.name}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_has_severity_summary_and_runbook(rule):
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    runbook = rule["annotations"]["runbook_url"]
    assert runbook.startswith(RUNBOOK)
    assert runbook.removeprefix(RUNBOOK) in markdown_anchors(OPERATIONS), f"no section for {runbook}"


def test_the_design_alerts_are_all_there():
    # DESIGN §7 and the Operations issue: lag, dead letters, stalls, trimming, workers, errors.
    assert {rule["alert"] for rule in alert_rules()} >= {
        "CdcIteratorAgeHigh",
        "CdcRecordsDeadLettered",
        "CdcShardStalled",
        "CdcTrimmedData",
        "CdcWorkerDown",
        "CdcNoWorkers",
        "CdcErrorRatioHigh",
    }
