"""A misconfigured worker fails at start-up with exit code 2 and a message saying what to change."""

from __future__ import annotations

import pytest

from tests.support.commands import consumer
from tests.support.emulators import free_port
from tests.support.tables import create_table

pytestmark = pytest.mark.integration


def run_to_exit(start_worker, env):
    worker = start_worker(env)
    code = worker.wait(timeout=60)
    return code, worker.log_path.read_text()


def test_every_bad_variable_is_named_at_once(start_worker, worker_env):
    # GIVEN two malformed variables and no stream source
    env = {k: v for k, v in worker_env.items() if k != "CDC_TABLE_NAME"}
    env.update({"CDC_METRICS_PORT": "abc", "CDC_INITIAL_POSITION": "EARLIEST"})

    # WHEN the worker starts
    code, output = run_to_exit(start_worker, env)

    # THEN it exits 2 naming each variable, its value and what is expected
    assert code == 2
    assert "CDC_METRICS_PORT='abc'" in output and "integer" in output
    assert "CDC_INITIAL_POSITION='EARLIEST'" in output and "TRIM_HORIZON" in output
    assert "CDC_TABLE_NAME" in output and "CDC_STREAM_ARN" in output


def test_a_table_without_a_stream_says_how_to_enable_one(ddb, table_name, start_worker, worker_env):
    create_table(ddb, table_name, view_type=None)
    code, output = run_to_exit(start_worker, worker_env)
    assert code == 2
    assert f"table '{table_name}' has no stream enabled" in output
    assert "StreamViewType=NEW_AND_OLD_IMAGES" in output


@pytest.mark.parametrize("view_type", ["KEYS_ONLY", "OLD_IMAGE"])
def test_a_stream_without_new_images_is_refused(ddb, table_name, start_worker, worker_env, view_type):
    create_table(ddb, table_name, view_type=view_type)
    code, output = run_to_exit(start_worker, worker_env)
    assert code == 2
    assert f"has view type {view_type}" in output and "NEW_AND_OLD_IMAGES" in output


def test_a_missing_table_is_named(start_worker, worker_env):
    code, output = run_to_exit(start_worker, {**worker_env, "CDC_TABLE_NAME": "no-such-table"})
    assert code == 2
    assert "table 'no-such-table' does not exist" in output


def test_a_missing_region_is_reported(start_worker, worker_env):
    env = {k: v for k, v in worker_env.items() if k != "AWS_REGION"}
    code, output = run_to_exit(start_worker, env)
    assert code == 2
    assert "set AWS_REGION" in output


def test_an_unknown_cdc_variable_is_warned_about(ddb, table_name, start_worker, worker_env):
    create_table(ddb, table_name)
    worker = start_worker({**worker_env, "CDC_TABEL_NAME": "typo"})
    assert worker.port > 0  # started and listening
    warnings = worker.events("config_warning")
    assert worker.terminate() == 0
    assert any("CDC_TABEL_NAME" in w["detail"] for w in warnings)


def test_a_metrics_port_in_use_is_named(ddb, table_name, start_worker, worker_env):
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        port = holder.getsockname()[1]
        code, output = run_to_exit(
            start_worker, {**worker_env, "CDC_METRICS_HOST": "127.0.0.1", "CDC_METRICS_PORT": str(port)}
        )
    finally:
        holder.close()
    assert code == 2
    assert f"CDC_METRICS_PORT={port}: cannot listen there" in output


def test_consumer_config_check_without_a_region_says_so_before_printing_anything(worker_env):
    env = {name: value for name, value in worker_env.items() if name not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    for region in ({}, {"AWS_REGION": ""}):  # unset, or set to nothing
        answer = consumer({**env, **region, "AWS_CONFIG_FILE": "/dev/null"}, "config", "--check")
        assert answer.returncode == 2 and answer.stdout == ""
        assert answer.stderr.strip() == "consumer: no AWS region: set AWS_REGION (e.g. AWS_REGION=eu-west-1)"


def test_consumer_config_check_names_what_a_worker_would_miss(ddb, table_name, worker_env, tmp_path):
    def config_check(env):
        return consumer(env, "config", "--check")

    # GIVEN no table yet: the check fails (exit 3) and says so, without starting a worker
    missing = config_check(worker_env)
    assert missing.returncode == 3, missing.stderr
    assert f"FAIL  table {table_name} and its stream" in missing.stdout
    assert "lease table" in missing.stdout and "ok    OpenSearch" in missing.stdout

    # WHEN the table exists with its stream, THEN every check passes (the lease table and the index
    # may be missing: the first worker creates them)
    create_table(ddb, table_name)
    present = config_check(worker_env)
    assert present.returncode == 0, present.stdout + present.stderr
    assert "  FAIL  " not in present.stdout and "missing: the first worker creates it" in present.stdout

    # WHEN OpenSearch cannot be reached THEN its check fails with what to look at, under the FAIL line
    unreachable = config_check({**worker_env, "CDC_OPENSEARCH_URL": f"http://127.0.0.1:{free_port()}"})
    assert unreachable.returncode == 3, unreachable.stdout + unreachable.stderr
    failed = unreachable.stdout.split("  FAIL  OpenSearch ", 1)[1].splitlines()
    assert failed[1].startswith(" " * 8 + "OpenSearch did not answer: check CDC_OPENSEARCH_URL"), failed
