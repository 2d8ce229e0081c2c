"""deploy/iam: well-formed, least-privilege policies whose actions exist and whose resources are the
tables, stream and domain the manifests configure.

There is no offline IAM validator: actions are checked against botocore's service models (for
DynamoDB, KMS, SQS, S3, CloudWatch and its Logs an IAM action is named after its API operation),
resources by ARN shape.
"""

from __future__ import annotations

import re
from functools import cache

import botocore.session
import pytest

from tests.deploy.helpers import DEPLOY, json_file, manifest

POLICIES = sorted((DEPLOY / "iam").glob("*.json"))
POLICY = DEPLOY / "iam" / "policy.json"
# IAM prefix → botocore service models whose operation names are the IAM action names.
SERVICES = {
    "dynamodb": ["dynamodb", "dynamodbstreams"],
    "kms": ["kms"],
    "sqs": ["sqs"],
    "s3": ["s3"],
    "logs": ["logs"],
    "cloudwatch": ["cloudwatch"],
}
OPENSEARCH_HTTP_ACTIONS = {f"es:ESHttp{verb}" for verb in ("Get", "Head", "Post", "Put", "Delete", "Patch")}
# ECS Exec (the Session Manager channels of `aws ecs execute-command`): a data-plane service without a
# botocore model; AWS documents these four actions, which only take Resource "*".
ECS_EXEC_ACTIONS = {
    f"ssmmessages:{verb}"
    for verb in ("CreateControlChannel", "CreateDataChannel", "OpenControlChannel", "OpenDataChannel")
}
# IAM actions not named after an API operation: the operation each authorizes
IAM_ONLY_ACTIONS = {"s3:ListBucket": "ListObjectsV2"}
TRUST_POLICIES = sorted((DEPLOY / "iam" / "trust").glob("*.json"))
ARN = re.compile(r"^arn:aws:(?P<service>[\w-]+):(?P<region>[\w-]*):(?P<account>\d{12}|):(?P<resource>.+)$")


def _statements(path) -> list[dict]:
    return json_file(path)["Statement"]


def _actions(statement: dict) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]


@cache
def _operations(prefix: str) -> set[str]:
    session = botocore.session.get_session()
    return {name for model in SERVICES[prefix] for name in session.get_service_model(model).operation_names}


@pytest.mark.parametrize("path", POLICIES, ids=lambda path: path.name)
def test_policy_is_well_formed(path):
    policy = json_file(path)
    assert policy["Version"] == "2012-10-17"
    sids = [statement["Sid"] for statement in policy["Statement"]]
    assert len(sids) == len(set(sids)) and all(re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids)
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}


@pytest.mark.parametrize("path", POLICIES, ids=lambda path: path.name)
def test_every_action_exists_and_none_is_a_wildcard(path):
    for statement in _statements(path):
        for action in _actions(statement):
            prefix, _, name = action.partition(":")
            assert "*" not in action
            if action in IAM_ONLY_ACTIONS:
                assert IAM_ONLY_ACTIONS[action] in _operations(prefix), action
                continue
            assert action in OPENSEARCH_HTTP_ACTIONS | ECS_EXEC_ACTIONS or name in _operations(prefix), action


