"""The tombstone reaper: deletes tombstones older than the retention (pure plan + thin I/O).

A tombstone (``consumer.pipeline.projection.tombstone``) keeps a deleted item's external version so a stale
replay answers 409. Once it is removed, OpenSearch's own delete tombstone protects the id only for
``index.gc_deletes`` (60 s), so a tombstone may be reaped only when no stale write of its item can
still arrive: after the stream's 24 h retention plus the longest pause of a zombie writer
(docs/versioning.md, "Deletes"). consumer.config enforces that rule on
``CDC_TOMBSTONE_RETENTION_SECONDS`` and holds its default.

One pass (``Reaper.reap_once``) searches up to ``page_size`` tombstones whose ``_cdc_deleted_at`` is
at most ``now − retention`` and deletes them with ``if_seq_no`` / ``if_primary_term`` from the
search hit: a document re-inserted (or written again) after the search has another sequence number,
so its delete answers 409 and it is kept. Reaping is idempotent, and several workers may reap at
once: a tombstone another worker already reaped answers 404 or 409.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from consumer.errors import SinkError
from consumer.pipeline.service_fields import DELETED_AT_FIELD, DELETED_FIELD

log = structlog.get_logger(__name__)

PAGE_SIZE = 1000


@dataclass(frozen=True)
class ReapDelete:
    """Delete one tombstone of one index, only if unchanged since the search that found it."""

    index: str
    doc_id: str
    seq_no: int
    primary_term: int


@dataclass(frozen=True)
class ReapResult:
    """One pass: tombstones deleted, kept (changed since the search, or already gone), failed;
    ``more`` when the search page was full (another pass may find more)."""

    deleted: int = 0
    kept: int = 0
    failed: int = 0
    more: bool = False


def cutoff(now: float, retention_seconds: int) -> int:
    """Tombstones deleted at or before this Unix second are due."""
    return int(now) - int(retention_seconds)


def reap_query(now: float, retention_seconds: int, size: int = PAGE_SIZE) -> dict[str, Any]:
    """The search body that finds due tombstones, with what a conditional delete needs."""
    return {
        "query": {
            "bool": {
                "filter": [
                    {"term": {DELETED_FIELD: True}},
                    {"range": {DELETED_AT_FIELD: {"lte": cutoff(now, retention_seconds)}}},
                ]
            }
        },
        "size": size,
        "seq_no_primary_term": True,
        "_source": [DELETED_FIELD, DELETED_AT_FIELD],
        "sort": [{DELETED_AT_FIELD: "asc"}],
    }


def plan_reap(hits: Iterable[dict[str, Any]], now: float, retention_seconds: int) -> list[ReapDelete]:
    """The deletes for the search hits that are tombstones due for reaping; anything else is left alone."""
    due = cutoff(now, retention_seconds)
    deletes = []
    for hit in hits:
        source = hit.get("_source") or {}
        deleted_at = source.get(DELETED_AT_FIELD)
        seq_no, term = hit.get("_seq_no"), hit.get("_primary_term")
        if source.get(DELETED_FIELD) is not True or not isinstance(deleted_at, int | float) or deleted_at > due:
            continue
        if not isinstance(seq_no, int) or not isinstance(term, int):
            continue
        deletes.append(ReapDelete(str(hit["_index"]), str(hit["_id"]), seq_no, term))
    return deletes


def encode_reap(deletes: Sequence[ReapDelete]) -> bytes:
    """The NDJSON ``_bulk`` body of conditional deletes."""
    lines = [
        orjson.dumps(
            {"delete": {"_index": d.index, "_id": d.doc_id, "if_seq_no": d.seq_no, "if_primary_term": d.primary_term}}
        )
        for d in deletes
    ]
    return b"\n".join([*lines, b""])


def summarize_reap(items: Iterable[dict[str, Any]], more: bool) -> ReapResult:
    """Count the ``_bulk`` items: 2xx deleted; 404 (already reaped) and 409 (changed since) kept."""
    deleted = kept = failed = 0
    for item in items:
        ((_, result),) = item.items()
        status = int(result.get("status", 500))
        if 200 <= status < 300:
            deleted += 1
        elif status in (404, 409):
            kept += 1
        else:
            failed += 1
    return ReapResult(deleted, kept, failed, more)


class Reaper:
    """Reaps the tombstones of the indices ``index`` names: one index, or several and wildcard
    patterns, comma-separated (the routes' indices). Thread-safe (opensearch-py's client is)."""

    def __init__(
        self,
        client: OpenSearch,
        index: str,
        retention_seconds: int,
        clock: Callable[[], float] = time.time,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._client = client
        self._index = index
        self._retention = retention_seconds
        self._clock = clock
        self._page_size = page_size

    def reap_once(self) -> ReapResult:
        """One bounded pass. Raises SinkError when OpenSearch fails (the next pass tries again)."""
        now = self._clock()
        try:
            response = self._client.search(
                index=self._index,
                body=reap_query(now, self._retention, self._page_size),
                ignore_unavailable=True,
                allow_no_indices=True,
            )
            hits = response["hits"]["hits"]
            deletes = plan_reap(hits, now, self._retention)
            if not deletes:
                return ReapResult(more=False)
            indices = {d.index for d in deletes}
            path_index = indices.pop() if len(indices) == 1 else None  # IAM may grant _bulk on that index alone
            answer = self._client.bulk(body=encode_reap(deletes), index=path_index, filter_path="items.*.status")
        except (OpenSearchConnectionError, TransportError) as exc:
            raise SinkError(f"reaping tombstones of {self._index!r} failed: {exc}") from exc
        result = summarize_reap(answer.get("items", []), more=len(hits) >= self._page_size)
        log.info("tombstones_reaped", index=self._index, deleted=result.deleted, kept=result.kept, failed=result.failed)
        return result
