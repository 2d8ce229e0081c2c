"""The daemon's side of the KCL multilang protocol, for tests: a ``consumer kcl-processor`` child
driven with JSON lines, a KCL-shaped lease table, and stream records wrapped as the DynamoDB
Streams adapter wraps them.

``KclChild`` plays what ``MultiLangShardRecordProcessor`` does: it writes one message, answers each
``checkpoint`` the child asks for (writing the checkpoint to the lease item, as the KCL does, unless
told to refuse it), and returns when the child reports ``status``.
"""

from __future__ import annotations

import base64
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson

from tests.support.emulators import aws_env


def create_kcl_lease_table(ddb: Any, name: str) -> None:
    """A lease table as the KCL creates it (hash key ``leaseKey``)."""
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def put_kcl_lease(
    ddb: Any, table: str, shard_id: str, checkpoint: str = "TRIM_HORIZON", parents: list[str] = ()
) -> None:
    item = {
        "leaseKey": {"S": shard_id},
        "leaseOwner": {"S": "daemon-1"},
        "leaseCounter": {"N": "1"},
        "checkpoint": {"S": checkpoint},
        "checkpointSubSequenceNumber": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
    }
    if parents:
        item["parentShardId"] = {"SS": list(parents)}
    ddb.put_item(TableName=table, Item=item)


def kcl_record(wire: dict[str, Any]) -> dict[str, Any]:
    """A GetRecords record as the adapter hands it to multilang: base64 JSON ``data`` with
    ApproximateCreationDateTime in milliseconds and empty objects for absent images."""
    body = dict(wire["dynamodb"])
    body["ApproximateCreationDateTime"] = int(round(float(body["ApproximateCreationDateTime"]) * 1000))
    body.setdefault("NewImage", {})
    body.setdefault("OldImage", {})
    data = base64.b64encode(orjson.dumps({**wire, "dynamodb": body})).decode()
    sequence_number = body["SequenceNumber"]
    return {
        "action": "record",
        "data": data,
        "partitionKey": sequence_number,
        "sequenceNumber": sequence_number,
        "subSequenceNumber": 0,
        "approximateArrivalTimestamp": body["ApproximateCreationDateTime"],
    }


class KclChild:
    """One ``consumer kcl-processor`` process. Always ``close()`` it."""

    def __init__(self, env: dict[str, str], ddb: Any, lease_table: str, stderr_path: Path) -> None:
        self.ddb = ddb
        self.lease_table = lease_table
        self.refusals: list[str] = []  # error names to answer the next checkpoints with, in order
        self.checkpoints: list[str | None] = []
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 (closed in close)
        self.stderr_path = stderr_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "consumer", "kcl-processor"],
            env={"PATH": os.environ.get("PATH", ""), **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self._lines.put(line)
        self._lines.put(None)

    def send_line(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def next_message(self, timeout: float = 60) -> dict[str, Any] | None:
        """The child's next protocol message; None when its stdout closed."""
        line = self._lines.get(timeout=timeout)
        return None if line is None else orjson.loads(line)

    def exchange(self, message: dict[str, Any], shard_id: str | None = None, timeout: float = 60) -> dict[str, Any]:
        """Send ``message``, answer the child's checkpoints, and return its final status."""
        self.send_line(orjson.dumps(message))
        while True:
            reply = self.next_message(timeout)
            if reply is None:
                raise AssertionError(f"the child exited ({self.process.wait(10)}):\n{self.stderr()}")
            if reply["action"] == "status":
                return reply
            assert reply["action"] == "checkpoint", reply
            self._answer_checkpoint(reply["sequenceNumber"], shard_id)

    def _answer_checkpoint(self, sequence_number: str | None, shard_id: str | None) -> None:
        error = self.refusals.pop(0) if self.refusals else None
        if error is None and shard_id is not None:
            self.ddb.update_item(
                TableName=self.lease_table,
                Key={"leaseKey": {"S": shard_id}},
                UpdateExpression="SET checkpoint = :c",
                ExpressionAttributeValues={":c": {"S": sequence_number or "SHARD_END"}},
            )
        if error is None:
            self.checkpoints.append(sequence_number)
        self.send_line(
            orjson.dumps(
                {"action": "checkpoint", "sequenceNumber": sequence_number, "subSequenceNumber": 0, "error": error}
            )
        )

    def close_input(self, timeout: float = 30) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._stderr.close()


def kcl_env(
    moto_url: str, table: str, opensearch_url: str, lease_table: str | None, dead_letters: Path
) -> dict[str, str]:
    """A processor's environment. ``lease_table`` None: under the launcher, which tells each child its table."""
    return {
        **aws_env(moto_url),
        "CDC_TABLE_NAME": table,
        "CDC_OPENSEARCH_URL": opensearch_url,
        **({"CDC_KCL_LEASE_TABLE": lease_table} if lease_table else {}),
        "CDC_DEAD_LETTER_PATH": str(dead_letters),
        "CDC_RETRY_BASE_SECONDS": "0.05",
        "CDC_RETRY_MAX_DELAY_SECONDS": "0.5",
    }
