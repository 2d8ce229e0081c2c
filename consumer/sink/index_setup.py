"""Index bootstrap: the physical index with the mapping policy, and the filtered read alias.

Deletes are written as tombstone documents (``consumer.pipeline.projection.tombstone``), so the physical index
holds deleted items too. Applications search the *read alias* (``CDC_OPENSEARCH_READ_ALIAS``,
default ``<index>-live``), whose filter hides every tombstone.

``ensure_index`` is idempotent and safe to run from every worker at once, before any worker writes:
it creates the index when missing with the settings and mappings of ``consumer.pipeline.mapping``
(so no document depends on which one arrives first); on an index that exists it adds what is
missing (the service's fields, the key attributes, the dynamic templates) and warns about key
attributes mapped with a type that cannot hold every key; then it adds the alias (adding an alias
that exists already changes nothing).

Raises SinkError for failures worth retrying (connection, 429, 5xx) and ConfigError for the others
(e.g. a mapping conflict, or no permission).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from consumer.errors import ConfigError, ConsumerError, SinkError
from consumer.pipeline.doc_ids import KeySchema
from consumer.pipeline.mapping import (
    NO_TEMPLATE,
    IndexTemplate,
    MappingMode,
    existing_index_mapping,
    index_body,
    key_mapping_problems,
)
from consumer.pipeline.service_fields import DELETED_FIELD

log = structlog.get_logger(__name__)

GENERATION_META = "cdc_generation"  # the key of an index's ``_meta`` that records its generation
LIVE_FILTER: dict[str, Any] = {"bool": {"must_not": {"term": {DELETED_FIELD: True}}}}


def ensure_index(
    client: OpenSearch,
    index: str,
    read_alias: str,
    schema: KeySchema,
    mode: MappingMode = "managed",
    template: IndexTemplate = NO_TEMPLATE,
    also_aliases: Sequence[str] = (),
    plain_aliases: Sequence[str] = (),
    generation: Mapping[str, Any] | None = None,
) -> bool:
    """Create or update ``index`` as the module docstring says and add the filtered ``read_alias``
    (and ``also_aliases``, e.g. the alias over all indices of a templated route) and the unfiltered
    ``plain_aliases``; no alias when ``read_alias`` is None (a generation being built).

    ``generation``: what the index's ``_meta`` records of the generation it belongs to
    (``consumer.pipeline.generations``); an index whose ``_meta`` records another fingerprint is
    refused (ConfigError): no index ever holds documents of two shapes.

    Returns True when this call created the index.
    """
    body = index_body(schema, mode, template)  # raises ConfigError before anything is written
    if generation is not None:
        body["mappings"]["_meta"] = {GENERATION_META: dict(generation)}
    created = False
    try:
        if not client.indices.exists(index=index):
            created = _create(client, index, body)
        if not created:
            _update(client, index, schema, mode, template, generation)
        actions = [
            {"add": {"index": index, "alias": alias, "filter": LIVE_FILTER}}
            for alias in ([read_alias, *also_aliases] if read_alias is not None else [])
        ] + [{"add": {"index": index, "alias": alias}} for alias in plain_aliases]
        if actions:
            client.indices.update_aliases(body={"actions": actions})
    except (OpenSearchConnectionError, TransportError) as exc:
        raise _setup_error(exc, f"setting up index {index!r} and read alias {read_alias!r}") from exc
    log.info("index_ready", index=index, read_alias=read_alias, created=created, mapping_mode=mode)
    return created


def put_index_template(client: OpenSearch, name: str, pattern: str, body: dict[str, Any], priority: int) -> None:
    """An index template that gives every index matching ``pattern`` the service's settings and mapping
    (``body``: ``consumer.pipeline.mapping.index_body``) even when something else creates it.

    Raises SinkError for failures worth retrying and ConfigError for the others (e.g. a user's own
    template for the same pattern at the same priority)."""
    try:
        client.indices.put_index_template(
            name=name, body={"index_patterns": [pattern], "priority": priority, "template": body}
        )
    except (OpenSearchConnectionError, TransportError) as exc:
        raise _setup_error(exc, f"putting index template {name!r} for {pattern!r}") from exc


def _setup_error(exc: TransportError, what: str) -> ConsumerError:
    """SinkError (retry) for no answer, 429 and 5xx; ConfigError for the others."""
    if isinstance(exc, OpenSearchConnectionError):
        return SinkError(f"OpenSearch unreachable while {what}: {exc}")
    status = exc.status_code if isinstance(exc.status_code, int) else 0
    text = f"{what} failed: {status} {exc.error}: {exc.info}"
    if status == 0 or status == 429 or status >= 500:
        return SinkError(text)
    return ConfigError(text)


def read_mapping(client: OpenSearch, index: str) -> Mapping[str, Any]:
    """The index's current ``mappings`` (``properties``, ``dynamic``, ...).

    Raises:
        SinkError: when OpenSearch cannot answer (the caller retries its batch).
    """
    try:
        answer = client.indices.get_mapping(index=index)
    except (OpenSearchConnectionError, TransportError) as exc:
        raise SinkError(f"reading the mapping of index {index!r} failed: {exc}") from exc
    # The answer is keyed by the concrete index name (the one asked for, or the one an alias names).
    for body in answer.values():
        if isinstance(body, dict):
            return body.get("mappings") or {}
    return {}


def _create(client: OpenSearch, index: str, body: dict[str, Any]) -> bool:
    try:
        client.indices.create(index=index, body=body)
    except TransportError as exc:
        if exc.status_code == 400 and exc.error == "resource_already_exists_exception":
            return False  # another worker created it in between
        raise
    return True


def _update(
    client: OpenSearch,
    index: str,
    schema: KeySchema,
    mode: MappingMode,
    template: IndexTemplate,
    generation: Mapping[str, Any] | None,
) -> None:
    current = read_mapping(client, index)
    recorded = (current.get("_meta") or {}).get(GENERATION_META) or {}
    if generation is not None and recorded.get("fingerprint") not in (None, generation.get("fingerprint")):
        raise ConfigError(
            f"index {index!r} holds the documents of generation {recorded.get('generation')} (fingerprint "
            f"{recorded.get('fingerprint')}), not this configuration's ({generation.get('fingerprint')}): it may not "
            "write them (docs/generations.md)"
        )
    for problem in key_mapping_problems(schema, current.get("properties") or {}):
        log.warning(
            "index_key_mapping_inexact",
            index=index,
            problem=problem,
            action="keys that the mapped type cannot hold are dead-lettered: reindex into a new index created by "
            "the service and move the read alias to it (docs/mapping.md, 'Migrating an existing index')",
        )
    mapping = existing_index_mapping(schema, current, mode, template)
    if generation is not None and not recorded:  # an index adopted from before generations: record it now
        mapping["_meta"] = {**(current.get("_meta") or {}), GENERATION_META: dict(generation)}
    client.indices.put_mapping(index=index, body=mapping)
