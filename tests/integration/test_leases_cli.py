"""``consumer leases`` against moto: the lease table as a person and a script read it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from consumer.leases.model import SHARD_END, TRIM_HORIZON, Lease
from consumer.leases.table import LeaseTable
from tests.support.emulators import aws_env

pytestmark = pytest.mark.integration

PARENT, CHILD, STUCK, NEW = "shardId-0300", "shardId-0100", "shardId-0200", "shardId-0400"
SEQUENCE = "6200000000002513011398"
SLOW_CI = {"CDC_FAILOVER_SECONDS": "600"}  # the owned lease stays owned however slowly the command starts


def consumer_leases(moto_url: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ.get("PATH", ""), **aws_env(moto_url), **env}
    return subprocess.run(
        [sys.executable, "-m", "consumer", "leases", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def lease_table(ddb, table_name):
    """The lease table of ``table_name`` holding one lease in each state:

    PARENT ended (worker-a), CHILD owned and checkpointed (worker-b), STUCK expired (worker-a,
    last written an hour ago), NEW unowned and never written since its creation.
    """
    now = time.time()
    table = LeaseTable(ddb, f"{table_name}-cdc-leases", clock=lambda: now)
    table.ensure_table(threading.Event())
    an_hour_ago = LeaseTable(ddb, table.name, clock=lambda: now - 3600)
    for key, parents in ((PARENT, ()), (CHILD, (PARENT,)), (STUCK, (PARENT,)), (NEW, ())):
        assert table.create_lease(Lease(key, None, 0, TRIM_HORIZON, parent_shard_ids=frozenset(parents)))
    parent = table.take(Lease(PARENT, None, 0, TRIM_HORIZON), "worker-a")
    table.checkpoint(parent, SHARD_END, version=5)
    child = table.take(Lease(CHILD, None, 0, TRIM_HORIZON, parent_shard_ids=frozenset({PARENT})), "worker-b")
    table.checkpoint(child, SEQUENCE, version=9, record_second=int(now) - 30)
    an_hour_ago.take(Lease(STUCK, None, 0, TRIM_HORIZON, parent_shard_ids=frozenset({PARENT})), "worker-a")
    return table


def test_the_table_shows_each_lease_with_its_state(moto, table_name, lease_table):
    # GIVEN a lease table with an ended parent, an owned and an expired child, and a new lease
    # WHEN a person runs `consumer leases` with the worker's settings
    result = consumer_leases(moto.url, {"CDC_TABLE_NAME": table_name, **SLOW_CI})

    # THEN it exits 0 and prints parents first, each lease's owner, state, checkpoint and parent
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SHARD", "OWNER", "STATE", "CHECKPOINT", "PARENT", "AGE", "LAG", "SWITCHES"]
    rows = [line.split() for line in lines[1:5]]
    assert [row[:5] for row in rows] == [
        [PARENT, "worker-a", "ended", "SHARD_END", "—"],
        [NEW, "—", "unowned", "TRIM_HORIZON", "—"],
        [CHILD, "worker-b", "owned", "…2513011398", PARENT],
        [STUCK, "worker-a", "expired", "TRIM_HORIZON", PARENT],
    ]
    assert rows[1][5] == "?"  # never written since creation: age unknown
    assert rows[3][5].startswith("1h")  # written an hour ago
    assert lines[-1] == "4 leases: 1 owned by 1 worker (worker-b: 1), 1 ended, 1 unowned, 1 expired"


def test_json_gives_full_checkpoints_and_seconds(moto, table_name, lease_table):
    # WHEN a script runs `consumer leases --json`, naming the lease table directly
    result = consumer_leases(
        moto.url, {"CDC_TABLE_NAME": "unrelated", "CDC_LEASE_TABLE": lease_table.name, **SLOW_CI}, "--json"
    )

    # THEN it gets one object per lease, with the whole sequence number and the lag at the checkpoint
    assert result.returncode == 0, result.stderr
    by_shard = {row["shard"]: row for row in json.loads(result.stdout)}
    assert {shard: row["state"] for shard, row in by_shard.items()} == {
        PARENT: "ended",
        CHILD: "owned",
        STUCK: "expired",
        NEW: "unowned",
    }
    child = by_shard[CHILD]
    assert (child["owner"], child["checkpoint"], child["parents"]) == ("worker-b", SEQUENCE, [PARENT])
    assert 30 <= child["lag_seconds"] < 31  # the record second is whole, the checkpoint time is not
    assert by_shard[NEW]["age_seconds"] is None and by_shard[NEW]["lag_seconds"] is None
    assert by_shard[STUCK]["age_seconds"] >= 3600


def test_a_missing_lease_table_is_named_with_what_to_check(moto, table_name):
    # GIVEN no worker ever ran for this table
    # WHEN `consumer leases` runs
    result = consumer_leases(moto.url, {"CDC_TABLE_NAME": table_name})

    # THEN it exits 2 naming the lease table and saying what creates it and what to check
    assert result.returncode == 2
    assert f"lease table '{table_name}-cdc-leases' does not exist" in result.stderr
    assert "a worker creates it on its first start" in result.stderr
    assert "CDC_LEASE_TABLE or CDC_TABLE_NAME" in result.stderr
    assert result.stdout == ""


def test_a_missing_table_name_is_a_configuration_error(moto):
    # GIVEN neither CDC_TABLE_NAME nor CDC_STREAM_ARN (and no OpenSearch URL, which this command does not need)
    result = consumer_leases(moto.url, {})

    # THEN it exits 2 saying which variable to set, and says nothing about OpenSearch
    assert result.returncode == 2
    assert "CDC_TABLE_NAME" in result.stderr and "CDC_STREAM_ARN" in result.stderr
    assert "CDC_OPENSEARCH_URL" not in result.stderr
