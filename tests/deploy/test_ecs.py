"""deploy/ecs: task-definition.json, a valid RegisterTaskDefinition request for Fargate that runs the
image's entry point, is named after its task, is discoverable by Prometheus and reachable by ECS Exec;
task-definition.kcl.json, the KCL daemon image with its properties set on the command line; the
service, and the operator commands as run-task requests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.session
import pytest
from botocore.validate import ParamValidator

from consumer.commands.cli import build_parser
from consumer.config import load_settings
from tests.deploy.helpers import DEPLOY, ecs_container, json_file

TASK_DEFINITION = DEPLOY / "ecs" / "task-definition.json"
TASK_ARN = "arn:aws:ecs:eu-west-1:123456789012:task/cdc/0123456789abcdef0123456789abcdef"


def test_is_a_valid_register_task_definition_request():
    operation = botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition")
    report = ParamValidator().validate(json_file(TASK_DEFINITION), operation.input_shape)
    assert not report.has_errors(), report.generate_report()


def test_runs_on_fargate():
    task = json_file(TASK_DEFINITION)
    assert task["networkMode"] == "awsvpc" and task["requiresCompatibilities"] == ["FARGATE"]
    assert task["cpu"] and task["memory"]
    assert task["taskRoleArn"].startswith("arn:aws:iam::") and task["executionRoleArn"].startswith("arn:aws:iam::")


def test_container_is_locked_down_and_logs_to_cloudwatch():
    container = ecs_container()
    assert container["readonlyRootFilesystem"] is True and container["user"] == "10001"
    assert container["linuxParameters"]["capabilities"]["drop"] == ["ALL"]
    assert container["logConfiguration"]["logDriver"] == "awslogs"


def test_writable_paths_are_task_volumes():
    volumes = {volume["name"] for volume in json_file(TASK_DEFINITION)["volumes"]}
    mounts = {mount["containerPath"]: mount["sourceVolume"] for mount in ecs_container()["mountPoints"]}
    assert set(mounts) == {"/tmp"} and set(mounts.values()) <= volumes  # dead letters go to S3, not the task


class _TaskMetadata(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.dumps({"TaskARN": TASK_ARN}).encode() if self.path == "/v4/task" else b"{}"
        self.send_response(200 if self.path == "/v4/task" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def task_metadata_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TaskMetadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v4"
    server.shutdown()
    server.server_close()


def test_the_image_entry_point_runs_and_the_configuration_names_the_worker_after_the_task(task_metadata_endpoint):
    # the image's own entry point (consumer) runs the worker: no shell or inline script in between
    container = ecs_container()
    assert "entryPoint" not in container and container["command"] == ["run"]
    # consumer.config reads the task id from the task metadata endpoint ECS gives every container
    env = {"CDC_TABLE_NAME": "orders", "CDC_OPENSEARCH_URL": "https://search.example"}
    settings, _ = load_settings({**env, "ECS_CONTAINER_METADATA_URI_V4": task_metadata_endpoint})
    assert settings.worker_id == "0123456789abcdef0123456789abcdef"
    chosen, _ = load_settings(
        {**env, "CDC_WORKER_ID": "chosen", "ECS_CONTAINER_METADATA_URI_V4": task_metadata_endpoint}
    )
    assert chosen.worker_id == "chosen"


def test_metrics_are_discoverable_and_operator_commands_can_exec_in():
    labels = ecs_container()["dockerLabels"]
    assert labels["ECS_PROMETHEUS_EXPORTER_PORT"] == "9400" and labels["ECS_PROMETHEUS_METRICS_PATH"] == "/metrics"
    actions = {
        action
        for statement in json_file(DEPLOY / "iam" / "policy.ecs-exec.json")["Statement"]
        for action in statement["Action"]
        if action.startswith("ssmmessages:")
    }
    assert actions == {
        f"ssmmessages:{verb}"
        for verb in ("CreateControlChannel", "CreateDataChannel", "OpenControlChannel", "OpenDataChannel")
    }


SERVICE = DEPLOY / "ecs" / "service.json"
RUN_TASKS = sorted((DEPLOY / "ecs").glob("run-task.*.json"))


def _valid(operation_name: str, request: dict) -> None:
    operation = botocore.session.get_session().get_service_model("ecs").operation_model(operation_name)
    report = ParamValidator().validate(request, operation.input_shape)
    assert not report.has_errors(), report.generate_report()


def test_the_service_rolls_back_a_deploy_that_does_not_become_healthy_and_never_shrinks_the_pool():
    service = json_file(SERVICE)
    _valid("CreateService", service)
    assert service["taskDefinition"] == json_file(TASK_DEFINITION)["family"]
    deployment = service["deploymentConfiguration"]
    assert deployment["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert (deployment["minimumHealthyPercent"], deployment["maximumPercent"]) == (100, 200)
    assert service["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"


@pytest.mark.parametrize("path", RUN_TASKS, ids=lambda path: path.name)
def test_each_job_runs_an_operator_command_with_the_operator_role(path):
    request = json_file(path)
    _valid("RunTask", request)
    (override,) = request["overrides"]["containerOverrides"]
    assert override["name"] == ecs_container()["name"]
    assert request["overrides"]["taskRoleArn"].endswith(":role/cdc-consumer-operator")
    command = override["command"]
    assert command[0] == path.name.split(".")[1] in ("backfill", "audit", "redrive")
    parsed = build_parser().parse_args(command)  # a command line the image's entry point (consumer) accepts
    assert parsed.command == command[0]
    assert request["networkConfiguration"] == json_file(SERVICE)["networkConfiguration"]


def test_the_log_group_is_created_by_the_execution_role_it_names():
    options = ecs_container()["logConfiguration"]["options"]
    assert options["awslogs-create-group"] == "true"
    (statement,) = json_file(DEPLOY / "iam" / "policy.ecs-execution.json")["Statement"]
    assert statement["Action"] == ["logs:CreateLogGroup"]
    assert statement["Resource"].endswith(f":log-group:{options['awslogs-group']}:*")


KCL_TASK_DEFINITION = DEPLOY / "ecs" / "task-definition.kcl.json"


def _kcl_properties() -> dict[str, str]:
    """The daemon's properties as the launcher sees them: the image's file, then the command's key=value."""
    properties = dict(
        line.split(" = ", 1)
        for line in (DEPLOY / "kcl" / "streams-daemon.properties").read_text().splitlines()
        if line and not line.startswith("#")
    )
    (container,) = json_file(KCL_TASK_DEFINITION)["containerDefinitions"]
    path, *overrides = container["command"]
    assert path == "/etc/kcl/daemon.properties"  # where the image (deploy/Dockerfile, target kcl) puts the file
    return {**properties, **dict(override.split("=", 1) for override in overrides)}


