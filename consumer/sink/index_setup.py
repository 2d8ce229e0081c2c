"""Index bootstrap: the physical index, the tombstone fields' mapping and the filtered read alias.

Deletes are written as tombstone documents (``consumer.projection.tombstone``), so the physical index
holds deleted items too. Applications search the *read alias* (``CDC_OPENSEARCH_READ_ALIAS``,
default ``<index>-live``), whose filter hides every tombstone. ``ensure_index`` is idempotent and
safe to run from every worker at once: it creates the index when missing (with ``_cdc_deleted`` as
a boolean and ``_cdc_deleted_at`` as a date in epoch seconds, so the filter and the reaper's range
query work), otherwise puts the mapping of those two fields, then adds the alias (adding an alias
that exists already changes nothing).

Raises SinkError for failures worth retrying (connection, 429, 5xx) and ConfigError for the others
(e.g. a mapping conflict, or no permission).
"""

from __future__ import annotations

from typing import Any

import structlog
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from consumer.errors import ConfigError, SinkError
from consumer.projection import DELETED_AT_FIELD, DELETED_FIELD

log = structlog.get_logger(__name__)

TOMBSTONE_MAPPING: dict[str, Any] = {
    "properties": {
        DELETED_FIELD: {"type": "boolean"},
        DELETED_AT_FIELD: {"type": "date", "format": "epoch_second"},
    }
}
LIVE_FILTER: dict[str, Any] = {"bool": {"must_not": {"term": {DELETED_FIELD: True}}}}


def ensure_index(client: OpenSearch, index: str, read_alias: str) -> bool:
    """Create ``index`` if missing, map the tombstone fields, add the filtered ``read_alias``.

    Returns True when this call created the index.
    """
    created = False
    try:
        if not client.indices.exists(index=index):
            created = _create(client, index)
        if not created:
            client.indices.put_mapping(index=index, body=TOMBSTONE_MAPPING)
        client.indices.update_aliases(
            body={"actions": [{"add": {"index": index, "alias": read_alias, "filter": LIVE_FILTER}}]}
        )
    except OpenSearchConnectionError as exc:
        raise SinkError(f"OpenSearch unreachable while setting up index {index!r}: {exc}") from exc
    except TransportError as exc:
        status = exc.status_code if isinstance(exc.status_code, int) else 0
        text = f"setting up index {index!r} and read alias {read_alias!r} failed: {status} {exc.error}: {exc.info}"
        if status == 0 or status == 429 or status >= 500:
            raise SinkError(text) from exc
        raise ConfigError(text) from exc
    log.info("index_ready", index=index, read_alias=read_alias, created=created)
    return created


def _create(client: OpenSearch, index: str) -> bool:
    try:
        client.indices.create(index=index, body={"mappings": TOMBSTONE_MAPPING})
    except TransportError as exc:
        if exc.status_code == 400 and exc.error == "resource_already_exists_exception":
            return False  # another worker created it in between
        raise
    return True
