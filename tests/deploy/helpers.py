"""Loaders and small parsers for the deploy/ artefacts, shared by the tests in this folder."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUSTOMIZE_BASE = KUBERNETES / "base"
OVERLAYS = sorted(path.parent for path in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
CHART = DEPLOY / "helm" / "cdc-consumer"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yaml"
OPERATIONS = REPO / "docs" / "operations.md"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
# CRDs kubernetes-validate has no schema for, checked against their projects' own (schemas/README.md).
CRD_SCHEMAS = {
    "PodMonitor": SCHEMAS / "monitoring.coreos.com_podmonitors.yaml",
    "PrometheusRule": SCHEMAS / "monitoring.coreos.com_prometheusrules.yaml",
    # KEDA's own CRD, taken from its Go module by `make deploy-tools`
    "ScaledObject": REPO / ".tools" / "crds" / "keda.sh_scaledobjects.yaml",
}
# The oldest Kubernetes the manifests and the chart claim to support, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.29", latest_version()]


TOOLS = REPO / ".tools" / "bin"  # what `make deploy-tools` builds (helm, kustomize)


def tool(name: str) -> str:
    """Path of a command-line validator: the virtualenv's own first, then .tools/bin, then PATH. Never skips."""
    found = (
        shutil.which(name, path=str(Path(sys.executable).parent))
        or shutil.which(name, path=str(TOOLS))
        or shutil.which(name)
    )
    if found is None:
        hint = (
            "run `make deploy-tools`" if name in ("promtool", "helm", "kustomize") else "run `pip install -e '.[test]'`"
        )
        pytest.fail(f"{name} is not installed: {hint}")
    return found


def run(*command: str | Path, cwd: Path = REPO) -> str:
    """Run a validator; fail the test with its output unless it exits 0."""
    done = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(map(str, command))} exited {done.returncode}:\n{output}"
    return output


@cache
def yaml_documents(path: Path) -> tuple[dict[str, Any], ...]:
    return tuple(doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def yaml_file(path: Path) -> dict[str, Any]:
    (document,) = yaml_documents(path)
    return document


def json_file(path: Path) -> Any:
    return json.loads(path.read_text())


@cache
def kustomized(directory: Path) -> tuple[dict[str, Any], ...]:
    """The objects the real kustomize builds from ``directory`` (what `kubectl apply -k` would apply)."""
    output = run(tool("kustomize"), "build", directory)
    return tuple(document for document in yaml.safe_load_all(output) if document)


def kubernetes_manifests() -> list[tuple[str, dict[str, Any]]]:
    """("Kind/name", object) of every object the kustomize base builds."""
    return [(f"{doc['kind']}/{doc['metadata']['name']}", doc) for doc in kustomized(KUSTOMIZE_BASE)]


def manifest(kind: str, objects: tuple[dict[str, Any], ...] | None = None) -> dict[str, Any]:
    (found,) = [doc for doc in (kustomized(KUSTOMIZE_BASE) if objects is None else objects) if doc["kind"] == kind]
    return found


def consumer_container() -> dict[str, Any]:
    (container,) = manifest("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def ecs_container() -> dict[str, Any]:
    (container,) = json_file(DEPLOY / "ecs" / "task-definition.json")["containerDefinitions"]
    return container


def ecs_environment() -> dict[str, str]:
    return {item["name"]: item["value"] for item in ecs_container()["environment"]}


def compose_service(name: str) -> dict[str, Any]:
    return yaml_file(DEPLOY / "compose.yaml")["services"][name]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml_file(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard_panels() -> list[dict[str, Any]]:
    return json_file(DEPLOY / "grafana" / "dashboard.json")["panels"]


# Grafana template variables in panel queries, replaced by plain values so the PromQL parses.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*", "$job": "cdc-consumer"}


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title / refId, PromQL with the Grafana variables substituted) of every panel query."""
    found = []
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((f"{panel['title']} / {target['refId']}", expr))
    return found


def dockerfile_instructions(path: Path = DEPLOY / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].strip() + " "
            continue
        keyword, _, arguments = (current + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    return instructions


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage (the image that runs)."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def markdown_anchors(path: Path) -> set[str]:
    """The anchors GitHub derives from a Markdown file's headings (code blocks skipped)."""
    anchors, in_code = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = re.match(r"#{1,6}\s+(.+)", line)
        if heading and not in_code:
            anchors.add(re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def strict_crd_schema(schema: Any) -> Any:
    """Reject unknown fields wherever a CRD lists its fields (what `kubectl --validate=strict` does)."""
    if isinstance(schema, dict):
        schema = {key: strict_crd_schema(value) for key, value in schema.items()}
        lists_fields = "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields")
        if lists_fields and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict_crd_schema(item) for item in schema]
    return schema


def validate_strictly(document: dict[str, Any]) -> None:
    """A Kubernetes object as `kubectl --validate=strict` would: core kinds by kubernetes-validate for
    each supported version, PodMonitor and PrometheusRule by their CRDs' schemas."""
    if document["kind"] in CRD_SCHEMAS:
        if not CRD_SCHEMAS[document["kind"]].is_file():
            pytest.fail(f"{CRD_SCHEMAS[document['kind']]} is missing: run `make deploy-tools`")
        crd = yaml_file(CRD_SCHEMAS[document["kind"]])
        (served,) = [v for v in crd["spec"]["versions"] if v["name"] == document["apiVersion"].split("/")[1]]
        jsonschema.Draft7Validator(strict_crd_schema(served["schema"]["openAPIV3Schema"])).validate(document)
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


def helm(*args: str, values: dict[str, Any] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real helm on the chart with ``values`` (a values file on stdin)."""
    command = [tool("helm"), *args, str(CHART)]
    if values is not None:
        command += ["--values", "-"]
    done = subprocess.run(
        command, input=yaml.safe_dump(values or {}), capture_output=True, text=True, timeout=120, check=False
    )
    if check:
        assert done.returncode == 0, f"helm {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done


def rendered(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's objects for release ``orders`` in namespace ``cdc``."""
    output = helm("template", "orders", "--namespace", "cdc", values=values).stdout
    return [document for document in yaml.safe_load_all(output) if document]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [document for document in objects if document["kind"] == kind]
