"""Pure ``_bulk`` encoding and result classification.

A ``BulkAction`` is one record made ready for OpenSearch: document id, external version and the
operation. ``BulkOperation`` is what writing needs of an action, so writes that come from no stream
record (``consumer.repair``) travel the same path. ``encode_bulk`` turns actions into the NDJSON body; ``classify_item`` turns one item of
the response into an ``Outcome``. Under external versioning a 409 means "this or a newer change is
already indexed", so it is the outcome STALE, not an error. Pure and thread-safe.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from consumer.records import StreamRecord


class Outcome(enum.Enum):
    """What became of one action."""

    APPLIED = "applied"  # OpenSearch now holds this version (or, for a delete, its tombstone)
    STALE = "stale"  # 409: an equal or newer version was already there
    RETRY = "retry"  # 429 / 5xx on the item: send it again
    POISON = "poison"  # 4xx other than 409/429: sending it again cannot succeed


class BulkOperation(Protocol):
    """One index or delete operation with its external version: all ``encode_bulk`` reads."""

    @property
    def doc_id(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def op(self) -> Literal["index", "delete"]: ...

    @property
    def document(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class BulkAction:
    """One record turned into one index or delete operation."""

    record: StreamRecord
    doc_id: str
    version: int
    op: Literal["index", "delete"]
    document: dict[str, Any] | None


def encode_bulk(index: str, actions: Sequence[BulkOperation]) -> bytes:
    """The NDJSON body of a ``_bulk`` request carrying these actions in order."""
    lines: list[bytes] = []
    for action in actions:
        meta = {"_index": index, "_id": action.doc_id, "version": action.version, "version_type": "external"}
        lines.append(orjson.dumps({action.op: meta}))
        if action.document is not None:
            lines.append(orjson.dumps(action.document))
    lines.append(b"")
    return b"\n".join(lines)


def classify_item(item: dict[str, Any]) -> tuple[Outcome, str | None]:
    """Outcome and error text of one ``items[]`` entry of a ``_bulk`` response."""
    ((op, result),) = item.items()
    status = int(result.get("status", 500))
    if 200 <= status < 300:
        return Outcome.APPLIED, None
    if op == "delete" and status == 404:
        # Deleting a document that is not there still records the tombstone version.
        return Outcome.APPLIED, None
    error = _error_text(result.get("error"), status)
    if status == 409:
        return Outcome.STALE, error
    if status == 429 or status >= 500:
        return Outcome.RETRY, error
    return Outcome.POISON, error


def _error_text(error: Any, status: int) -> str:
    if isinstance(error, dict):
        return f"{status} {error.get('type')}: {error.get('reason')}"
    return f"{status} {error}"
