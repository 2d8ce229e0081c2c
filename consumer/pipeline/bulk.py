"""Pure ``_bulk`` encoding and the classification of its failures (docs/operations.md, "Sink failures").

A ``BulkAction`` is one record made ready for OpenSearch: document id, external version and the
operation. ``BulkOperation`` is what writing needs of an action, so writes that come from no stream
record (``consumer.pipeline.repair``) travel the same path. ``encode_action`` turns an action into its NDJSON
lines and ``bulk_body`` joins lines into a request's body; ``classify_item`` turns one item of the response into an ``Outcome``, and
``classify_request_failure`` a failed request into a ``RequestFailure``.

The rule behind both: a failure that belongs to the record (OpenSearch refused *this* document)
is the record's; every other failure (credentials, permissions, a missing index, a write block,
throttling, an unreachable or failing cluster) is the sink's, and is waited out, because the record
is fine. Under external versioning a 409 means "this or a newer change is already indexed": the
outcome STALE, not an error. Pure and thread-safe.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Any, Literal, Protocol, Self

import orjson

from consumer.pipeline.attributes import dumps_json, item_to_json, python_item_json
from consumer.pipeline.records import StreamRecord


class Outcome(enum.Enum):
    """What became of one action."""

    APPLIED = "applied"  # OpenSearch now holds this version (or, for a delete, its tombstone)
    STALE = "stale"  # 409: an equal or newer version was already there
    RETRY = "retry"  # 429 / 5xx on the item: send it again after a pause
    BLOCKED = "blocked"  # the sink refuses writes (401/403, a write block, no index): an outage; wait
    REFUSED = "refused"  # 400: OpenSearch refused this document (mapping, parsing): divert or give up
    POISON = "poison"  # final: sending it again cannot succeed


class RequestFailure(enum.Enum):
    """What a ``_bulk`` request that failed as a whole calls for."""

    OUTAGE = "outage"  # unreachable, 5xx, 401/403 (credentials), 404 (index or endpoint): wait, resend
    THROTTLED = "throttled"  # 429: wait, resend
    TOO_LARGE = "too_large"  # 413: send smaller requests
    REJECTED = "rejected"  # another 4xx: bisect to find the actions at fault


DEFAULT_ROUTE = "default"  # the route of every item when no routes are configured (consumer.pipeline.routes)


class BulkOperation(Protocol):
    """One index or delete operation with its external version: all ``encode_action`` reads, and the
    index it goes to (None: the sink's own index). ``source`` is the document's JSON text when it is
    written already (``encode_action`` then writes that, not ``document``), and ``lines`` the whole
    operation's ``_bulk`` lines for its index when written with it (``encode_action`` returns them);
    ``with_document`` is the same operation with another document (a refused one, its conflicting
    attributes diverted)."""

    @property
    def index(self) -> str | None: ...

    @property
    def doc_id(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def op(self) -> Literal["index", "delete"]: ...

    @property
    def document(self) -> dict[str, Any] | None: ...

    @property
    def source(self) -> bytes | None: ...

    @property
    def lines(self) -> bytes | None: ...

    def with_document(self, document: dict[str, Any]) -> BulkOperation: ...


class ContentFromItem:
    """What an operation writes: its ``content`` (the document, or the document's JSON text), or its
    whole ``_bulk`` lines for its index, the document's text among them (``item_lines``; ``content``
    is then None). A text is written straight from a DynamoDB item (``attributes.python_item_json``),
    whose ``document`` is derived only when asked for (a document OpenSearch refused);
    ``_content_item`` names the item."""

    content: dict[str, Any] | bytes | None
    lines: bytes | None

    def _content_item(self) -> dict[str, Any] | None:
        raise NotImplementedError

    @cached_property
    def document(self) -> dict[str, Any] | None:
        if isinstance(self.content, bytes) or self.lines is not None:
            return item_to_json(self._content_item())  # type: ignore[arg-type]
        return self.content

    @property
    def source(self) -> bytes | None:
        if self.lines is not None:  # the document's line, after the metadata's (JSON escapes newlines)
            return self.lines[self.lines.index(b"\n") + 1 : -1]
        return self.content if isinstance(self.content, bytes) else None

    def with_document(self, document: dict[str, Any]) -> Self:
        return replace(self, content=document, lines=None)  # type: ignore[type-var]


@dataclass(frozen=True, init=False)
class BulkAction(ContentFromItem):
    """One record turned into one index or delete operation in one index (None: the sink's own).

    A record makes one action, or two when its item changes route or index: the document in the new
    index, and the ``companion`` tombstone in the old one (``consumer.pipeline.projection``).

    ``content`` is the document, or None when the action's ``lines`` for ``index`` hold the text of
    the record's NewImage written straight from it (the item as it is: ``ContentFromItem``)."""

    record: StreamRecord
    doc_id: str
    version: int
    op: Literal["index", "delete"]
    content: dict[str, Any] | bytes | None
    index: str | None = None
    route: str = DEFAULT_ROUTE
    companion: bool = False
    lines: bytes | None = None

    def __init__(
        self,
        record: StreamRecord,
        doc_id: str,
        version: int,
        op: Literal["index", "delete"],
        content: dict[str, Any] | bytes | None,
        index: str | None = None,
        route: str = DEFAULT_ROUTE,
        companion: bool = False,
        lines: bytes | None = None,
    ) -> None:
        # every field in one assignment: a frozen dataclass's generated __init__ sets them one call at a
        # time, a cost every record pays
        object.__setattr__(
            self,
            "__dict__",
            {
                "record": record,
                "doc_id": doc_id,
                "version": version,
                "op": op,
                "content": content,
                "index": index,
                "route": route,
                "companion": companion,
                "lines": lines,
            },
        )

    def _content_item(self) -> dict[str, Any] | None:
        return self.record.new_image


# The metadata line orjson writes of {op: {"_index": …, "_id": …, "version": …, "version_type": "external"}},
# formatted directly: its head (op is "index" or "delete", the index written by orjson), the id written
# by orjson, then the rest
_META_TAIL = b',"version":%d,"version_type":"external"}}\n'


@lru_cache(maxsize=1024)
def meta_head(op: Literal["index", "delete"], index: str) -> bytes:
    """The metadata line of an ``op`` in ``index`` up to its id: one per index, so cached."""
    return b'{"%b":{"_index":%b,"_id":' % (op.encode(), orjson.dumps(index))


def encode_action(index: str, action: BulkOperation) -> bytes:
    """The NDJSON lines of one action (metadata, then the document of an index), newline-terminated."""
    if action.lines is not None and index == action.index:
        return action.lines
    meta = meta_head(action.op, index) + orjson.dumps(action.doc_id) + _META_TAIL % action.version
    source = action.source
    if source is None and action.document is not None:
        source = dumps_json(action.document)
    if source is None:
        return meta
    return meta + source + b"\n"


def python_item_lines(
    item: dict[str, Any], reserved: frozenset[str], head: bytes, doc_id: str, version: int
) -> bytes | None:
    """The ``_bulk`` lines of indexing the item as it is (``attributes.python_item_json(item, reserved)``)
    under ``doc_id`` at ``version``, ``head`` being ``meta_head("index", index)``: what
    ``encode_action`` writes of that action. None for the caller's Python path to decide:
    where ``python_item_json`` answers None, and for an id that is not JSON or a version beyond 64 bits.
    The definition; compiled in ``_attributes_text.c``."""
    try:
        id_json = orjson.dumps(doc_id)
    except orjson.JSONEncodeError:
        return None
    if not -(1 << 63) <= version < 1 << 63:
        return None
    text = python_item_json(item, reserved)
    if text is None:
        return None
    return head + id_json + _META_TAIL % version + text + b"\n"


def python_image_lines(text: bytes, reserved: frozenset[str], head: bytes, doc_id: str, version: int) -> bytes | None:
    """``item_lines`` of an item image given as its DynamoDB JSON text (``records.ImageText``: an image
    a GetRecords answer spelt), the image parsed. The definition; compiled in ``_attributes_images.c``,
    which writes the lines straight from the text and answers None for every image but the plain ones
    (the caller then parses the image and calls ``item_lines``)."""
    return item_lines(orjson.loads(text), reserved, head, doc_id, version)


try:
    from consumer.pipeline._attributes import image_lines as compiled_image_lines
    from consumer.pipeline._attributes import item_lines as compiled_item_lines
except ImportError:  # built without a C compiler: the Python definitions serve
    item_lines = python_item_lines
    image_lines = python_image_lines
else:
    item_lines = compiled_item_lines
    image_lines = compiled_image_lines


def bulk_body(lines: Iterable[bytes]) -> bytes:
    """The NDJSON body of a ``_bulk`` request: the actions' lines (``encode_action``) in order."""
    return b"".join(lines)


def classify_item(item: dict[str, Any]) -> tuple[Outcome, str | None]:
    """Outcome and error text of one ``items[]`` entry of a ``_bulk`` response."""
    ((op, result),) = item.items()
    status = int(result.get("status", 500))
    if 200 <= status < 300:
        return Outcome.APPLIED, None
    error = result.get("error")
    if op == "delete" and status == 404 and _error_type(error) != "index_not_found_exception":
        # Deleting a document that is not there still records the tombstone version.
        return Outcome.APPLIED, None
    text = _error_text(error, status)
    if status == 409:
        return Outcome.STALE, text
    if status == 429 or status >= 500:
        return Outcome.RETRY, text
    if status in (401, 403, 404):
        # Credentials, permissions, a write block (cluster_block_exception: read-only, or
        # read-only-allow-delete after a full disk), no index: the sink's failure, not the record's.
        return Outcome.BLOCKED, text
    if status == 400:
        return Outcome.REFUSED, text
    return Outcome.POISON, text


def classify_request_failure(status: int | None) -> RequestFailure:
    """What a ``_bulk`` request that failed as a whole with HTTP ``status`` (None: no answer) calls for."""
    if status == 429:
        return RequestFailure.THROTTLED
    if status == 413:
        return RequestFailure.TOO_LARGE
    if status is None or status >= 500 or status in (401, 403, 404, 408):
        return RequestFailure.OUTAGE
    return RequestFailure.REJECTED


def _error_type(error: Any) -> str | None:
    return error.get("type") if isinstance(error, dict) else None


def _error_text(error: Any, status: int) -> str:
    if isinstance(error, dict):
        return f"{status} {error.get('type')}: {error.get('reason')}"
    return f"{status} {error}"
