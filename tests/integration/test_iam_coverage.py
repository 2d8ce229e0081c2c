"""The IAM policies of deploy/iam against every call the code makes, recorded on the wire.

A worker (started twice: on a new index, then on an existing one, with the backfill on a new index
and a record OpenSearch refuses) and the operator commands (audit with repair, redrive of the
refused record, a restarted backfill, leases, config check) run against a DynamoDB front and an
OpenSearch front that record each call: its IAM action and resource. Every call of the worker must be
granted by ``policy.json``, every call of the commands by ``policy.operator.json``; and every grant
must serve some call (or be one this run cannot make, named with the reason): least privilege, checked
both ways."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from tests.support.commands import consumer
from tests.support.fault_proxy import FaultProxy
from tests.support.iam_calls import grants, policy_statements, recorded_calls, unused_grants
from tests.support.table_facade import TableFacade
from tests.support.tables import create_table, index_documents, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration

# Grants this run cannot exercise, and why (each is exercised elsewhere in the suite, or not on moto)
NOT_EXERCISED = {
    ("policy.json", "LeaseTableReadWrite", "dynamodb:GetItem"): "a child's parent looked up: splits (test_lineage)",
    ("policy.json", "LeaseTableReadWrite", "dynamodb:DeleteItem"): "ended leases cleaned up: rollovers",
    ("policy.json", "WriteDeadLettersS3", "s3:PutObject"): "the S3 destination: test_dead_letter_destinations",
    ("policy.json", "DecryptStreamWithTableKey", "kms:Decrypt"): "a customer-managed table key: not on moto",
    ("policy.operator.json", "RedriveFromSqs", "*"): "redrive from SQS: test_audit_redrive",
    ("policy.operator.json", "RedriveFromS3Objects", "*"): "redrive from S3: test_audit_redrive",
    ("policy.operator.json", "RedriveFromS3Listing", "*"): "redrive from S3: test_audit_redrive",
    ("policy.operator.json", "DecryptStreamWithTableKey", "kms:Decrypt"): "a customer-managed table key: not on moto",
    ("policy.operator.json", "LeaseTableReadWrite", "dynamodb:GetItem"): "a segment re-read: a contended backfill",
}


def test_every_call_is_granted_and_every_grant_is_used(
    ddb, dynamodb_front, proxy, table_name, worker_env, start_worker, search_engine
):
    # GIVEN a table and a worker whose calls all go through recording fronts
    create_table(ddb, table_name)
    write_random_history(ddb, table_name, changes=30, seed=3)
    env = {
        **worker_env,
        "AWS_ENDPOINT_URL": dynamodb_front.url,
        "CDC_OPENSEARCH_URL": proxy.url,
        "CDC_BACKFILL": "on-new-index",
        "CDC_TOMBSTONE_REAP_INTERVAL_SECONDS": "1",
    }
    # Every document refused until the operator commands run: each is resent once (it fits the mapping)
    # and then dead-lettered. Two refusals only were racy: the backfill's and the stream's requests
    # could each take one, and both resends then succeeded, with no dead letter.
    proxy.fail_items(400, count=None, error_type="illegal_argument_exception")

    # WHEN the worker runs on a new index, then again on the existing one
    def run_once(seed: int, backfill: bool) -> None:
        worker = start_worker(env)
        wait_until(lambda: worker.probe("/readyz")[0] == 200, timeout=60, what="the worker ready")
        write_random_history(ddb, table_name, changes=10, seed=seed)
        try:
            wait_until(lambda: Path(env["CDC_DEAD_LETTER_PATH"]).exists(), timeout=60, what="a dead letter")
            if backfill:  # a stream record may be dead-lettered before the backfill's first Scan
                wait_until(lambda: worker.metric("cdc_backfill_items_total") > 0, timeout=60, what="the backfill")
        except AssertionError as exc:  # say what the worker did meanwhile
            raise AssertionError(f"{exc}; the worker's log ends:\n{worker.log_path.read_text()[-4000:]}") from None
        assert worker.terminate() == 0

    run_once(seed=4, backfill=True)
    run_once(seed=5, backfill=False)
    worker_calls = recorded_calls(dynamodb_front.calls, proxy.requests, table_name)
    dynamodb_front.calls.clear()
    proxy.requests.clear()

    # AND the operator commands run (OpenSearch accepting everything again)
    proxy.heal()
    for command in (
        ["redrive", "--apply", env["CDC_DEAD_LETTER_PATH"]],
        ["audit", "--repair"],
        ["backfill", "--restart"],
        ["leases"],
        ["config", "--check"],
    ):
        answer = consumer(env, *command)
        assert answer.returncode in (0, 3), (command, answer.stderr[-2000:])
    assert index_documents(search_engine.url, table_name) == table_documents(ddb, table_name)
    operator_calls = recorded_calls(dynamodb_front.calls, proxy.requests, table_name)

    # THEN each call is granted by its policy, and each grant served a call
    for policy, calls in (("policy.json", worker_calls), ("policy.operator.json", operator_calls)):
        statements = policy_statements(policy, table_name)
        refused = sorted(call for call in calls if not any(grants(statement, *call) for statement in statements))
        assert not refused, f"{policy} does not grant: {refused}"
        unused = unused_grants(statements, calls, partial(_not_exercised, policy))
        assert not unused, f"{policy} grants what no call needs: {unused}"


def test_index_generations_need_the_generations_policy_and_nothing_more(
    ddb, moto, dynamodb_front, proxy, table_name, worker_env, start_worker, search_engine
):
    # GIVEN workers of two configurations (generations on) whose calls go through recording fronts,
    # and an operator whose calls go through fronts of their own
    create_table(ddb, table_name)
    write_random_history(ddb, table_name, changes=30, seed=6)
    env = {
        **worker_env,
        "AWS_ENDPOINT_URL": dynamodb_front.url,
        "CDC_OPENSEARCH_URL": proxy.url,
        "CDC_INDEX_GENERATIONS": "on",
        "CDC_GENERATION_CHECK_SECONDS": "0.5",
        "CDC_GENERATION_RETENTION_SECONDS": "1",
        "CDC_RETRY_MAX_DELAY_SECONDS": "2",
    }
    second = {**env, "CDC_DROP_FIELDS": "name"}
    operator_front, operator_proxy = TableFacade(moto.url), FaultProxy(search_engine.url)
    operator = {**second, "AWS_ENDPOINT_URL": operator_front.url, "CDC_OPENSEARCH_URL": operator_proxy.url}
    try:
        # WHEN the first configuration's worker makes generation 1, the second's refuses it, the operator
        # runs `consumer reindex` (and --status, leases), the second worker makes generation 2 live, the
        # first one stops and the second, live, retires generation 1 once its retention ended
        first_worker = start_worker(env, "first")
        wait_until(lambda: first_worker.probe("/readyz")[0] == 200, timeout=60, what="the first worker ready")
        second_worker = start_worker(second, "second")
        wait_until(lambda: "consumer reindex" in second_worker.probe("/readyz")[1], 60, "the refusal")
        for command in (["reindex"], ["reindex", "--status"], ["leases"]):
            answer = consumer(operator, *command, timeout=300)
            assert answer.returncode == 0, (command, answer.stderr[-2000:])
        wait_until(lambda: second_worker.probe("/readyz")[0] == 200, timeout=60, what="the second worker ready")
        assert first_worker.terminate() == 0
        search = OpenSearch(hosts=[search_engine.url])
        wait_until(lambda: not search.indices.exists(index=f"{table_name}-g1"), 60, "generation 1 retired")
        assert second_worker.terminate() == 0
        worker_calls = recorded_calls(dynamodb_front.calls, proxy.requests, table_name)
        operator_calls = recorded_calls(operator_front.calls, operator_proxy.requests, table_name)
    finally:
        operator_front.stop()
        operator_proxy.stop()

    # THEN each call is granted by the role's policy with policy.generations.json, and each grant of
    # policy.generations.json served a call of the workers or the operator
    generations = policy_statements("policy.generations.json", table_name)
    for policy, calls in (("policy.json", worker_calls), ("policy.operator.json", operator_calls)):
        statements = policy_statements(policy, table_name) + generations
        refused = sorted(call for call in calls if not any(grants(statement, *call) for statement in statements))
        assert not refused, f"{policy} with policy.generations.json does not grant: {refused}"
    # a generation's lease table serves the same lease work as the lease table, with the same gaps
    unused = unused_grants(
        generations,
        worker_calls | operator_calls,
        lambda _, action: _not_exercised("policy.json", "LeaseTableReadWrite", action),
    )
    assert not unused, f"policy.generations.json grants what no call needs: {unused}"


def _not_exercised(policy: str, sid: str, action: str) -> bool:
    return (policy, sid, action) in NOT_EXERCISED or (policy, sid, "*") in NOT_EXERCISED
