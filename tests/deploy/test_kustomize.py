"""deploy/kubernetes/overlays, built by the real kustomize: the Helm chart's options (a namespace, an
image tag, merged settings, autoscaling by KEDA or an HPA, the operator commands, the KCL mode) on
the kustomize base, every object valid in strict mode and wired to the others by name."""

from __future__ import annotations

from typing import Any

import pytest

from consumer import __version__
from tests.deploy.helpers import (
    DEPLOY,
    KUBERNETES,
    OVERLAYS,
    json_file,
    kustomized,
    manifest,
    validate_strictly,
    yaml_file,
)

OVERLAY = {path.name: path for path in OVERLAYS}
# Kinds that live in no namespace (none of ours), so every object must land in the overlay's.
CLUSTER_SCOPED: set[str] = set()


def objects(overlay: str) -> tuple[dict[str, Any], ...]:
    return kustomized(OVERLAY[overlay])


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [document for document in objects(overlay) if document["kind"] == kind]


def containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document["spec"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"] if document["kind"] == "CronJob" else spec["template"]["spec"]
    return pod["containers"]


def test_there_is_an_overlay_for_each_way_the_chart_is_run():
    assert set(OVERLAY) == {"production", "staging", "kcl"}


@pytest.mark.parametrize("overlay", sorted(OVERLAY))
def test_every_object_is_valid_in_strict_mode_and_in_the_overlays_namespace(overlay):
    namespace = next(
        line.split(":", 1)[1].strip()
        for line in (OVERLAY[overlay] / "kustomization.yaml").read_text().splitlines()
        if line.startswith("namespace:")
    )
    for document in objects(overlay):
        validate_strictly(document)
        if document["kind"] not in CLUSTER_SCOPED:
            assert document["metadata"]["namespace"] == namespace, document["metadata"]["name"]


@pytest.mark.parametrize("overlay", sorted(OVERLAY))
def test_every_pod_reads_the_merged_settings_under_their_hashed_name_and_runs_this_version(overlay):
    (settings,) = [
        cm
        for cm in of_kind(overlay, "ConfigMap")
        if cm["metadata"]["name"].startswith("cdc-consumer-") and "daemon.properties" not in cm["data"]
    ]
    # merged: the base's settings with the overlay's literals over them
    kustomization = yaml_file(OVERLAY[overlay] / "kustomization.yaml")
    literals = [item for generator in kustomization.get("configMapGenerator", []) for item in generator["literals"]]
    assert settings["data"] == {**manifest("ConfigMap")["data"], **dict(item.split("=", 1) for item in literals)}
    for document in of_kind(overlay, "Deployment") + of_kind(overlay, "CronJob"):
        for container in containers(document):
            assert container["envFrom"] == [{"configMapRef": {"name": settings["metadata"]["name"]}}]
            assert container["image"].endswith(f":{__version__}")


def test_production_scales_on_lag_with_keda_in_its_namespace_and_runs_the_operator_commands():
    (scaler,) = of_kind("production", "ScaledObject")
    (deployment,) = of_kind("production", "Deployment")
    assert scaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (trigger,) = scaler["spec"]["triggers"]
    assert "max(cdc_worker_iterator_age_max_seconds{" in trigger["metadata"]["query"]
    assert f'namespace="{deployment["metadata"]["namespace"]}"' in trigger["metadata"]["query"]
    assert scaler["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["policies"] == [
        {"type": "Pods", "value": 1, "periodSeconds": 120}
    ]
    # the operator commands: audit on a schedule, backfill and redrive created from their suspended CronJobs
    jobs = {job["metadata"]["name"]: job for job in of_kind("production", "CronJob")}
    assert {name: job["spec"]["suspend"] for name, job in jobs.items()} == {
        "cdc-consumer-audit": False,
        "cdc-consumer-backfill": True,
        "cdc-consumer-redrive": True,
    }
    accounts = {account["metadata"]["name"] for account in of_kind("production", "ServiceAccount")}
    for job in jobs.values():
        pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "cdc-consumer-operator" in accounts
        assert pod["restartPolicy"] == "Never"


def test_staging_scales_with_an_hpa_and_reads_the_password_from_a_secret():
    (autoscaler,) = of_kind("staging", "HorizontalPodAutoscaler")
    (deployment,) = of_kind("staging", "Deployment")
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "cdc-consumer",
    }
    assert deployment["spec"]["replicas"] == 1 <= autoscaler["spec"]["minReplicas"]
    (container,) = containers(deployment)
    env = {item["name"]: item for item in container["env"]}
    assert env["CDC_OPENSEARCH_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "cdc-consumer-opensearch"
    (settings,) = of_kind("staging", "ConfigMap")
    assert settings["data"]["CDC_OPENSEARCH_AUTH"] == "basic" and "PASSWORD" not in str(settings["data"])


def _properties(text: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_the_kcl_overlay_runs_the_daemon_on_its_properties_with_the_lease_table_named_once():
    (deployment,) = of_kind("kcl", "Deployment")
    (container,) = containers(deployment)
    pod = deployment["spec"]["template"]["spec"]
    assert container["image"].endswith(f"dynamodb-opensearch-consumer-kcl:{__version__}")
    assert container["args"] == ["/etc/kcl/daemon.properties"]
    assert not {"ports", "startupProbe", "livenessProbe", "readinessProbe"} & set(container)  # no /metrics
    assert not of_kind("kcl", "PodMonitor") and not of_kind("kcl", "PrometheusRule")
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (daemon,) = [cm for cm in of_kind("kcl", "ConfigMap") if "daemon.properties" in cm["data"]]
    assert volumes["kcl"]["configMap"]["name"] == daemon["metadata"]["name"] != "cdc-consumer-kcl"  # hashed
    properties = _properties(daemon["data"]["daemon.properties"])
    # the lease table the KCL policy grants, never named a second time in the children's settings
    granted = json_file(DEPLOY / "iam" / "policy.kcl.json")["Statement"]
    (tables,) = [statement["Resource"] for statement in granted if statement["Sid"] == "KclTables"]
    assert f"arn:aws:dynamodb:eu-west-1:123456789012:table/{properties['applicationName']}" in tables
    settings = [cm for cm in of_kind("kcl", "ConfigMap") if cm is not daemon]
    assert all("CDC_KCL_LEASE_TABLE" not in cm["data"] for cm in settings)
    assert properties["metricsLevel"] != "NONE"
    assert int(properties["shutdownGraceMillis"]) < pod["terminationGracePeriodSeconds"] * 1000
    # the daemon's file is the image's, with this deployment's stream and table
    shipped = _properties((DEPLOY / "kcl" / "streams-daemon.properties").read_text())
    assert set(properties) <= set(shipped) | {"shutdownGraceMillis"}


def test_every_component_is_used_by_an_overlay():
    components = {path.parent.name for path in (KUBERNETES / "components").glob("*/kustomization.yaml")}
    used = {
        line.strip().removeprefix("- ../../components/")
        for overlay in OVERLAY.values()
        for line in (overlay / "kustomization.yaml").read_text().splitlines()
        if "../../components/" in line
    }
    assert components == used == {"keda", "hpa", "jobs", "kcl"}
