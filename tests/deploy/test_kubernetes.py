"""deploy/kubernetes/base, as the real kustomize builds it: every object is schema-valid and says what
the operations guide promises (the overlays: test_kustomize.py).

Core kinds (Deployment, ConfigMap, ServiceAccount, PodDisruptionBudget) are validated by
kubernetes-validate in strict mode (unknown fields rejected). PodMonitor and PrometheusRule are
CRDs that kubernetes-validate has no schema for: they are validated against the Prometheus
Operator's own CRD schemas, vendored in tests/deploy/schemas (see its README), made strict the
same way; beyond apiVersion/kind/required fields, that checks every field name and type.
"""

from __future__ import annotations

import copy
import shutil

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from tests.deploy.helpers import (
    ALERTS,
    CRD_SCHEMAS,
    KUBERNETES_VERSIONS,
    KUSTOMIZE_BASE,
    consumer_container,
    kubernetes_manifests,
    kustomized,
    manifest,
    strict_crd_schema,
    yaml_file,
)

CORE = [(name, doc) for name, doc in kubernetes_manifests() if doc["kind"] not in CRD_SCHEMAS]
CUSTOM = [(name, doc) for name, doc in kubernetes_manifests() if doc["kind"] in CRD_SCHEMAS]


def _ids(items: list) -> list[str]:
    return [name for name, _ in items]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("name", "resource"), CORE, ids=_ids(CORE))
def test_core_manifest_is_valid_in_strict_mode(name, resource, version):
    # SchemaNotFoundError (an unknown kind or apiVersion) fails the test too: no silent pass.
    kubernetes_validate.validate(resource, version, strict=True)


@pytest.mark.parametrize(("name", "resource"), CUSTOM, ids=_ids(CUSTOM))
def test_custom_resource_matches_its_crd_schema(name, resource):
    crd = yaml_file(CRD_SCHEMAS[resource["kind"]])
    group, version = resource["apiVersion"].split("/")
    assert group == crd["spec"]["group"]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    jsonschema.Draft7Validator(strict_crd_schema(served["schema"]["openAPIV3Schema"])).validate(resource)
    assert resource["metadata"]["name"]


def test_both_validators_reject_a_misspelled_field():
    # GIVEN a Deployment and a PodMonitor, each with one field name misspelled
    deployment = copy.deepcopy(manifest("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    monitor = copy.deepcopy(manifest("PodMonitor"))
    monitor["spec"]["podMetricEndpoints"] = monitor["spec"].pop("podMetricsEndpoints")
    # THEN both checks above refuse them
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, latest_version(), strict=True)
    with pytest.raises(jsonschema.ValidationError):
        test_custom_resource_matches_its_crd_schema("PodMonitor/cdc-consumer", monitor)


def test_kustomization_lists_every_manifest_and_generates_the_settings():
    kustomization = yaml_file(KUSTOMIZE_BASE / "kustomization.yaml")
    on_disk = {path.name for path in KUSTOMIZE_BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(on_disk)
    (generated,) = kustomization["configMapGenerator"]
    assert generated["envs"] == ["config.env"] and (KUSTOMIZE_BASE / "config.env").is_file()


def test_an_edit_of_the_settings_rolls_the_pods(tmp_path):
    # GIVEN a copy of the base with one setting changed
    copy_of_base = tmp_path / "base"
    shutil.copytree(KUSTOMIZE_BASE, copy_of_base)
    settings = copy_of_base / "config.env"
    settings.write_text(settings.read_text().replace("CDC_LOG_LEVEL=INFO", "CDC_LOG_LEVEL=DEBUG"))
    # THEN the ConfigMap gets another name, and the pods' template names it: a new ReplicaSet rolls out
    edited = kustomized(copy_of_base)
    name = manifest("ConfigMap", edited)["metadata"]["name"]
    assert name != manifest("ConfigMap")["metadata"]["name"] and name.startswith("cdc-consumer-")
    (container,) = manifest("Deployment", edited)["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": name}}]


def test_prometheus_rule_spec_is_the_rules_file():
    # the file, not kustomize's output: kustomize re-folds block scalars (blank lines in the PromQL)
    assert yaml_file(KUSTOMIZE_BASE / "prometheusrule.yaml")["spec"] == yaml_file(ALERTS), (
        "deploy/kubernetes/base/prometheusrule.yaml's spec must be deploy/prometheus/alerts.yaml verbatim"
    )


def test_every_manifest_carries_the_app_label():
    for name, resource in kubernetes_manifests():
        assert resource["metadata"]["labels"]["app.kubernetes.io/name"] == "cdc-consumer", name


def test_deployment_runs_three_locked_down_workers():
    deployment = manifest("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = consumer_container()
    assert deployment["spec"]["replicas"] == 3
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert set(container["resources"]) == {"requests", "limits"}


def test_writable_paths_are_empty_dirs():
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in consumer_container()["volumeMounts"]}
    assert set(mounts) == {"/tmp"}  # dead letters go to S3, never to pod storage
    assert all("emptyDir" in volumes[name] for name in mounts.values())


def test_worker_id_is_the_pod_name():
    env = {item["name"]: item for item in consumer_container()["env"]}
    assert env["CDC_WORKER_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    (source,) = consumer_container()["envFrom"]
    assert source == {"configMapRef": {"name": manifest("ConfigMap")["metadata"]["name"]}}


def test_production_config_signs_opensearch_requests():
    assert manifest("ConfigMap")["data"]["CDC_OPENSEARCH_AUTH"] == "sigv4"


def test_disruption_budget_and_identity_select_the_workers():
    deployment = manifest("Deployment")
    selector = deployment["spec"]["selector"]
    budget = manifest("PodDisruptionBudget")["spec"]
    # an unready pod holds no useful leases: a drain may evict it rather than wait on it
    assert budget == {"maxUnavailable": 1, "selector": selector, "unhealthyPodEvictionPolicy": "AlwaysAllow"}
    account = manifest("ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_pods_spread_over_zones_and_nodes_and_request_their_scratch_space():
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    keys = {constraint["topologyKey"] for constraint in pod["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    resources = consumer_container()["resources"]
    assert "ephemeral-storage" in resources["requests"] and "ephemeral-storage" in resources["limits"]


def test_pod_monitor_scrapes_the_metrics_port():
    monitor = manifest("PodMonitor")["spec"]
    (endpoint,) = monitor["podMetricsEndpoints"]
    ports = {port["name"] for port in consumer_container()["ports"]}
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    assert monitor["selector"] == manifest("Deployment")["spec"]["selector"]
    # job="cdc-consumer" in the alert rules comes from this pod label.
    assert monitor["jobLabel"] == "app.kubernetes.io/name"


def test_only_the_scrapers_reach_the_workers_and_the_workers_reach_only_dns_and_https():
    policy = manifest("NetworkPolicy")["spec"]
    deployment = manifest("Deployment")
    assert policy["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    # ingress: the metrics and probe port, from the monitoring namespace, nothing else
    (ingress,) = policy["ingress"]
    assert [port["port"] for port in ingress["ports"]] == ["metrics"]
    assert [port["name"] for port in consumer_container()["ports"]] == ["metrics"]
    assert all("namespaceSelector" in peer and "podSelector" not in peer for peer in ingress["from"])
    # egress: DNS and HTTPS only
    allowed = {(port["port"], port["protocol"]) for rule in policy["egress"] for port in rule["ports"]}
    assert allowed == {(53, "UDP"), (53, "TCP"), (443, "TCP")}
