"""Settings from CDC_* variables: defaults, derived names, and every mistake reported at once."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from consumer.config import load_settings
from consumer.errors import ConfigError

STREAM_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/Orders/stream/2024-01-01T00:00:00.000"


def environ(**variables: str) -> dict[str, str]:
    """A minimal valid environment plus ``variables`` (CDC_ names); a value of None removes one."""
    env = {"CDC_TABLE_NAME": "Orders", "CDC_OPENSEARCH_URL": "http://localhost:9200", **variables}
    return {name: value for name, value in env.items() if value is not None}


def config_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    return str(caught.value)


def test_defaults():
    # GIVEN only the table and the OpenSearch URL WHEN settings load THEN the defaults are KCL's and ours
    settings, warnings = load_settings(environ())
    assert warnings == []
    assert settings.initial_position == "TRIM_HORIZON"
    assert settings.failover_seconds == 10.0
    assert settings.max_records_per_read == 1000
    assert settings.metrics_port == 9400
    assert settings.dead_letter_path == Path("cdc-dead-letters.jsonl")
    assert (settings.log_level, settings.log_format) == ("INFO", "auto")
    assert settings.gc_young_threshold == 100_000
    assert settings.worker_id  # host-pid, unique per process


def test_names_are_derived_from_the_table_name():
    # GIVEN only CDC_TABLE_NAME WHEN settings load THEN the lease table and the index follow from it
    settings, _ = load_settings(environ(CDC_TABLE_NAME="Orders"))
    assert settings.source_table == "Orders"
    assert settings.lease_table_name == "Orders-cdc-leases"
    assert settings.index_name == "orders"  # OpenSearch index names are lower case


def test_the_table_is_derived_from_the_stream_arn():
    # GIVEN only CDC_STREAM_ARN WHEN settings load THEN the table, lease table and index come from the ARN
    settings, _ = load_settings(environ(CDC_TABLE_NAME=None, CDC_STREAM_ARN=STREAM_ARN))
    assert (settings.source_table, settings.lease_table_name, settings.index_name) == (
        "Orders",
        "Orders-cdc-leases",
        "orders",
    )


def test_explicit_names_win_over_derived_ones():
    settings, _ = load_settings(environ(CDC_LEASE_TABLE="leases", CDC_OPENSEARCH_INDEX="orders-v2"))
    assert (settings.lease_table_name, settings.index_name) == ("leases", "orders-v2")


def test_numbers_and_choices_are_parsed_from_text():
    settings, _ = load_settings(
        environ(CDC_METRICS_PORT="9500", CDC_FAILOVER_SECONDS="30", CDC_INITIAL_POSITION="LATEST", CDC_WORKER_ID="w-1")
    )
    assert (settings.metrics_port, settings.failover_seconds, settings.initial_position, settings.worker_id) == (
        9500,
        30.0,
        "LATEST",
        "w-1",
    )


def test_every_bad_variable_is_reported_at_once_with_its_value_and_expectation():
    # GIVEN two bad variables and a missing required one
    env = environ(CDC_METRICS_PORT="abc", CDC_INITIAL_POSITION="EARLIEST", CDC_OPENSEARCH_URL=None)

    # WHEN settings load
    message = config_error(env)

    # THEN one error names each variable, shows its value and says what is expected
    assert "CDC_METRICS_PORT='abc'" in message
    assert "valid integer" in message
    assert "CDC_INITIAL_POSITION='EARLIEST'" in message
    assert "'TRIM_HORIZON' or 'LATEST'" in message
    assert "CDC_OPENSEARCH_URL=(not set)" in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CDC_METRICS_PORT", "70000"),
        ("CDC_FAILOVER_SECONDS", "0"),
        ("CDC_MAX_RECORDS_PER_READ", "1001"),
        ("CDC_OPENSEARCH_URL", "localhost:9200"),
        ("CDC_OPENSEARCH_INDEX", "Orders"),
        ("CDC_STREAM_ARN", "arn:aws:kinesis:eu-west-1:123456789012:stream/x"),
        ("CDC_TABLE_NAME", "a b"),
        ("CDC_LOG_LEVEL", "TRACE"),
        ("CDC_GC_YOUNG_THRESHOLD", "-1"),
    ],
)
def test_an_out_of_range_or_malformed_value_is_named(variable, value):
    # GIVEN one bad value WHEN settings load THEN the error names the variable and its value
    assert f"{variable}={value!r}" in config_error(environ(**{variable: value}))


def test_a_missing_source_is_reported():
    # GIVEN neither CDC_TABLE_NAME nor CDC_STREAM_ARN WHEN settings load THEN the error says to set one
    message = config_error(environ(CDC_TABLE_NAME=None))
    assert "CDC_TABLE_NAME" in message
    assert "CDC_STREAM_ARN" in message


def test_a_missing_source_is_reported_together_with_the_other_mistakes():
    # GIVEN no source and a bad port WHEN settings load THEN both are in the one error
    message = config_error(environ(CDC_TABLE_NAME=None, CDC_METRICS_PORT="abc"))
    assert "CDC_METRICS_PORT='abc'" in message
    assert "set CDC_TABLE_NAME" in message


@pytest.mark.parametrize("table", ["_orders", "-orders", ".orders"])
def test_a_table_name_that_makes_no_valid_index_name_asks_for_an_explicit_index(table):
    # GIVEN a legal DynamoDB table name that is not a legal OpenSearch index name once lower-cased
    # WHEN settings load without CDC_OPENSEARCH_INDEX
    # THEN startup fails and says to set it (instead of every document being refused later)
    message = config_error(environ(CDC_TABLE_NAME=table))
    assert "CDC_OPENSEARCH_INDEX" in message
    settings, _ = load_settings(environ(CDC_TABLE_NAME=table, CDC_OPENSEARCH_INDEX="orders"))
    assert settings.index_name == "orders"


def test_unknown_cdc_variables_are_warned_about_and_others_ignored():
    # GIVEN a typo'd CDC_ variable, CDC_AWS_REGION (not ours) and unrelated variables
    settings, warnings = load_settings(
        environ(CDC_FAILOVER_SECOND="5", CDC_AWS_REGION="eu-west-1", PATH="/usr/bin", HOME="/root")
    )

    # WHEN settings load THEN each unknown CDC_ name gets a warning; the typo does not change the setting
    assert len(warnings) == 2
    assert any("CDC_FAILOVER_SECOND " in warning for warning in warnings)
    assert any("CDC_AWS_REGION " in warning for warning in warnings)
    assert settings.failover_seconds == 10.0
    # AND a near miss names the setting it most likely meant
    assert any(warning.endswith("did you mean CDC_FAILOVER_SECONDS?") for warning in warnings)


def test_every_broken_rule_between_settings_is_reported_in_one_run():
    message = config_error(
        environ(
            CDC_OPENSEARCH_URL="https://user:secret@search.internal",
            CDC_RETRY_BASE_SECONDS="9",
            CDC_RETRY_MAX_DELAY_SECONDS="1",
            CDC_IDLE_POLL_MAX_SECONDS="0.1",
        )
    )
    assert "holds credentials" in message and "secret" not in message
    assert "CDC_RETRY_BASE_SECONDS=9 is above CDC_RETRY_MAX_DELAY_SECONDS=1" in message
    assert "CDC_IDLE_POLL_MAX_SECONDS must be at least CDC_POLL_INTERVAL_SECONDS" in message


@pytest.mark.parametrize(
    ("variables", "region"),
    [
        ({"AWS_REGION": "eu-west-1"}, "eu-west-1"),
        ({"AWS_DEFAULT_REGION": "us-west-2"}, "us-west-2"),
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-west-2"}, "eu-west-1"),
        ({}, None),
    ],
)
def test_the_aws_region_is_picked_up_the_sdk_way(variables, region):
    settings, _ = load_settings({**environ(), **variables})
    assert settings.aws_region == region


def test_only_the_given_mapping_is_read(monkeypatch):
    # GIVEN a valid configuration in the process environment but not in the mapping passed
    for name, value in environ().items():
        monkeypatch.setenv(name, value)

    # WHEN settings load from the mapping THEN the process environment does not leak in
    with pytest.raises(ConfigError):
        load_settings({})


def test_the_streams_endpoint_alias_is_honoured_unless_the_sdk_variable_is_set():
    base = {"CDC_TABLE_NAME": "orders", "CDC_OPENSEARCH_URL": "http://localhost:9200"}
    alias = {**base, "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": "http://streams:1"}
    settings, warnings = load_settings(alias)
    assert settings.streams_endpoint_url == "http://streams:1" and warnings == []
    both = {**alias, "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": "http://sdk:2"}
    assert load_settings(both)[0].streams_endpoint_url is None  # botocore reads its own variable


def test_dead_letters_default_to_the_file_at_cdc_dead_letter_path():
    # GIVEN no CDC_DEAD_LETTER_DESTINATION (or `file`) WHEN settings load THEN the file at CDC_DEAD_LETTER_PATH is used
    for extra in ({}, {"CDC_DEAD_LETTER_DESTINATION": "file"}, {"CDC_DEAD_LETTER_DESTINATION": ""}):
        settings, _ = load_settings(environ(CDC_DEAD_LETTER_PATH="/var/lib/cdc/dl.jsonl", **extra))
        assert (settings.dead_letters.kind, settings.dead_letters.location) == ("file", "/var/lib/cdc/dl.jsonl")


@pytest.mark.parametrize(
    ("value", "kind", "location", "prefix"),
    [
        ("file:///var/lib/cdc/dead-letters.jsonl", "file", "/var/lib/cdc/dead-letters.jsonl", ""),
        ("sqs:orders-dlq", "sqs", "orders-dlq", ""),
        (
            "sqs:https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dlq",
            "sqs",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dlq",
            "",
        ),
        ("s3://example-cdc-dead-letters", "s3", "example-cdc-dead-letters", ""),
        ("s3://example-cdc-dead-letters/orders/dlq/", "s3", "example-cdc-dead-letters", "orders/dlq"),
    ],
)
def test_a_dead_letter_destination_is_parsed(value, kind, location, prefix):
    # GIVEN CDC_DEAD_LETTER_DESTINATION WHEN settings load THEN it names the destination, whatever the path says
    settings, _ = load_settings(environ(CDC_DEAD_LETTER_DESTINATION=value, CDC_DEAD_LETTER_PATH="ignored.jsonl"))
    destination = settings.dead_letters
    assert (destination.kind, destination.location, destination.prefix) == (kind, location, prefix)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sqs://orders-dlq", "not an SQS queue URL or name"),
        ("sqs:", "not an SQS queue URL or name"),
        ("sqs:orders-dlq.fifo", "FIFO queues are not supported"),
        ("s3://Bad_Bucket/x", "'Bad_Bucket' is not an S3 bucket name"),
        ("s3://", "is not an S3 bucket name"),
        ("file://", "expected file, file://<path>"),
        ("kafka://topic", "expected file, file://<path>, sqs:<queue URL or name> or s3://<bucket>[/<prefix>]"),
    ],
)
def test_a_bad_dead_letter_destination_is_named_with_the_accepted_forms(value, expected):
    # GIVEN a malformed CDC_DEAD_LETTER_DESTINATION WHEN settings load THEN the error names it and what is expected
    message = config_error(environ(CDC_DEAD_LETTER_DESTINATION=value))
    assert f"CDC_DEAD_LETTER_DESTINATION={value!r}: " in message
    assert expected in message


def test_tombstone_settings_default_to_a_live_alias_two_days_and_an_hourly_reap():
    settings, _ = load_settings(environ())
    assert settings.read_alias_name == "orders-live"
    assert (settings.tombstone_retention_seconds, settings.tombstone_reap_interval_seconds) == (172_800, 3600.0)
    custom, _ = load_settings(environ(CDC_OPENSEARCH_READ_ALIAS="orders-search"))
    assert custom.read_alias_name == "orders-search"


def test_tombstones_must_outlive_the_stream_retention_and_the_alias_must_not_be_the_index():
    # GIVEN a retention shorter than the stream's 24 h WHEN settings load THEN the error says why it matters
    message = config_error(environ(CDC_TOMBSTONE_RETENTION_SECONDS="3600"))
    assert "CDC_TOMBSTONE_RETENTION_SECONDS='3600'" in message
    assert "must be ≥ 86400 (24 h)" in message and "resurrect" in message
    assert load_settings(environ(CDC_TOMBSTONE_RETENTION_SECONDS="86400"))[0].tombstone_retention_seconds == 86400
    assert "must differ from the index name" in config_error(environ(CDC_OPENSEARCH_READ_ALIAS="orders"))


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"CDC_MAX_RECORD_AGE_SECONDS": "3600"}, "CDC_DEAD_LETTER_ON_OUTAGE=true to opt in"),
        ({"CDC_MAX_RETRY_ATTEMPTS": "3"}, "CDC_DEAD_LETTER_ON_OUTAGE=true to opt in"),
        ({"CDC_MASK_FIELDS": "email"}, "needs a secret key"),
        ({"CDC_ROUTES": '[{"name": "a", "index": "a", "mask_fields": ["email"]}]'}, "needs a secret key"),
        ({"CDC_ROUTES": "[]"}, "a non-empty list of routes"),
        ({"CDC_ROUTES": '[{"name": "a", "index": "a"}, {"name": "a", "index": "b"}]'}, "must be unique: a"),
        ({"CDC_ROUTES": '[{"name": "a", "index": "Orders-${t}"}]'}, "must start with a lowercase letter"),
        ({"CDC_ROUTES": '[{"name": "a", "index": "o-${}"}]'}, "names no attribute"),
        ({"CDC_ROUTES": '[{"name": "a", "index": "a"}, {"name": "b", "index": "a-live"}]'}, "also a read alias"),
        ({"CDC_ROUTES": '[{"name": "a", "index": "a", "colour": 1}]'}, "colour"),
        (
            {"CDC_ROUTES": '[{"name": "a", "index": "a", "match": {"dynamodb": {"OldImage": {"t": {"S": ["x"]}}}}}]'},
            "an item's state",
        ),
        ({"CDC_ROUTES": '[{"name": "a", "index": "a"}]', "CDC_OPENSEARCH_INDEX": "b"}, "each route names its index"),
        ({"CDC_ROUTES": "/no/such/routes.yaml"}, "neither JSON nor a readable file"),
        ({"CDC_TRANSFORM": "shapes.orders"}, "CDC_TRANSFORM='shapes.orders'"),
        ({"CDC_MASK_FIELDS": "email", "CDC_MASK_KEY": "short"}, "at least 16 bytes"),
        ({"CDC_MASK_FIELDS": "email", "CDC_MASK_KEY_FILE": "/no/such/key"}, "cannot be read"),
        ({"CDC_MASK_FIELDS": "items[.email"}, "is not a field path"),
        ({"CDC_INCLUDE_FIELDS": "a..b"}, "is not a field path"),
        ({"CDC_EVENT_NAMES": "INSERT,MODIFY"}, "CDC_FILTER_MODE=events"),
        ({"CDC_FILTER_PATTERNS": '{"eventName": ["INSERT"]}'}, "it names eventName"),
        ({"CDC_FILTER_PATTERNS": '{"dynamodb": {"OldImage": {"a": {"S": ["x"]}}}}'}, "dynamodb.OldImage"),
        ({"CDC_BULK_MAX_BYTES": "1000"}, "CDC_BULK_MAX_BYTES='1000'"),
        ({"CDC_MAPPING_MODE": "strict"}, "CDC_MAPPING_MODE='strict'"),
    ],
)
def test_settings_that_would_lose_or_leak_data_are_refused_with_what_to_do(variables, named):
    # GIVEN a setting that would dead-letter healthy records, mask without a key, filter events while
    # the index is meant to follow the table, or is simply malformed
    # WHEN the settings load THEN start-up fails and the message says what is wrong and what to do
    assert named in config_error(environ(**variables))


def test_masking_takes_a_key_from_a_file_or_an_explicit_unkeyed_opt_in(tmp_path):
    key_file = tmp_path / "mask.key"
    key_file.write_text("a-secret-of-more-than-16-bytes\n")
    settings, _ = load_settings(environ(CDC_MASK_FIELDS="email", CDC_MASK_KEY_FILE=str(key_file)))
    assert settings.mask_secret == b"a-secret-of-more-than-16-bytes"
    unkeyed, _ = load_settings(environ(CDC_MASK_FIELDS="email", CDC_MASK_UNKEYED="true"))
    assert unkeyed.mask_secret is None
    assert "a-secret" not in repr(load_settings(environ(CDC_MASK_FIELDS="e", CDC_MASK_KEY="a-secret-0123456789"))[0])


def test_outage_limits_apply_when_opted_in_and_state_filters_are_the_default():
    settings, _ = load_settings(environ(CDC_DEAD_LETTER_ON_OUTAGE="true", CDC_MAX_RECORD_AGE_SECONDS="3600"))
    assert settings.max_record_age_seconds == 3600
    assert settings.filter_mode == "state" and settings.mapping_mode == "managed"
    assert settings.bulk_max_bytes == 5 * 1024 * 1024
    events, _ = load_settings(environ(CDC_FILTER_MODE="events", CDC_EVENT_NAMES="INSERT"))
    assert events.event_names == ("INSERT",)


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"CDC_OPENSEARCH_AUTH": "basic", "CDC_OPENSEARCH_USERNAME": "u"}, "CDC_OPENSEARCH_AUTH=basic needs"),
        ({"CDC_OPENSEARCH_PASSWORD": "p"}, "CDC_OPENSEARCH_AUTH=none: set CDC_OPENSEARCH_AUTH=basic"),
        ({"CDC_RETRY_BASE_SECONDS": "20"}, "CDC_RETRY_BASE_SECONDS=20 is above CDC_RETRY_MAX_DELAY_SECONDS=10"),
    ],
)
def test_settings_that_contradict_each_other_are_named(variables, named):
    assert named in config_error(environ(**variables))


def test_on_ecs_the_worker_id_is_the_task_id_from_the_task_metadata():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Metadata(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps({"TaskARN": "arn:aws:ecs:eu-west-1:123456789012:task/orders/0f1e2d3c4b5a"}).encode()
            self.send_response(200 if self.path.endswith("/task") else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v4/container"
        settings, _ = load_settings({**environ(), "ECS_CONTAINER_METADATA_URI_V4": endpoint})
        assert settings.worker_id == "0f1e2d3c4b5a"
        explicit, _ = load_settings({**environ(CDC_WORKER_ID="w-1"), "ECS_CONTAINER_METADATA_URI_V4": endpoint})
        assert explicit.worker_id == "w-1"
    finally:
        server.shutdown()
        server.server_close()
    unreachable, warnings = load_settings({**environ(), "ECS_CONTAINER_METADATA_URI_V4": "http://127.0.0.1:9/v4"})
    assert unreachable.worker_id and any("ECS task metadata unreadable" in w for w in warnings)


def test_the_effective_configuration_names_each_source_and_redacts_secrets():
    from consumer.commands.show_config import effective

    env = environ(
        CDC_OPENSEARCH_URL="https://search.example.com",
        CDC_OPENSEARCH_AUTH="basic",
        CDC_OPENSEARCH_USERNAME="u",
        CDC_OPENSEARCH_PASSWORD="hunter2",
    )
    settings, _ = load_settings(env)
    rows = {entry.variable: entry for entry in effective(settings, env)}
    assert rows["CDC_OPENSEARCH_PASSWORD"].value == "<redacted>"
    assert "hunter2" not in repr(list(rows.values()))
    assert (rows["CDC_TABLE_NAME"].source, rows["CDC_POLL_INTERVAL_SECONDS"].source) == ("env", "default")
    assert rows["(index_name)"].value == settings.index_name and rows["(index_name)"].source == "derived"


def test_a_url_holding_credentials_is_refused_without_being_shown():
    # GIVEN credentials in the OpenSearch URL (opensearch-py would use them, and the URL is printed)
    problems = config_error(environ(CDC_OPENSEARCH_URL="https://admin:s3cr3t-Pa55@search.example.com"))

    # THEN the configuration is refused, says where credentials go, and never shows the password
    assert "CDC_OPENSEARCH_USERNAME / CDC_OPENSEARCH_PASSWORD" in problems
    assert "s3cr3t-Pa55" not in problems
    # AND a URL invalid for another reason is shown with its password redacted
    problems = config_error(environ(CDC_OPENSEARCH_URL="ftp://admin:s3cr3t-Pa55@search.example.com"))
    assert "CDC_OPENSEARCH_URL=" in problems and "s3cr3t-Pa55" not in problems


def test_basic_auth_over_plain_http_needs_an_explicit_opt_in():
    basic = {
        "CDC_OPENSEARCH_AUTH": "basic",
        "CDC_OPENSEARCH_USERNAME": "u",
        "CDC_OPENSEARCH_PASSWORD": "pw-long-enough",
    }
    assert "sends the password in clear" in config_error(environ(**basic))
    settings, _ = load_settings(environ(**basic, CDC_OPENSEARCH_ALLOW_PLAINTEXT_AUTH="true"))
    assert settings.opensearch_auth == "basic"
    settings, _ = load_settings(environ(**basic, CDC_OPENSEARCH_URL="https://search.example.com"))
    assert settings.opensearch_url == "https://search.example.com"


def test_the_default_worker_id_is_unique_per_process_even_with_one_host_name_and_pid():
    # GIVEN two processes of one host where every container is pid 1 (host networking)
    first, _ = load_settings(environ())
    second, _ = load_settings(environ())

    # THEN their ids differ, and each still names the host
    assert first.worker_id != second.worker_id
    assert first.worker_id.startswith(socket.gethostname() + "-")
