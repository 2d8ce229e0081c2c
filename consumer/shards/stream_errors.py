"""The DynamoDB Streams error codes, as the stream errors the shard tasks handle (one table for the
wire path and botocore's)."""

from __future__ import annotations

from consumer.aws.accounting import THROTTLING_CODES
from consumer.errors import IteratorExpiredError, ShardNotFoundError, StreamError, ThrottledError, TrimmedDataError

_BY_CODE: dict[str, type[StreamError]] = {
    "ExpiredIteratorException": IteratorExpiredError,
    "TrimmedDataAccessException": TrimmedDataError,
    "ResourceNotFoundException": ShardNotFoundError,
    **{code: ThrottledError for code in THROTTLING_CODES},
}


def stream_error(operation: str, code: str, detail: object) -> StreamError:
    """The error to raise for a Streams call that failed with ``code`` (``StreamError`` for any code
    not named here)."""
    return _BY_CODE.get(code, StreamError)(f"{operation} failed: {code or 'error'}: {detail}")
