"""A whole ``_bulk`` body from actions, for tests and benchmarks (the sink joins lines it encoded
ahead, ``consumer.sink.opensearch``)."""

from __future__ import annotations

from collections.abc import Sequence

from consumer.pipeline.bulk import BulkOperation, bulk_body, encode_action


def bulk_of(index: str, actions: Sequence[BulkOperation]) -> bytes:
    """The NDJSON body of a ``_bulk`` request carrying these actions in order."""
    return bulk_body(encode_action(index, action) for action in actions)
