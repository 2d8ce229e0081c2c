"""deploy/helm/cdc-consumer: `helm lint` and `helm template` (a real helm, built by `make deploy-tools`)
for several value sets, every rendered object through the same strict validation as deploy/kubernetes
(kubernetes-validate for core kinds, the vendored CRD schemas for PodMonitor and PrometheusRule), and
what the chart promises: the ConfigMap's checksum rolls the pods, the lease table is named once in
the KCL mode, the alert rules are deploy/prometheus/alerts.yaml, bad values are refused by name.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.helpers import ALERTS, CHART, helm, of_kind, rendered, validate_strictly, yaml_file

STREAM = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
# At least five value sets, each a way teams run it: the defaults; the KCL daemon; basic auth with
# KEDA autoscaling and the operator Jobs (audit as a CronJob); IRSA with routes and no Prometheus
# Operator; generations on a pinned stream with EKS Pod Identity, an HPA and no network policy.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "kcl": {"mode": "kcl", "source": {"streamArn": STREAM}, "leaseTable": "orders-kcl"},
    "basic-auth-autoscaling-jobs": {
        "opensearch": {"url": "https://search.internal:9200", "auth": "basic", "basicAuthSecret": "search-login"},
        "autoscaling": {"enabled": True, "kind": "keda", "minReplicas": 2, "maxReplicas": 6},
        "jobs": {
            "backfill": {"enabled": True},
            "audit": {"enabled": True, "schedule": "0 3 * * *"},
            "redrive": {"enabled": True},
        },
    },
    "irsa-routes-no-operator": {
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/cdc"}},
        "config": {"CDC_ROUTES": "/etc/cdc/routes.yaml", "CDC_DROP_FIELDS": "secret"},
        "metrics": {"podMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
        "opensearch": {"index": ""},
    },
    "generations-pod-identity": {
        "source": {"table": "", "streamArn": STREAM},
        "config": {"CDC_INDEX_GENERATIONS": "on", "CDC_REINDEX": "auto"},
        "networkPolicy": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "autoscaling": {"enabled": True, "kind": "hpa", "maxReplicas": 12},
    },
}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_chart_lints_and_every_rendered_object_is_valid_in_strict_mode(name):
    values = VALUE_SETS[name]
    helm("lint", "--strict", values=values)
    objects = rendered(values)
    assert of_kind(objects, "Deployment") and of_kind(objects, "ConfigMap")
    for document in objects:
        validate_strictly(document)


def test_the_value_sets_render_what_each_promises():
    kinds = {name: sorted({document["kind"] for document in rendered(values)}) for name, values in VALUE_SETS.items()}
    assert "ScaledObject" in kinds["basic-auth-autoscaling-jobs"]
    assert "HorizontalPodAutoscaler" in kinds["generations-pod-identity"]
    assert not {"ScaledObject", "HorizontalPodAutoscaler"} & set(kinds["defaults"])
    assert {"Job", "CronJob"} <= set(kinds["basic-auth-autoscaling-jobs"])
    assert not {"PodMonitor", "PrometheusRule"} & set(kinds["irsa-routes-no-operator"])
    assert not {"NetworkPolicy", "PodDisruptionBudget"} & set(kinds["generations-pod-identity"])
    jobs = rendered(VALUE_SETS["basic-auth-autoscaling-jobs"])
    accounts = {document["metadata"]["name"] for document in of_kind(jobs, "ServiceAccount")}
    (backfill,) = of_kind(jobs, "Job")[:1]
    assert backfill["spec"]["template"]["spec"]["serviceAccountName"] == "orders-cdc-consumer-operator" in accounts
    (deployment,) = of_kind(jobs, "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    env = {item["name"]: item for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CDC_OPENSEARCH_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "search-login", "key": "password"}


def test_a_changed_configuration_changes_the_pods_checksum_so_an_upgrade_rolls_them():
    def checksum(values: dict[str, Any]) -> str:
        (deployment,) = of_kind(rendered(values), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"config": {"CDC_DROP_FIELDS": "secret"}})


def test_the_kcl_mode_names_the_lease_table_once_and_runs_the_daemon_image():
    objects = rendered(VALUE_SETS["kcl"])
    settings = {document["metadata"]["name"]: document["data"] for document in of_kind(objects, "ConfigMap")}
    properties = dict(
        line.split(" = ", 1)
        for line in settings["orders-cdc-consumer-kcl"]["daemon.properties"].splitlines()
        if line and not line.startswith("#")
    )
    assert properties["applicationName"] == "orders-kcl"
    # named once: the launcher passes it to the children, and refuses another name in their environment
    assert not {"CDC_KCL_LEASE_TABLE", "CDC_LEASE_TABLE"} & set(settings["orders-cdc-consumer"])
    assert properties["streamName"] == STREAM and properties["metricsLevel"] != "NONE"
    (deployment,) = of_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith("dynamodb-opensearch-consumer-kcl:0.2.0")
    assert container["args"] == ["/etc/kcl/daemon.properties"]
    # SIGTERM: the daemon's graceful shutdown ends before the pod's grace period does
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert 0 < int(properties["shutdownGraceMillis"]) < grace * 1000


def test_the_alert_rules_are_deploy_prometheus_alerts_yaml():
    assert yaml_file(CHART / "files" / "alerts.yaml") == yaml_file(ALERTS), (
        "deploy/helm/cdc-consumer/files/alerts.yaml must be a copy of deploy/prometheus/alerts.yaml"
    )
    (rule,) = of_kind(rendered({}), "PrometheusRule")
    assert rule["spec"] == yaml_file(ALERTS)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicas": 3}, "replicas"),  # a misspelled key (replicaCount)
        ({"mode": "kcl"}, "streamArn"),  # the KCL reads one stream
        ({"opensearch": {"url": "https://user:secret@search.internal"}}, "url"),  # credentials in the URL
        ({"deadLetters": {"destination": "/var/dead-letters.jsonl"}}, "destination"),  # a file on the pod
        ({"opensearch": {"auth": "basic"}}, "basicAuthSecret"),
    ],
)
def test_bad_values_are_refused_naming_what_is_wrong(values, named):
    done = helm("template", "orders", values=values, check=False)
    assert done.returncode != 0
    assert named in done.stderr, done.stderr


def test_the_autoscalers_select_this_releases_workers_by_the_label_the_pod_monitor_copies():
    keda = rendered(VALUE_SETS["basic-auth-autoscaling-jobs"])
    (monitor,) = of_kind(keda, "PodMonitor")
    assert "app.kubernetes.io/instance" in monitor["spec"]["podTargetLabels"]
    (scaled,) = of_kind(keda, "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert 'app_kubernetes_io_instance="orders"' in trigger["metadata"]["query"]
    assert "cdc_worker_iterator_age_max_seconds" in trigger["metadata"]["query"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == of_kind(keda, "Deployment")[0]["metadata"]["name"]
    (hpa,) = of_kind(rendered(VALUE_SETS["generations-pod-identity"]), "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {"app_kubernetes_io_instance": "orders"}