def test_the_kcl_task_names_its_stream_and_lease_table_on_the_command_line_and_stops_within_its_grace():
    task = json_file(KCL_TASK_DEFINITION)
    _valid("RegisterTaskDefinition", task)
    (container,) = task["containerDefinitions"]
    properties = _kcl_properties()
    assert "entryPoint" not in container and container["image"].endswith("-kcl:0.2.0")
    assert properties["streamName"].startswith("arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/")
    assert properties["metricsLevel"] != "NONE" and properties["regionName"] == "eu-west-1"
    # the lease table is named once (the launcher tells the children), and it is the one the KCL policy grants
    environment = {item["name"]: item["value"] for item in container["environment"]}
    assert not {"CDC_KCL_LEASE_TABLE", "CDC_LEASE_TABLE"} & set(environment)
    granted = json_file(DEPLOY / "iam" / "policy.kcl.json")["Statement"]
    (kcl_tables,) = [statement["Resource"] for statement in granted if statement["Sid"] == "KclTables"]
    assert f"arn:aws:dynamodb:eu-west-1:123456789012:table/{properties['applicationName']}" in kcl_tables
    # SIGTERM: the daemon's graceful shutdown ends before ECS sends SIGKILL
    assert int(properties["shutdownGraceMillis"]) < container["stopTimeout"] * 1000
    assert container["readonlyRootFilesystem"] is True and container["user"] == "10001"
    assert task["taskRoleArn"].endswith(":role/cdc-consumer-kcl")
    service = json_file(DEPLOY / "ecs" / "service.kcl.json")
    _valid("CreateService", service)
    assert service["taskDefinition"] == task["family"]
    assert service["deploymentConfiguration"] == json_file(SERVICE)["deploymentConfiguration"]
    # the processor's settings are the native workers' (one source, deploy/ecs/task-definition.json)
    assert environment.items() <= {item["name"]: item["value"] for item in ecs_container()["environment"]}.items()
