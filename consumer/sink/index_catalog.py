"""The indices the routes write, each made ready before its first document (I/O, thread-safe).

At start-up (``set_up``) every fixed index of the routes is created or updated with its route's
mapping policy and read alias (``consumer.sink.index_setup.ensure_index``), and every templated
route gets an index template, so that an index made from it has the mapping even if something
other than the service creates it. A templated index is created, with its aliases, the first time
a batch writes it (``ready``): unless its route already has ``max_indices`` indices (those matching
its pattern), in which case its documents are dead-lettered with a message that says so; raise the
route's ``max_indices`` and ``consumer redrive`` them. Several workers may create indices at once:
creation is idempotent, and the bound may be passed by one index per worker racing for it.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable

import structlog
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from consumer.errors import SinkError
from consumer.pipeline.doc_ids import KeySchema
from consumer.pipeline.mapping import MappingMode, index_body
from consumer.pipeline.routes import Route, Routing, read_alias_of
from consumer.sink.index_setup import ensure_index, put_index_template

log = structlog.get_logger(__name__)

TEMPLATE_PRIORITY = 200  # above a plain user template (OpenSearch's default is 0); route i gets this + i


class IndexCatalog:
    """Makes the routes' indices ready: fixed ones at start-up, templated ones on first use."""

    def __init__(
        self,
        client: OpenSearch,
        routing: Routing,
        schema: KeySchema,
        mode: MappingMode,
        read_alias: str | None = None,
    ) -> None:
        """``read_alias``: ``CDC_OPENSEARCH_READ_ALIAS``, the alias of the fixed indices instead of
        ``<index>-live`` (set only without routes, so it names the one index's alias)."""
        self._client = client
        self._routing = routing
        self._schema = schema
        self._mode = mode
        self._read_alias = read_alias
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def set_up(self) -> bool:
        """The fixed indices and the templated routes' index templates; True when an index was created."""
        created = False
        for position, route in enumerate(self._routing.routes):
            if route.index.templated:
                body = index_body(self._schema, self._mode, route.template)
                name = f"cdc-{self._routing.table.lower()}-{route.name}"
                put_index_template(self._client, name, route.index.pattern, body, TEMPLATE_PRIORITY + position)
            elif route.index.text not in self._ready:
                created |= self._ensure(route, route.index.text)
        return created

    def ready(self, indices: Iterable[str]) -> dict[str, str]:
        """Make each index ready to write; returns those that may not be made (index → why): no route
        writes it, or its route has its ``max_indices`` already. Raises SinkError when OpenSearch
        cannot answer (the caller retries its batch) and ConfigError when it refuses."""
        refused: dict[str, str] = {}
        for index in indices:
            if index in self._ready:
                continue
            route = self._route_of(index)
            if route is None:
                refused[index] = f"no route writes index {index!r}"
                continue
            with self._lock:  # one creation at a time in this process: the bound is counted once per index
                if index in self._ready:
                    continue
                reason = self._over_bound(route, index)
                if reason is not None:
                    refused[index] = reason
                    continue
                self._ensure(route, index)
        return refused

    def _route_of(self, index: str) -> Route | None:
        """The first route whose index is ``index``, or whose template can make it."""
        for route in self._routing.routes:
            if route.index.text == index or (route.index.templated and fnmatch.fnmatchcase(index, route.index.pattern)):
                return route
        return None

    def _ensure(self, route: Route, index: str) -> bool:
        alias = self._read_alias if self._read_alias and not route.index.templated else read_alias_of(index)
        also = (route.read_alias,) if route.read_alias else ()
        created = ensure_index(self._client, index, alias, self._schema, self._mode, route.template, also)
        self._ready.add(index)
        if created and route.index.templated:
            log.info("route_index_created", route=route.name, index=index)
        return created

    def _over_bound(self, route: Route, index: str) -> str | None:
        """Why ``index`` may not be created for ``route``, or None (it exists, or the bound allows it)."""
        if not route.index.templated:
            return None
        try:
            existing = self._client.indices.get_alias(index=route.index.pattern, allow_no_indices=True)
        except (OpenSearchConnectionError, TransportError) as exc:
            raise SinkError(
                f"listing the indices of route {route.name!r} ({route.index.pattern}) failed: {exc}"
            ) from exc
        if index in existing or len(existing) < route.max_indices:
            return None
        return (
            f"route {route.name!r} has {len(existing)} indices ({route.index.pattern}), its max_indices: index "
            f"{index!r} was not created; raise the route's max_indices and run consumer redrive"
        )
