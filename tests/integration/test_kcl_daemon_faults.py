"""Black box, KCL mode: the real Java MultiLangDaemon (deploy/kcl) with ``consumer kcl-processor``
children on the test-side stream server — four shards, two of them split while a writer runs —
through a slow OpenSearch (every ``_bulk`` answered after half a second, so batches last seconds)
and a DynamoDB front that can throttle the KCL's tables. The daemon is killed with -9 in the middle
of its batches and a new one starts under a *new* worker id, as a Deployment's replacement pod
would; then every write to the KCL's tables is throttled for 20 s. The version clock on every lease
item, sampled each second, never goes down, and the index ends equal to the table."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.kcl_daemon import KclDaemon, daemon_properties
from tests.support.kcl_daemon_side import kcl_env
from tests.support.tables import index_documents, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.long]


@pytest.mark.timeout(900)  # the KCL waits up to 30 s to start and 2 min for a dead leader
def test_the_kcl_daemon_killed_restarted_and_throttled_on_a_splitting_stream_converges(
    ddb, moto, osmem, stream_server, proxy, fed_stream, table_name, tmp_path, kcl_classpath, dynamodb_front
):
    front = dynamodb_front
    # GIVEN a four-shard stream fed from the table, a slow OpenSearch, and a daemon reading it
    lineage = fed_stream(4)
    proxy.stall(0.5, None)
    application = f"{table_name}-kcl"
    env = {
        **kcl_env(front.url, table_name, proxy.url, None, tmp_path / "dead-letters.jsonl"),
        "CDC_STREAM_ARN": lineage.arn,
        "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": stream_server.url,
    }
    daemons: list[KclDaemon] = []

    def start(worker_id: str) -> None:
        properties = daemon_properties(
            tmp_path / f"{worker_id}.properties", lineage.arn, application, front.url, worker_id, failover_millis=5000
        )
        properties.write_text(
            properties.read_text().replace(
                f"dynamoDBStreamsEndpoint = {front.url}", f"dynamoDBStreamsEndpoint = {stream_server.url}"
            )
        )
        daemons.append(KclDaemon(kcl_classpath, properties, env, tmp_path / f"{worker_id}.log"))

    clocks: dict[str, list[int]] = {}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(1.0):
            try:
                items = ddb.scan(TableName=application, ConsistentRead=True)["Items"]
            except ddb.exceptions.ResourceNotFoundException:
                continue
            for item in items:
                if "checkpointVersion" in item:
                    clocks.setdefault(item["leaseKey"]["S"], []).append(int(item["checkpointVersion"]["N"]))

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        start("daemon-a")
        sampler.start()

        # WHEN a writer runs, two shards split, the daemon is killed with -9 once it has
        # checkpointed (its batches take seconds), and a new one starts under a new worker id
        write_random_history(ddb, table_name, changes=60, seed=1)
        wait_until(lambda: clocks, timeout=240, what="a first version stored by the daemon")
        for shard in [shard.shard_id for shard in stream_server.shards(lineage.arn) if not shard.is_closed][:2]:
            stream_server.split(lineage.arn, shard)
        write_random_history(ddb, table_name, changes=60, seed=2)
        daemons[0].kill()
        start("daemon-b")
        write_random_history(ddb, table_name, changes=60, seed=3)

        # AND every write to the KCL's tables is throttled for 20 s, while the writer goes on
        wait_until(lambda: sum(len(v) for v in clocks.values()) > 10, timeout=240, what="the new daemon reading")
        front.throttle_writes(application)
        for seed in range(4, 8):
            write_random_history(ddb, table_name, changes=20, seed=seed)
            time.sleep(5)
        front.throttle_writes(None)
        lineage.feed.wait_caught_up(timeout=60)
        proxy.heal()

        # THEN the index converges to the table, and no shard's version clock ever went down
        wait_until(
            lambda: index_documents(osmem.url, table_name) == table_documents(ddb, table_name),
            timeout=300,
            what="index to equal table",
        )
        assert front.throttled > 0
        assert all(readings == sorted(readings) for readings in clocks.values()), clocks
        assert len(clocks) >= 4
    finally:
        sampling.set()
        for daemon in daemons:
            daemon.stop()