@pytest.mark.parametrize("path", POLICIES, ids=lambda path: path.name)
def test_only_ecs_exec_and_kcl_metrics_are_granted_on_every_resource_each_in_its_own_policy(path):
    for statement in _statements(path):
        resources = [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
        if resources == ["*"] and _actions(statement) == ["cloudwatch:PutMetricData"]:
            # it takes no resource: the KCL's metrics are held to their namespace instead
            assert path.name == "policy.kcl.json" and "cloudwatch:namespace" in statement["Condition"]["StringEquals"]
        elif resources == ["*"]:
            assert path.name == "policy.ecs-exec.json" and set(_actions(statement)) == ECS_EXEC_ACTIONS
        else:
            assert all(ARN.match(resource) for resource in resources), resources


def test_resources_are_the_configured_tables_and_region():
    config = manifest("ConfigMap")["data"]
    by_sid = {statement["Sid"]: statement for statement in _statements(POLICY)}
    table = f"arn:aws:dynamodb:{config['AWS_REGION']}:123456789012:table/{config['CDC_TABLE_NAME']}"
    assert by_sid["DescribeSourceTable"]["Resource"] == table
    assert by_sid["ReadSourceStream"]["Resource"] == f"{table}/stream/*"
    lease_table = f"arn:aws:dynamodb:{config['AWS_REGION']}:123456789012:table/{config['CDC_LEASE_TABLE']}"
    assert by_sid["LeaseTableReadWrite"]["Resource"] == lease_table
    # the index alone (and its paths: _bulk, _mapping, _search), never the domain's other indices
    index = config.get("CDC_OPENSEARCH_INDEX") or config["CDC_TABLE_NAME"].lower()
    (domain,) = {
        "/".join(ARN.match(resource)["resource"].split("/")[:2]) for resource in by_sid["WriteTheIndex"]["Resource"]
    }
    assert [ARN.match(resource)["resource"] for resource in by_sid["WriteTheIndex"]["Resource"]] == [
        f"{domain}/{index}",
        f"{domain}/{index}/*",
    ]
    assert ARN.match(by_sid["WriteTheIndex"]["Resource"][0])["region"] == config["AWS_REGION"]


def test_the_worker_can_do_what_the_code_calls():
    granted = {action for statement in _statements(POLICY) for action in _actions(statement)}
    assert granted >= {
        "dynamodb:DescribeTable",
        "dynamodb:DescribeStream",
        "dynamodb:GetShardIterator",
        "dynamodb:GetRecords",
        "dynamodb:CreateTable",
        "dynamodb:Scan",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "es:ESHttpPost",
        "es:ESHttpPut",
        "es:ESHttpGet",
        "es:ESHttpHead",
    }
    # nothing it never calls: deletes of documents go through _bulk, indices are never deleted
    assert not granted & {"es:ESHttpDelete", "es:ESHttpPatch", "dynamodb:ListStreams", "dynamodb:BatchGetItem"}


def test_kms_decrypt_only_through_dynamodb():
    (statement,) = [s for s in _statements(POLICY) if "kms:Decrypt" in _actions(s)]
    region = manifest("ConfigMap")["data"]["AWS_REGION"]
    assert statement["Condition"] == {"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}}


def test_the_worker_may_write_dead_letters_exactly_where_the_manifests_send_them():
    # GIVEN the S3 destination the manifests configure WHEN the policy is read
    destination = manifest("ConfigMap")["data"]["CDC_DEAD_LETTER_DESTINATION"]
    bucket, _, prefix = destination.removeprefix("s3://").partition("/")
    by_sid = {statement["Sid"]: statement for statement in _statements(POLICY)}
    # THEN it grants PutObject under that prefix only, and nothing else of S3 or SQS
    assert by_sid["WriteDeadLettersS3"]["Resource"] == f"arn:aws:s3:::{bucket}/{prefix}/*"
    granted = {action for statement in _statements(POLICY) for action in _actions(statement)}
    assert {action for action in granted if action.startswith(("s3:", "sqs:"))} == {"s3:PutObject"}


@pytest.mark.parametrize("path", TRUST_POLICIES, ids=lambda path: path.name)
def test_each_trust_policy_lets_exactly_one_kind_of_workload_assume_the_role(path):
    (statement,) = _statements(path)
    assert statement["Effect"] == "Allow" and set(statement) == {"Sid", "Effect", "Principal", "Action", "Condition"}
    principal = statement["Principal"]
    if "Federated" in principal:  # IRSA: the workers' service account of the manifests, and no other
        assert _actions(statement) == ["sts:AssumeRoleWithWebIdentity"]
        conditions = statement["Condition"]["StringEquals"]
        subject = next(value for key, value in conditions.items() if key.endswith(":sub"))
        assert subject.rsplit(":", 1)[1] == manifest("ServiceAccount")["metadata"]["name"]
        assert next(value for key, value in conditions.items() if key.endswith(":aud")) == "sts.amazonaws.com"
    else:  # a service on behalf of tasks or pods of this account only
        assert principal["Service"] in {"ecs-tasks.amazonaws.com", "pods.eks.amazonaws.com"}
        assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
