"""deploy/iam/policy.kcl.json against every call of the KCL mode, recorded on the wire: the real Java
KCL daemon (its lease, CoordinatorState and WorkerMetricStats tables, the stream) and its children
(`consumer kcl-processor`: the source table, the version clock on the lease items, OpenSearch) run
through recording fronts until the index equals the table. Every call must be granted, and every
grant must serve a call or be one this run cannot make, named with the reason (as for the workers'
policy in test_iam_coverage; the checks are tests/support/iam_calls.py)."""

from __future__ import annotations

import pytest

from tests.support.iam_calls import grants, listed, policy_statements, recorded_calls, unused_grants
from tests.support.kcl_daemon import KclDaemon, daemon_properties
from tests.support.kcl_daemon_side import kcl_env
from tests.support.tables import create_table, index_documents, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration

NOT_EXERCISED = {
    ("PublishKclMetrics", "cloudwatch:PutMetricData"): "metricsLevel NONE here: moto's CloudWatch is not the point",
    ("KclTables", "dynamodb:DeleteItem"): "a finished shard's lease removed: splits, not on moto",
    ("WriteTheIndex", "es:ESHttpGet"): "an existing index's mapping read: a restart (test_iam_coverage's second run)",
}


def test_the_kcl_mode_needs_its_policy_and_nothing_more(
    ddb, dynamodb_front, proxy, table_name, tmp_path, kcl_classpath, search_engine
):
    # GIVEN a table with a history, and a daemon whose calls, and its children's, go through recording fronts
    create_table(ddb, table_name)
    stream_arn = ddb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    write_random_history(ddb, table_name, changes=40, seed=51)
    application = f"{table_name}-cdc-leases"  # the lease table the Helm chart names by default
    env = kcl_env(dynamodb_front.url, table_name, proxy.url, None, tmp_path / "dead-letters.jsonl")
    properties = daemon_properties(tmp_path / "a.properties", stream_arn, application, dynamodb_front.url, "daemon-a")
    daemon = KclDaemon(kcl_classpath, properties, env, tmp_path / "daemon.log")
    try:
        # WHEN it runs until the index equals the table, and stops
        wait_until(
            lambda: index_documents(search_engine.url, table_name) == table_documents(ddb, table_name),
            timeout=300,
            what="index to equal table",
        )
    finally:
        daemon.stop()
    calls = recorded_calls(dynamodb_front.calls, proxy.requests, table_name)

    # THEN each call is granted by policy.kcl.json, and each grant served a call
    statements = policy_statements("policy.kcl.json", table_name)
    refused = sorted(call for call in calls if not any(grants(statement, *call) for statement in statements))
    assert not refused, f"policy.kcl.json does not grant: {refused}"
    unused = unused_grants(statements, calls, lambda sid, action: (sid, action) in NOT_EXERCISED)
    assert not unused, f"policy.kcl.json grants what no call needs: {unused}"
    assert all(listed(statement["Action"]) for statement in statements)
