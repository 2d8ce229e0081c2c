"""Black box: the disk under the dead-letter file fills up. A worker process (its logs on a pipe,
as in a container) meets a record OpenSearch cannot hold while the files it writes may not grow
past a few hundred bytes (``RLIMIT_FSIZE``, lowered on the running process: the kernel writes what
fits, then refuses). The letter cannot be made durable, so the shard waits and says so (``/readyz``,
``cdc_dead_letter_writes_total{outcome="error"}``); once there is room again the letter is written
whole, the shard moves on, and every line of the file is a letter ``consumer redrive`` can read."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from tests.support.factories import unindexable_image
from tests.support.tables import create_table, index_documents
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration

ROOM_BYTES = 400  # a letter of the record below is far larger


def test_a_full_disk_holds_the_shard_until_the_letter_is_whole(
    ddb, moto, osmem, table_name, worker_env, start_worker, tmp_path
):
    # GIVEN a worker whose files may not grow past a few hundred bytes
    create_table(ddb, table_name)
    worker = start_worker(worker_env, logs_through_pipe=True)
    wait_until(lambda: worker.probe("/readyz")[0] == 200, timeout=60, what="the worker ready")
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.prlimit(worker.process.pid, resource.RLIMIT_FSIZE, (ROOM_BYTES, hard))

    # WHEN a record no index can hold arrives, and a valid change after it
    keys = {"pk": {"S": "poison"}, "sk": {"N": "1"}}
    ddb.put_item(TableName=table_name, Item=unindexable_image(keys))
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "after"}, "sk": {"N": "1"}, "n": {"N": "1"}})

    # THEN the shard waits, saying why, and the change after the poison record is not checkpointed past
    wait_until(
        lambda: worker.metric('cdc_dead_letter_writes_total{destination="file",outcome="error"}') >= 2,
        timeout=60,
        what="dead-letter writes failing",
    )
    status, body = worker.probe("/readyz")
    assert status == 503 and "dead-letter destination file refuses writes" in body
    assert worker.process.poll() is None

    # WHEN there is room again
    resource.prlimit(worker.process.pid, resource.RLIMIT_FSIZE, (hard, hard))

    # THEN the letter is written whole, once, the shard moves on, and redrive reads every line
    letters_path = tmp_path / "dead-letters.jsonl"
    wait_until(lambda: "after|1" in index_documents(osmem.url, table_name), timeout=60, what="the shard to move on")
    wait_until(lambda: worker.probe("/readyz")[0] == 200, timeout=30, what="ready again")
    lines = letters_path.read_bytes().splitlines()
    assert [json.loads(line)["record"]["dynamodb"]["Keys"]["pk"]["S"] for line in lines] == ["poison"]
    redrive = subprocess.run(
        [sys.executable, "-m", "consumer", "redrive", str(letters_path), "--dry-run"],
        env={**worker_env, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert redrive.returncode == 0, redrive.stdout + redrive.stderr
    assert "0 unreadable" in redrive.stdout, redrive.stdout
    assert worker.terminate() == 0
