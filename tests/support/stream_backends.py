"""The stream backends the contract tests hold to one behaviour: moto server and the test stream server.

Each backend owns one fresh table stream with a NEW_AND_OLD_IMAGES view, keyed (pk: S, sk: N), a
boto3 ``dynamodbstreams`` client, and a way to write items: moto through DynamoDB itself, the
stream server through its scripting API with a small item store that decides INSERT / MODIFY /
REMOVE and the images as DynamoDB would. Below them: small helpers the stream tests share.
"""

from __future__ import annotations

from typing import Any, Protocol

import boto3

from tests.support.stream_records import partition_hash
from tests.support.stream_server import StreamServer, streams_client
from tests.support.tables import create_table

MAX_PAGES = 200
KEY_SCHEMA = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]


class StreamBackend(Protocol):
    name: str
    table_name: str
    arn: str
    streams: Any

    def put(self, item: dict[str, Any]) -> None: ...

    def delete(self, key: dict[str, Any]) -> None: ...


def key_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"pk": item["pk"], "sk": item["sk"]}


def unknown_arn(arn: str, table_name: str) -> str:
    """An ARN shaped like ``arn`` naming a table that does not exist."""
    return arn.replace(f":table/{table_name}/", ":table/no-such-table/")


class MotoBackend:
    name = "moto"

    def __init__(self, moto_url: str, table_name: str) -> None:
        self.table_name = table_name
        self._dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=moto_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        create_table(self._dynamodb, table_name, "NEW_AND_OLD_IMAGES")
        self.arn = self._dynamodb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        self.streams = streams_client(moto_url)

    def put(self, item: dict[str, Any]) -> None:
        self._dynamodb.put_item(TableName=self.table_name, Item=item)

    def delete(self, key: dict[str, Any]) -> None:
        self._dynamodb.delete_item(TableName=self.table_name, Key=key)


class ServerBackend:
    name = "stream_server"

    def __init__(self, server: StreamServer, table_name: str, shard_count: int = 1) -> None:
        self.table_name = table_name
        self._server = server
        self.arn = server.create_stream(table_name, KEY_SCHEMA, "NEW_AND_OLD_IMAGES", shard_count)
        self.streams = server.client()
        self._items: dict[int, dict[str, Any]] = {}

    def put(self, item: dict[str, Any]) -> None:
        key = key_of(item)
        old = self._items.get(partition_hash(key))
        self._items[partition_hash(key)] = item
        self._server.put_change(self.arn, "MODIFY" if old else "INSERT", key, new_image=item, old_image=old)

    def delete(self, key: dict[str, Any]) -> None:
        old = self._items.pop(partition_hash(key), None)
        if old is not None:  # DynamoDB writes no record for deleting a missing item
            self._server.put_change(self.arn, "REMOVE", key, old_image=old)


class FakeClock:
    """Seconds since the epoch that move only when a test says so (for ``StreamServer.start(clock)``)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def put_revision(server: StreamServer, arn: str, pk: str, revision: int = 0) -> str:
    """Write revision ``revision`` of item ``pk`` (0: its INSERT) to a server stream; its sequence number."""
    image = {"pk": {"S": pk}, "revision": {"N": str(revision)}}
    event = "MODIFY" if revision else "INSERT"
    return server.put_change(arn, event, {"pk": {"S": pk}}, new_image=image).sequence_number


def read_shard(client: Any, arn: str, shard_id: str, limit: int = 1000) -> tuple[list[dict[str, Any]], bool]:
    """Every record of a shard from TRIM_HORIZON, and whether the shard ended (no next iterator)."""
    answer = client.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")
    shard_iterator = answer["ShardIterator"]
    records: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        page = client.get_records(ShardIterator=shard_iterator, Limit=limit)
        records.extend(page["Records"])
        if "NextShardIterator" not in page:
            return records, True
        if not page["Records"]:
            return records, False
        shard_iterator = page["NextShardIterator"]
    raise AssertionError(f"shard {shard_id} not read within {MAX_PAGES} pages")


def error_code(caught: Any) -> str:
    """The AWS error code of a ``pytest.raises(ClientError)`` capture."""
    return caught.value.response["Error"]["Code"]
