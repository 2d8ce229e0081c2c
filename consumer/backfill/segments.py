"""Backfill segments as leases (pure): their keys, their checkpoints, how many to make.

A backfill scans the table in ``total`` parallel Scan segments (``TotalSegments``). Each segment is a
lease in the workers' lease table, keyed ``backfill:<segment>/<total>``, so any number of
``consumer backfill`` processes (or workers, ``CDC_BACKFILL=on-new-index``) share the work the way
workers share shards: whoever holds a segment's lease scans it, checkpointing the Scan's
``LastEvaluatedKey`` after every page it settled; a process that dies leaves the lease to expire, and
the next taker resumes from the checkpoint. The checkpoint is ``TRIM_HORIZON`` before the first page,
the key (JSON, AttributeValue form) after a page, ``SHARD_END`` once the segment is done.

Thread-safe (pure functions).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from consumer.errors import ConfigError
from consumer.leases.model import SEGMENT_PREFIX, SHARD_END, TRIM_HORIZON, Lease

MAX_SEGMENTS = 1_000_000  # DynamoDB's TotalSegments limit
BYTES_PER_SEGMENT = 256 * 1024 * 1024
DEFAULT_MAX_SEGMENTS = 64


def segment_key(segment: int, total: int) -> str:
    return f"{SEGMENT_PREFIX}{segment}/{total}"


def parse_key(key: str) -> tuple[int, int]:
    """``(segment, total)`` of a backfill lease key. Raises ValueError for another key."""
    if not key.startswith(SEGMENT_PREFIX):
        raise ValueError(f"{key!r} is not a backfill segment")
    segment, _, total = key[len(SEGMENT_PREFIX) :].partition("/")
    return int(segment), int(total)


def segment_leases(total: int) -> list[Lease]:
    """The leases of a backfill in ``total`` segments, each at its start."""
    if not 1 <= total <= MAX_SEGMENTS:
        raise ConfigError(f"CDC_BACKFILL_SEGMENTS={total}: expected 1 … {MAX_SEGMENTS} (DynamoDB's TotalSegments)")
    return [
        Lease(segment_key(segment, total), owner=None, counter=0, checkpoint=TRIM_HORIZON) for segment in range(total)
    ]


def default_segments(table_size_bytes: int) -> int:
    """One segment per 256 MiB of table (DescribeTable's TableSizeBytes, refreshed about every 6 h),
    at least 1 and at most 64: enough to spread a big table over many processes, few enough that a
    small table is not cut into empty scans."""
    return max(1, min(DEFAULT_MAX_SEGMENTS, math.ceil(table_size_bytes / BYTES_PER_SEGMENT)))


def encode_position(last_evaluated_key: dict[str, Any] | None) -> str:
    """The checkpoint after a page: where the next page starts (its ``LastEvaluatedKey`` in wire
    form), or SHARD_END when the segment is done."""
    if not last_evaluated_key:
        return SHARD_END
    return orjson.dumps(last_evaluated_key, option=orjson.OPT_SORT_KEYS).decode()


def decode_position(checkpoint: str) -> dict[str, Any] | None:
    """The ``ExclusiveStartKey`` (wire form) a segment resumes from (None: from its start). Raises
    ValueError for a checkpoint that is no backfill position."""
    if checkpoint == TRIM_HORIZON:
        return None
    key = orjson.loads(checkpoint)
    if not isinstance(key, dict) or not key or not all(isinstance(v, dict) for v in key.values()):
        raise ValueError(f"backfill checkpoint {checkpoint[:80]!r} is not a Scan key")
    return key
