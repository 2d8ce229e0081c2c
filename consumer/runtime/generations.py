"""Which index generation a process writes, and the parts bound to it (I/O at the edges).

``resolve_generation`` reads the registry (``consumer.sink.generation_registry``) and applies the
plan (``consumer.pipeline.generations.plan``): the generation of this configuration's fingerprint,
the first one adopted when nothing is recorded, or a new one to build when creating is allowed
(``consumer reindex``, ``CDC_REINDEX=auto``); otherwise it raises ``GenerationRefused`` naming
what differs and what to run. ``bound_settings`` and ``generation_catalog`` give the rest of the
process the generation's lease table and physical indices.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from consumer.config import Settings
from consumer.errors import ConfigError, GenerationRefused, SinkError
from consumer.pipeline.doc_ids import KeySchema
from consumer.pipeline.document_shape import document_shape, fingerprint
from consumer.pipeline.generations import (
    Adopt,
    Create,
    Generation,
    Refuse,
    Registry,
    Write,
    is_generation_index,
    plan,
)
from consumer.pipeline.routes import Routing
from consumer.sink.generation_registry import REGISTRY_INDEX, GenerationStore
from consumer.sink.index_catalog import IndexCatalog


def resolve_generation(
    store: GenerationStore,
    search: OpenSearch,
    routes: Routing,
    schema: KeySchema,
    settings: Settings,
    may_create: bool,
    clock: Callable[[], float] = time.time,
) -> Generation | None:
    """The generation this configuration writes, recorded in the registry when new; None without
    ``CDC_INDEX_GENERATIONS=on`` (the indices as named, as before generations).

    Raises:
        GenerationRefused: it may not write any (the message says why and what to run).
        SinkError: OpenSearch did not answer (retry).
    """
    if settings.index_generations == "off":
        return None
    shape = document_shape(routes, schema, settings.mapping_mode)
    own = fingerprint(shape)
    legacy: list[bool] = []  # looked up once, only when nothing is recorded yet

    def change(registry: Registry) -> Registry | None:
        decision = plan(registry, own, shape, may_create)
        if isinstance(decision, Write):
            return None
        if isinstance(decision, Refuse):
            raise GenerationRefused(decision.reason)
        if isinstance(decision, Adopt):
            if not legacy:
                legacy.append(_has_legacy_indices(search, routes))
            return registry.adopted(own, shape, settings.lease_table_name, legacy[0], clock())
        assert isinstance(decision, Create)
        return registry.with_building(own, shape, settings.lease_table_name, clock())

    generation = store.update(change).of_fingerprint(own)
    if generation is None:  # written by another process in between: decide again
        raise SinkError("the generation registry changed while this process resolved its generation")
    return generation


def recorded_generation(
    store: GenerationStore, routes: Routing, schema: KeySchema, settings: Settings
) -> Generation | None:
    """For a one-off command (backfill, audit, redrive, the KCL processor): the generation of this
    configuration, or None when nothing is recorded yet (the indices as named).

    Raises:
        ConfigError: generations are recorded, none of this configuration's shape.
    """
    if settings.index_generations == "off":
        return None
    registry, _ = store.read()
    if not registry.generations:
        return None
    shape = document_shape(routes, schema, settings.mapping_mode)
    decision = plan(registry, fingerprint(shape), shape, may_create=False)
    if isinstance(decision, Refuse):
        raise ConfigError(decision.reason)
    assert isinstance(decision, Write)
    return decision.generation


def bound_settings(settings: Settings, generation: Generation | None) -> Settings:
    """The settings of a process writing ``generation``: its lease table; and reading the stream from
    ``TRIM_HORIZON`` while it is being built, so that every change made after its backfill began
    reaches it (its replay of the retained 24 h is harmless: versions are external)."""
    if generation is None:
        return settings
    update: dict[str, object] = {"lease_table": generation.lease_table}
    if generation.state == "building":
        update["initial_position"] = "TRIM_HORIZON"
    return settings.model_copy(update=update)


def generation_catalog(
    client: OpenSearch, routes: Routing, schema: KeySchema, settings: Settings, generation: Generation | None
) -> IndexCatalog:
    """The catalog of ``generation``'s indices (``routes`` as configured, not yet bound to it)."""
    number = generation.number if generation is not None else 0
    return IndexCatalog(
        client, routes.in_generation(number), schema, settings.mapping_mode, settings.opensearch_read_alias, generation
    )


def generation_store(client: OpenSearch, settings: Settings) -> GenerationStore:
    """The registry of this deployment (named by its lease table, as configured)."""
    return GenerationStore(client, settings.lease_table_name)


def _has_legacy_indices(search: OpenSearch, routes: Routing) -> bool:
    """Whether indices the routes name exist from before generations (adopted as generation 0)."""
    try:
        answer = search.indices.get_alias(
            index=",".join(routes.index_patterns), allow_no_indices=True, ignore_unavailable=True
        )
    except (OpenSearchConnectionError, TransportError) as exc:
        raise SinkError(f"listing the routes' indices failed: {exc}") from exc
    fixed = set(routes.fixed_indices)
    return any(name in fixed or not is_generation_index(name) for name in answer if name != REGISTRY_INDEX)
