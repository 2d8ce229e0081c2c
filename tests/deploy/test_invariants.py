"""Cross-file invariants: the deploy/ artefacts agree with each other and with the application."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import promql_parser
import pytest
from prometheus_client import CollectorRegistry

from consumer.config import Settings, load_settings
from consumer.observability.http import ObservabilityServer
from consumer.observability.metrics import Metrics
from tests.deploy.helpers import (
    DEPLOY,
    OPERATIONS,
    REPO,
    alert_rules,
    compose_service,
    consumer_container,
    dashboard_expressions,
    ecs_container,
    ecs_environment,
    manifest,
    markdown_anchors,
    runtime_stage,
)

DEFAULT_SHUTDOWN_SECONDS = Settings.model_fields["shutdown_timeout_seconds"].default
DEFAULT_METRICS_PORT = Settings.model_fields["metrics_port"].default


def _kubernetes_env() -> dict[str, str]:
    """The container's environment: the ConfigMap, then `env` entries with a literal value."""
    env = dict(manifest("ConfigMap")["data"])
    env.update({item["name"]: item["value"] for item in consumer_container()["env"] if "value" in item})
    return env


def _shutdown_seconds(env: dict[str, str]) -> float:
    return float(env.get("CDC_SHUTDOWN_TIMEOUT_SECONDS", DEFAULT_SHUTDOWN_SECONDS))


# --- graceful shutdown fits before SIGKILL -------------------------------------------------------


