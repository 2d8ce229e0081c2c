"""Resolve the stream to read and the table's key schema, failing early on a bad set-up."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from consumer.config import Settings, document_key_schema
from consumer.errors import StreamError, StreamSetupError
from consumer.pipeline.doc_ids import KeySchema

log = structlog.get_logger(__name__)

USABLE_VIEW_TYPES = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")


@dataclass(frozen=True)
class StreamSource:
    """The table, its stream and what the consumer needs to know about both."""

    table_name: str
    stream_arn: str
    key_schema: KeySchema
    view_type: str


def resolve_stream(dynamodb: Any, streams: Any, table_name: str, stream_arn: str | None) -> StreamSource:
    """Find the stream of ``table_name`` (or check ``stream_arn``) and validate its view type.

    Raises StreamSetupError with what to change when the table is missing, has no stream, or its
    stream does not carry new images.
    """
    table = describe_table(dynamodb, table_name)
    arn = stream_arn or table.get("LatestStreamArn")
    enabled = table.get("StreamSpecification", {}).get("StreamEnabled", False)
    if not arn or (not stream_arn and not enabled):
        raise StreamSetupError(
            f"table {table_name!r} has no stream enabled: enable one with view type NEW_AND_OLD_IMAGES "
            f"(aws dynamodb update-table --table-name {table_name} "
            "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES)"
        )
    view_type = _describe_stream(streams, arn)["StreamViewType"]
    if view_type not in USABLE_VIEW_TYPES:
        raise StreamSetupError(
            f"stream {arn} has view type {view_type}, which carries no new item images; "
            f"the index needs NEW_IMAGE or NEW_AND_OLD_IMAGES: disable the stream and enable it again "
            "with StreamViewType=NEW_AND_OLD_IMAGES, then point the consumer at the new stream"
        )
    return StreamSource(table_name, arn, KeySchema.from_table_description(table), view_type)


def read_key_schema(dynamodb: Any, table_name: str) -> KeySchema:
    """The primary key of ``table_name``, for commands that read the table but not its stream.

    Raises StreamSetupError (a ConfigError) when the table does not exist, StreamError otherwise.
    """
    return KeySchema.from_table_description(describe_table(dynamodb, table_name))


def describe_table(dynamodb: Any, table_name: str) -> dict[str, Any]:
    """DescribeTable's ``Table`` (item count and size, key schema, stream).

    Raises StreamSetupError (a ConfigError) when the table does not exist, StreamError otherwise.
    """
    try:
        return dynamodb.describe_table(TableName=table_name)["Table"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise StreamSetupError(
                f"table {table_name!r} does not exist in this account and region: check CDC_TABLE_NAME "
                "(or CDC_STREAM_ARN) and AWS_REGION"
            ) from exc
        raise StreamError(f"DescribeTable {table_name} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise StreamError(f"DescribeTable {table_name} failed: {exc}") from exc


def _describe_stream(streams: Any, stream_arn: str) -> dict[str, Any]:
    try:
        return streams.describe_stream(StreamArn=stream_arn, Limit=1)["StreamDescription"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise StreamSetupError(f"stream {stream_arn} does not exist: check CDC_STREAM_ARN") from exc
        raise StreamError(f"DescribeStream {stream_arn} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise StreamError(f"DescribeStream {stream_arn} failed: {exc}") from exc


def with_document_ids(settings: Settings, source: StreamSource) -> StreamSource:
    """``source`` with its key schema as document ids use it: key attributes that ``CDC_MASK_FIELDS``
    names are masked in ids too (``consumer.config.document_key_schema``), which is said once."""
    schema = document_key_schema(settings, source.key_schema)
    if schema.masked:
        log.info(
            "document_ids_masked",
            attributes=sorted(schema.masked),
            detail="masked key attributes appear in document ids, tombstones, logs and dead-letter "
            "metadata as their digest only (docs/operations.md, Security)",
        )
    return replace(source, key_schema=schema)
