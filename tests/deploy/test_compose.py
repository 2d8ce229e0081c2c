"""deploy/compose.yaml: valid against the Compose Specification's JSON schema (vendored: `docker
compose config` needs a Docker install) and wired the way its comments say."""

from __future__ import annotations

from urllib.parse import urlsplit

import jsonschema

from tests.deploy.helpers import DEPLOY, SCHEMAS, compose_service, json_file, yaml_file

COMPOSE = DEPLOY / "compose.yaml"


def test_compose_file_matches_the_compose_specification():
    jsonschema.Draft7Validator(json_file(SCHEMAS / "compose-spec.json")).validate(yaml_file(COMPOSE))


def test_consumer_is_built_from_the_repository_root():
    build = compose_service("consumer")["build"]
    assert build == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file()


def test_emulators_are_dynamodb_local_and_single_node_opensearch():
    assert compose_service("dynamodb")["image"].startswith("amazon/dynamodb-local:")
    opensearch = compose_service("opensearch")
    assert opensearch["image"].startswith("opensearchproject/opensearch:")
    assert opensearch["environment"]["discovery.type"] == "single-node"
    assert opensearch["environment"]["DISABLE_SECURITY_PLUGIN"] == "true"


def test_consumer_points_at_the_compose_services():
    env = compose_service("consumer")["environment"]
    services = set(yaml_file(COMPOSE)["services"])
    assert urlsplit(env["AWS_ENDPOINT_URL"]).hostname in services
    assert urlsplit(env["CDC_OPENSEARCH_URL"]).hostname in services
    assert env["CDC_TABLE_NAME"] == "orders"


def test_consumer_waits_for_the_table_and_the_index_store():
    depends = compose_service("consumer")["depends_on"]
    assert depends["init-table"]["condition"] == "service_completed_successfully"
    assert depends["opensearch"]["condition"] == "service_healthy"
    assert "healthcheck" in compose_service("opensearch")


def test_consumer_runs_locked_down_like_production():
    consumer = compose_service("consumer")
    assert consumer["read_only"] is True and consumer["cap_drop"] == ["ALL"]
    assert "/tmp" in consumer["tmpfs"] and "/var/lib/cdc" in consumer["volumes"]