def test_shutdown_timeout_is_below_kubernetes_grace_period():
    grace = manifest("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert _shutdown_seconds(_kubernetes_env()) < grace


def test_shutdown_timeout_is_below_ecs_stop_timeout():
    stop_timeout = ecs_container()["stopTimeout"]
    assert _shutdown_seconds(ecs_environment()) < stop_timeout <= 120


def test_shutdown_timeout_is_below_compose_grace_period():
    consumer = compose_service("consumer")
    grace = re.fullmatch(r"(\d+)s", consumer["stop_grace_period"])
    assert grace and _shutdown_seconds(consumer["environment"]) < int(grace.group(1))


# --- metrics used by alerts and the dashboard exist ---------------------------------------------


def _app_metric_names() -> set[str]:
    """Every series name the worker can export, plus Prometheus's own `up`."""
    metrics = Metrics(CollectorRegistry())
    metrics.shard_progress.record_read("s", 1.0)  # the per-shard gauges appear once a shard is seen
    metrics.shard_progress.record_checkpoint("s")
    names = {"up"}
    for family in metrics.registry.collect():
        names |= {sample.name for sample in family.samples}  # labelled families have none yet
        names |= {
            "counter": {f"{family.name}_total"},
            "histogram": {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")},
            "info": {f"{family.name}_info"},
        }.get(family.type, {family.name})
    return names


def _selected_metrics(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"selector without a metric name in {expr}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


QUERIES = {
    "alerts": [rule["expr"] for rule in alert_rules()],
    "dashboard": [expr for _, expr in dashboard_expressions()],
}


@pytest.mark.parametrize("source", sorted(QUERIES))
def test_every_metric_queried_is_exported_by_the_app(source):
    used = set().union(*(_selected_metrics(expr) for expr in QUERIES[source]))
    assert used, f"no metric found in the {source}"
    assert not used - _app_metric_names(), f"the {source} query metrics the app does not export"


@pytest.mark.parametrize("source", sorted(QUERIES))
def test_every_metric_queried_is_documented_in_the_readme(source):
    rows = re.findall(r"^\| (`.+?) \|", (REPO / "README.md").read_text(), flags=re.MULTILINE)
    documented = {name for row in rows for name in re.findall(r"`((?:cdc|process|python)_\w+)", row)} | {"up"}
    used = set().union(*(_selected_metrics(expr) for expr in QUERIES[source]))
    used = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert not used - documented, "queried but missing from the README's metrics table"


# --- probes and port ----------------------------------------------------------------------------


def _probe(kind: str) -> dict:
    return consumer_container()[kind]["httpGet"]


def _health_urls() -> list[str]:
    """The liveness URLs probed inside the container: Docker HEALTHCHECK and ECS healthCheck."""
    commands = [arguments for keyword, arguments in runtime_stage() if keyword == "HEALTHCHECK"]
    commands += [" ".join(ecs_container()["healthCheck"]["command"])]
    return [re.search(r"http://[^'\"]+", command).group(0) for command in commands]


def test_every_probe_uses_the_app_metrics_port():
    ports = {port["name"]: port["containerPort"] for port in consumer_container()["ports"]}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert ports.get(_probe(kind)["port"], _probe(kind)["port"]) == DEFAULT_METRICS_PORT, kind
    assert int(manifest("ConfigMap")["data"]["CDC_METRICS_PORT"]) == DEFAULT_METRICS_PORT
    assert int(ecs_environment()["CDC_METRICS_PORT"]) == DEFAULT_METRICS_PORT
    assert [mapping["containerPort"] for mapping in ecs_container()["portMappings"]] == [DEFAULT_METRICS_PORT]
    assert [arguments for keyword, arguments in runtime_stage() if keyword == "EXPOSE"] == [str(DEFAULT_METRICS_PORT)]
    assert all(urlsplit(url).port == DEFAULT_METRICS_PORT for url in _health_urls())


@pytest.fixture
def observability_server():
    """The app's own endpoint on a free loopback port: alive but not ready."""
    server = ObservabilityServer(
        "127.0.0.1", 0, CollectorRegistry(), liveness=lambda: (True, "ticking"), readiness=lambda: (False, "syncing")
    )
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_probe_paths_are_the_app_liveness_and_readiness(observability_server):
    # GIVEN the app alive but not ready, THEN every liveness probe passes and readiness does not
    liveness_paths = {_probe("livenessProbe")["path"], _probe("startupProbe")["path"]}
    liveness_paths |= {urlsplit(url).path for url in _health_urls()}
    assert {_status(observability_server + path) for path in liveness_paths} == {200}
    assert _status(observability_server + _probe("readinessProbe")["path"]) == 503
    monitor_path = manifest("PodMonitor")["spec"]["podMetricsEndpoints"][0]["path"]
    assert _status(observability_server + monitor_path) == 200


# --- users, settings ----------------------------------------------------------------------------


def test_image_user_is_the_one_the_orchestrators_run():
    (user,) = [arguments for keyword, arguments in runtime_stage() if keyword == "USER"]
    uid = int(user.split(":")[0])
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == consumer_container()["securityContext"]["runAsUser"] == uid
    assert ecs_container()["user"] == str(uid)


ENVIRONMENTS = {
    "kubernetes": lambda: {**_kubernetes_env(), "CDC_WORKER_ID": "cdc-consumer-0"},
    "ecs": ecs_environment,
    "compose": lambda: compose_service("consumer")["environment"],
}


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_the_app_accepts_the_configuration(name):
    # load_settings raises ConfigError naming any bad value, and warns about unknown (misspelled) names.
    _, warnings = load_settings(ENVIRONMENTS[name]())
    assert warnings == []


def test_ecs_and_kubernetes_configure_the_same_settings():
    assert ecs_environment() == manifest("ConfigMap")["data"]


@pytest.mark.parametrize("name", ["kubernetes", "ecs"])
def test_production_manifests_keep_dead_letters_off_pod_and_task_storage(name):
    # A file destination dies with its pod or task (evictions, scale-downs, redeploys): the
    # production manifests must send dead letters to S3 or SQS.
    settings, _ = load_settings(ENVIRONMENTS[name]())
    assert settings.dead_letters.kind in ("s3", "sqs"), settings.dead_letters


# --- documentation links ------------------------------------------------------------------------


def _links(pattern: str) -> set[str]:
    texts = [path.read_text() for path in sorted(DEPLOY.rglob("*")) if path.is_file() and "target" not in path.parts]
    texts += [(REPO / "README.md").read_text(), OPERATIONS.read_text()]
    return {anchor for text in texts for anchor in re.findall(pattern, text)}


def test_every_link_into_the_operations_guide_resolves():
    anchors = markdown_anchors(OPERATIONS)
    linked = _links(r"operations\.md#([\w-]+)") | set(re.findall(r"\]\(#([\w-]+)\)", OPERATIONS.read_text()))
    assert linked and not linked - anchors


def test_operations_guide_links_into_the_readme_resolve():
    linked = set(re.findall(r"README\.md#([\w-]+)", OPERATIONS.read_text()))
    assert linked and not linked - markdown_anchors(REPO / "README.md")
