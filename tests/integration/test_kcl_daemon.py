"""End to end with the real Java KCL MultiLangDaemon (KCL 3.1.3 and the DynamoDB Streams Kinesis
Adapter 2.0.1, through the launcher in deploy/kcl) running ``consumer kcl-processor`` children,
against moto (the table, its stream, the KCL's tables) and osmem-server.

Two daemons share the stream. The one holding the shard is killed with -9 mid-stream and restarted
under the same worker id (a StatefulSet pod, a supervisor): it resumes its own lease at once. Then
the holder is killed and not restarted: the other daemon takes the shard over. The index converges
to the table each time. The KCL is slow
to move leases (a first start waits up to 30 s before its first shard sync, and a new leader waits
out the 2-minute lock of a dead one), so this takes a few minutes: figures are in the README.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.kcl_daemon import KclDaemon, daemon_properties
from tests.support.kcl_daemon_side import kcl_env
from tests.support.tables import create_table, index_documents, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.long]


@pytest.mark.timeout(900)  # the KCL waits up to 30 s to start and 2 min for a dead leader
def test_two_daemons_share_the_stream_and_a_killed_one_restarts_into_convergence(
    ddb, moto, search_engine, table_name, tmp_path, kcl_classpath
):
    # GIVEN a table with a history, and two daemons of one application reading its stream
    create_table(ddb, table_name)
    stream_arn = ddb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    write_random_history(ddb, table_name, changes=60, seed=41)
    application = f"{table_name}-kcl"
    env = kcl_env(moto.url, table_name, search_engine.url, None, tmp_path / "dead-letters.jsonl")
    daemons: dict[str, KclDaemon] = {}

    def start(worker: str) -> None:
        properties = daemon_properties(tmp_path / f"{worker}.properties", stream_arn, application, moto.url, worker)
        daemons[worker] = KclDaemon(kcl_classpath, properties, env, tmp_path / f"{worker}.log")

    def converged() -> bool:
        return index_documents(search_engine.url, table_name) == table_documents(ddb, table_name)

    try:
        started = time.monotonic()
        start("daemon-a")
        start("daemon-b")

        # WHEN they run, THEN the index converges to the table
        wait_until(converged, timeout=300, what="index to equal table (first start)")
        first = time.monotonic() - started
        lease = ddb.scan(TableName=application)["Items"][0]
        holder = lease["leaseOwner"]["S"]
        assert holder in daemons and "checkpointVersion" in lease

        # WHEN the holder is killed with -9 while changes keep coming, and is restarted
        daemons[holder].kill()
        write_random_history(ddb, table_name, changes=40, seed=42)
        killed_at = time.monotonic()
        start(holder)

        # THEN the index converges again: the restarted daemon resumes its own lease from its checkpoint
        wait_until(converged, timeout=420, what="index to equal table (after kill -9 and restart)")
        restarted = time.monotonic() - killed_at

        # WHEN the holder is killed again and stays down, while changes keep coming
        holder = ddb.scan(TableName=application)["Items"][0]["leaseOwner"]["S"]
        daemons[holder].kill()
        write_random_history(ddb, table_name, changes=40, seed=43)
        killed_at = time.monotonic()

        # THEN the other daemon takes the shard over and the index converges
        wait_until(converged, timeout=420, what="index to equal table (after the other daemon took over)")
        taken_over = time.monotonic() - killed_at
        survivor = ddb.scan(TableName=application)["Items"][0]["leaseOwner"]["S"]
        assert survivor != holder and survivor in daemons
        print(
            f"KCL daemon: converged {first:.0f} s after a cold start; {restarted:.0f} s after kill -9 and a restart "
            f"under the same worker id; {taken_over:.0f} s after kill -9 with the other daemon taking over"
        )
    finally:
        for daemon in daemons.values():
            daemon.stop()
    assert not (tmp_path / "dead-letters.jsonl").exists()
    # The children were told the lease table by the launcher (the daemons' environment did not name it),
    # and their log lines reached the log as they wrote them, each at its own level, none re-logged at ERROR.
    logs = "".join(daemon.log() for daemon in daemons.values())
    child_lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert "kcl_shard_initialized" in {line["event"] for line in child_lines}
    assert {line["level"] for line in child_lines} <= {"debug", "info", "warning"}, "a child logged an error"
    assert "Received error line from subprocess" not in logs


def test_a_lease_table_named_differently_in_the_environment_stops_the_daemon_with_exit_2(
    ddb, moto, table_name, tmp_path, kcl_classpath
):
    # GIVEN a daemon whose environment names a lease table other than its applicationName, which its
    # command line sets over the properties file (as an ECS task's command does)
    create_table(ddb, table_name)
    stream_arn = ddb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    application = f"{table_name}-kcl"
    env = kcl_env(moto.url, table_name, "http://127.0.0.1:9", f"{table_name}-leases", tmp_path / "dl.jsonl")
    properties = daemon_properties(tmp_path / "a.properties", stream_arn, "from-the-file", moto.url, "daemon-a")

    # WHEN it starts
    daemon = KclDaemon(kcl_classpath, properties, env, tmp_path / "a.log", (f"applicationName={application}",))
    try:
        # THEN it exits 2 before it takes a lease, naming both tables and what to do
        assert daemon.process.wait(60) == 2
        assert f"CDC_KCL_LEASE_TABLE={table_name}-leases" in daemon.log()
        assert f"its lease table is {application}" in daemon.log()
        assert "remove CDC_KCL_LEASE_TABLE" in daemon.log()
        assert application not in ddb.list_tables()["TableNames"]
    finally:
        daemon.stop()
