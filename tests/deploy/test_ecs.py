"""deploy/ecs/task-definition.json: a valid RegisterTaskDefinition request for Fargate, and its entry
point names the worker after the task."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import ParamValidator

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


def _run_entry_point(tmp_path: Path, env: dict[str, str]) -> str:
    """Run the task's entry point with python = this interpreter and a `consumer` that prints its env."""
    fake = tmp_path / "consumer"
    fake.write_text('#!/bin/sh\necho "worker=$CDC_WORKER_ID args=$*"\n')
    fake.chmod(0o755)
    interpreter, *arguments = ecs_container()["entryPoint"]
    assert interpreter == "python"
    done = subprocess.run(
        [sys.executable, *arguments], env={"PATH": str(tmp_path), **env}, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def task_metadata_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TaskMetadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v4"
    server.shutdown()
    server.server_close()


def test_entry_point_names_the_worker_after_the_task(tmp_path, task_metadata_endpoint):
    output = _run_entry_point(tmp_path, {"ECS_CONTAINER_METADATA_URI_V4": task_metadata_endpoint})
    assert output == "worker=0123456789abcdef0123456789abcdef args=run"


def test_entry_point_keeps_an_explicit_worker_id(tmp_path, task_metadata_endpoint):
    env = {"ECS_CONTAINER_METADATA_URI_V4": task_metadata_endpoint, "CDC_WORKER_ID": "chosen"}
    assert _run_entry_point(tmp_path, env) == "worker=chosen args=run"
