"""Every Streams error code the tasks act on maps to its own error, on the wire path and botocore's
alike; any other code is a plain StreamError that names it."""

from __future__ import annotations

import pytest

from consumer.errors import IteratorExpiredError, ShardNotFoundError, StreamError, ThrottledError, TrimmedDataError
from consumer.shards.stream_errors import stream_error


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ExpiredIteratorException", IteratorExpiredError),
        ("TrimmedDataAccessException", TrimmedDataError),
        ("ResourceNotFoundException", ShardNotFoundError),
        ("LimitExceededException", ThrottledError),
        ("ThrottlingException", ThrottledError),
        ("ProvisionedThroughputExceededException", ThrottledError),
        ("RequestLimitExceeded", ThrottledError),
        ("InternalServerError", StreamError),
        ("", StreamError),
    ],
)
def test_each_code_becomes_the_error_its_handling_needs(code, expected):
    error = stream_error("get_records", code, "the service's message")
    assert type(error) is expected
    assert str(error) == f"get_records failed: {code or 'error'}: the service's message"
