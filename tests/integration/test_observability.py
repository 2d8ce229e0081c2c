"""What an SRE sees of a running worker: probes, the metric set, and request signing."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request

import pytest

from tests.support.emulators import free_port
from tests.support.fault_proxy import FaultProxy
from tests.support.slow_proxy import SlowProxy
from tests.support.tables import create_table, write_random_history
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.long]

EXPECTED_METRICS = {
    "cdc_build_info",
    "cdc_records_read_total",
    "cdc_records_read_bytes_total",
    "cdc_aws_requests_total",
    "cdc_records_processed_total",
    "cdc_get_records_total",
    "cdc_bulk_requests_total",
    "cdc_bulk_request_duration_seconds_bucket",
    "cdc_bulk_request_bytes_total",
    "cdc_batch_duration_seconds_count",
    "cdc_leases_held",
    "cdc_lease_events_total",
    "cdc_checkpoints_total",
    "cdc_lease_taker_cycles_total",
    "cdc_worker_loop_last_tick_timestamp_seconds",
    "cdc_shard_iterator_age_seconds",
    "cdc_shard_time_since_last_read_seconds",
    "cdc_shard_checkpoint_age_seconds",
    "cdc_worker_iterator_age_max_seconds",
    "cdc_worker_time_since_last_read_max_seconds",
    "cdc_aws_request_duration_seconds_bucket",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "python_gc_collections_total",
    "python_info",
}


def startup_retries(worker, step: str) -> list[dict]:
    return [event for event in worker.events("startup_step_failed") if event["step"] == step]


def names(samples: dict[str, float]) -> set[str]:
    return {name.split("{", 1)[0] for name in samples}


def test_a_ready_worker_serves_probes_and_its_metric_set(ddb, table_name, worker_env, start_worker):
    # GIVEN a worker that applied some changes
    create_table(ddb, table_name)
    write_random_history(ddb, table_name, changes=30, seed=91)
    worker = start_worker(worker_env)
    wait_until(lambda: worker.metric("cdc_records_processed_total") > 0, timeout=60, what="records applied")

    # THEN both probes answer 200 and every documented metric family is exported
    assert worker.probe("/healthz")[0] == 200
    assert worker.probe("/readyz") == (200, "ok\n")
    samples = worker.metrics()
    assert names(samples) >= EXPECTED_METRICS
    # the build is named, and GetRecords and checkpoint latencies are observed
    assert any(name.startswith("cdc_build_info{") and 'commit="' in name for name in samples)
    assert any(name.startswith("cdc_build_info{") and 'item_converter="compiled"' in name for name in samples)
    for operation in ("get_records", "update_item"):
        assert samples[f'cdc_aws_request_duration_seconds_count{{operation="{operation}"}}'] > 0


def test_healthz_stays_up_while_opensearch_is_unreachable(ddb, table_name, worker_env, start_worker):
    # GIVEN OpenSearch down (nothing listens on its port) and changes to apply
    create_table(ddb, table_name)
    write_random_history(ddb, table_name, changes=20, seed=92)
    env = {**worker_env, "CDC_OPENSEARCH_URL": f"http://127.0.0.1:{free_port()}", "CDC_RETRY_MAX_DELAY_SECONDS": "0.5"}
    worker = start_worker(env)

    # WHEN the worker keeps failing to set up the index and read alias (the first OpenSearch calls)
    wait_until(lambda: len(startup_retries(worker, "index not set up")) >= 3, timeout=60, what="index set-up retries")

    # THEN liveness stays 200 (no restart storm), readiness says why, nothing is acknowledged or checkpointed
    assert worker.probe("/healthz")[0] == 200
    status, reason = worker.probe("/readyz")
    assert status == 503 and "index not set up yet" in reason
    assert worker.metric("cdc_records_processed_total") == 0
    assert worker.metric('cdc_checkpoints_total{outcome="ok"}') == 0
    # AND every line it logged, the client libraries' own included, is a JSON object
    lines = [line for line in worker.log_path.read_text().splitlines() if line.strip()]
    assert lines and all(line.startswith("{") and line.endswith("}") for line in lines), lines[:5]


def test_readyz_is_503_until_the_stream_is_resolved(table_name, worker_env, start_worker):
    # GIVEN DynamoDB unreachable at start-up
    env = {**worker_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "CDC_RETRY_MAX_DELAY_SECONDS": "0.5"}
    worker = start_worker(env)

    # WHEN the worker keeps retrying
    wait_until(lambda: len(startup_retries(worker, "stream not resolved")) >= 2, timeout=60, what="resolution retries")

    # THEN it is alive but not ready, says why, and does not exit
    assert worker.probe("/healthz")[0] == 200
    status, reason = worker.probe("/readyz")
    assert status == 503 and "stream not resolved yet" in reason
    assert worker.process.poll() is None
    assert worker.terminate() == 0


@pytest.mark.parametrize(
    ("auth", "expected_prefix"),
    [
        ({"CDC_OPENSEARCH_AUTH": "sigv4"}, "AWS4-HMAC-SHA256 Credential=testing/"),
        (
            {
                "CDC_OPENSEARCH_AUTH": "basic",
                "CDC_OPENSEARCH_USERNAME": "indexer",
                "CDC_OPENSEARCH_PASSWORD": "s3cret",
                "CDC_OPENSEARCH_ALLOW_PLAINTEXT_AUTH": "true",  # the test's OpenSearch speaks http
            },
            "Basic " + base64.b64encode(b"indexer:s3cret").decode(),
        ),
    ],
    ids=["sigv4", "basic"],
)
def test_bulk_requests_carry_the_configured_auth(
    ddb, osmem, table_name, worker_env, start_worker, auth, expected_prefix
):
    # GIVEN a worker writing through a header-recording proxy with auth configured
    proxy = FaultProxy(osmem.url)
    try:
        create_table(ddb, table_name)
        write_random_history(ddb, table_name, changes=5, seed=93)
        worker = start_worker({**worker_env, "CDC_OPENSEARCH_URL": proxy.url, **auth})
        wait_until(lambda: worker.metric("cdc_records_processed_total") > 0, timeout=60, what="records applied")

        # THEN every bulk request was signed / authenticated
        authorizations = {headers.get("authorization", "") for headers in proxy.bulk_headers}
        assert authorizations and all(value.startswith(expected_prefix) for value in authorizations)
        if auth["CDC_OPENSEARCH_AUTH"] == "sigv4":
            assert all("/us-east-1/es/aws4_request" in value for value in authorizations)
    finally:
        proxy.stop()


def test_a_live_scrape_passes_promtool_check_metrics(ddb, table_name, worker_env, start_worker):
    # GIVEN a worker that has applied changes, so every metric family has samples
    create_table(ddb, table_name)
    write_random_history(ddb, table_name, changes=10, seed=94)
    worker = start_worker(worker_env)
    wait_until(lambda: worker.metric("cdc_records_processed_total") > 0, timeout=60, what="records applied")

    # WHEN its exposition is linted by promtool
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
        exposition = response.read()
    lint = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=60)

    # THEN it follows the Prometheus naming conventions
    assert lint.returncode == 0, (lint.stdout + lint.stderr).decode()


def test_liveness_holds_while_dynamodb_answers_slowly_and_readiness_says_why(
    ddb, moto, table_name, worker_env, start_worker
):
    # GIVEN a ready worker whose every AWS call goes through a proxy in front of moto
    create_table(ddb, table_name)
    proxy = SlowProxy(moto.url)
    try:
        env = {**worker_env, "AWS_ENDPOINT_URL": proxy.url}
        worker = start_worker(env)
        wait_until(lambda: worker.probe("/readyz")[0] == 200, timeout=60, what="ready")

        # WHEN DynamoDB and its stream answer every request 20 s late, for longer than the liveness
        # stall threshold (40 s with a 3 s failover)
        proxy.slow(20)
        slow_since = time.monotonic()
        answers = []
        while time.monotonic() - slow_since < 60:
            answers.append(worker.probe("/healthz")[0])
            time.sleep(2)

        # THEN liveness never failed (no restart storm), and readiness says what is slow
        assert set(answers) == {200}, answers
        status, reason = worker.probe("/readyz")
        assert status == 503 and "coordination slow" in reason, reason

        # AND when DynamoDB is fast again, the worker is ready again by itself
        proxy.heal()
        wait_until(lambda: worker.probe("/readyz")[0] == 200, timeout=120, what="ready again")
    finally:
        proxy.stop()


def settled(read, pause: float = 1.5, attempts: int = 40) -> float:
    """A value read twice ``pause`` apart with no change (the stream read to its end)."""
    before = read()
    for _ in range(attempts):
        time.sleep(pause)
        now = read()
        if now == before:
            return now
        before = now
    raise AssertionError(f"still changing after {attempts * pause:.0f} s: {now}")


def test_with_emf_on_a_worker_writes_its_key_metrics_as_whole_embedded_metric_lines(
    ddb, table_name, worker_env, start_worker
):
    # GIVEN a worker with the embedded metric format on, a line a second, and a table that changes
    create_table(ddb, table_name)
    write_random_history(ddb, table_name, changes=40, seed=93)
    env = {**worker_env, "CDC_METRICS_EMF": "on", "CDC_METRICS_EMF_INTERVAL_SECONDS": "1"}
    worker = start_worker(env)
    wait_until(lambda: worker.metric("cdc_records_processed_total") >= 20, timeout=60, what="records applied")
    processed = settled(lambda: worker.metric("cdc_records_processed_total"))
    time.sleep(2.5)  # the next lines carry the last counts
    assert worker.terminate() == 0

    # THEN every line of its stderr is whole JSON, the EMF ones name the table and the worker, declare
    # every value they carry, and their counts add up to what the worker processed
    lines = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.strip()]
    documents = [line for line in lines if "_aws" in line]
    assert len(documents) >= 3
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "CdcConsumer" and directive["Dimensions"] == [["Table"], ["Table", "WorkerId"]]
        assert document["Table"] == table_name and document["WorkerId"] == worker.worker_id
        assert all(isinstance(document[metric["Name"]], float | int) for metric in directive["Metrics"])
    assert sum(document["RecordsProcessed"] for document in documents) == processed
    assert max(document["LeasesHeld"] for document in documents) >= 1
