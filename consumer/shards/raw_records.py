"""GetRecords straight off the wire (``consumer.aws.json_client``): the records in the wire form that
``consumer.pipeline.records.StreamRecord.from_wire`` reads, errors mapped by the same table as botocore's
(``consumer.shards.stream_errors``).

An answer is read by ``read_answer``: each record's OldImage and NewImage are cut out of its text before
the rest is parsed (``consumer/pipeline/_attributes_pages.c``) and kept as ``ImageText``s, parsed only
when a record needs them (a route, a transform, a filter, a TTL mark, a dead letter); a plain INSERT,
MODIFY or REMOVE never does, its NewImage written as a document straight from its text
(``consumer.pipeline.bulk.image_lines``). A page's parse was most of a worker's CPU per record
(``make bench``: the bulk path's (p) against (p'), the answers parsed whole).

Thread-safe.
"""

from __future__ import annotations

from typing import Any

import orjson

from consumer.aws.accounting import Observer
from consumer.aws.clock import AwsClock
from consumer.aws.json_client import WireCallError, WireClient, WireError, parse_answer
from consumer.errors import StreamError
from consumer.pipeline.records import ImageText
from consumer.shards.stream_errors import stream_error

try:
    from consumer.pipeline._attributes import cut_images
except ImportError:  # built without a C compiler: answers are parsed whole
    cut_images = None

# Where an answer does not spell this, it has no image to cut (a KEYS_ONLY stream's, a page of
# REMOVEs of a NEW_IMAGE stream): it is parsed whole without being scanned first.
IMAGE_NAME_END = b'Image"'


class RawGetRecords:
    """GetRecords through a boto3 ``dynamodbstreams`` client's endpoint; each call timed and its
    outcome reported as ``get_records`` (``consumer.aws.json_client``)."""

    def __init__(self, client: Any, observe: Observer | None = None, aws_clock: AwsClock | None = None) -> None:
        self._wire = WireClient(client, "DynamoDBStreams_20120810", aws_clock=aws_clock, observe=observe)

    def get_records(self, iterator: str, limit: int) -> tuple[list[dict[str, Any]], str | None, int]:
        """The page's records (wire form), its next iterator (None at shard end) and its size in bytes."""
        request = {"ShardIterator": iterator, "Limit": limit}
        try:
            answer, size = self._wire.call("GetRecords", request, report_as="get_records", parse=read_answer)
        except WireCallError as exc:
            raise stream_error("get_records", exc.code or str(exc.status), exc.message) from exc
        except WireError as exc:
            raise StreamError(f"get_records failed: {exc}") from exc
        return answer.get("Records", []), answer.get("NextShardIterator"), size


def read_answer(operation: str, body: bytes, content_type: str) -> dict[str, Any]:
    """A GetRecords answer as ``parse_answer`` reads it (its errors included), each record's OldImage
    and NewImage objects left as ``ImageText``s where the answer allows it (``cut_images`` says)."""
    cut = cut_images(body) if cut_images is not None and IMAGE_NAME_END in body else None
    if cut is None:
        return parse_answer(operation, body, content_type)
    text, images = cut
    try:
        answer = orjson.loads(text)
    except orjson.JSONDecodeError:
        return parse_answer(operation, body, content_type)  # raises: the answer's own error, on its own text
    records = answer["Records"]
    for index, name, image in images:
        records[index]["dynamodb"][name] = ImageText(image)
    return answer
