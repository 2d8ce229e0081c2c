"""The indices the routes write, each made ready before its first document (I/O, thread-safe).

At start-up (``set_up``) every fixed index of the routes is created or updated with its route's
mapping policy and read alias (``consumer.sink.index_setup.ensure_index``), and every templated
route gets an index template, so that an index made from it has the mapping even if something
other than the service creates it. A templated index is created, with its aliases, the first time
a batch writes it (``ready``): unless its route already has ``max_indices`` indices (those matching
its pattern), in which case its documents are dead-lettered with a message that says so; raise the
route's ``max_indices`` and ``consumer redrive`` them. Several workers may create indices at once:
creation is idempotent, and the bound may be passed by one index per worker racing for it.

**Generations** (``consumer.pipeline.generations``). The catalog serves one generation: its routing
names the generation's physical indices (``Routing.in_generation``), and each index records the
generation in its ``_meta`` (an index recording another fingerprint is refused). Only a live
generation's indices carry the aliases applications read: ``<index>-live`` (filtered; or
``CDC_OPENSEARCH_READ_ALIAS``), ``<index>`` itself (unfiltered, unless an index of that name exists:
the adopted generation 0), and a templated route's ``read_alias``. ``swap_from`` moves every alias
of another generation onto this one in one ``_aliases`` request, so readers see one generation or
the other, never both and never neither.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable

import structlog
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import NotFoundError, TransportError

from consumer.errors import SinkError
from consumer.pipeline.doc_ids import KeySchema
from consumer.pipeline.generations import LEGACY_GENERATION, Generation, is_generation_index, logical_index
from consumer.pipeline.mapping import MappingMode, index_body
from consumer.pipeline.routes import Route, Routing, read_alias_of
from consumer.sink.index_setup import GENERATION_META, LIVE_FILTER, ensure_index, put_index_template

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
        generation: Generation | None = None,
    ) -> None:
        """``read_alias``: ``CDC_OPENSEARCH_READ_ALIAS``, the alias of the fixed indices instead of
        ``<index>-live`` (set only without routes, so it names the one index's alias). ``generation``:
        the one ``routing`` writes (None: the indices as named, live, recording no generation)."""
        self._client = client
        self._routing = routing
        self._schema = schema
        self._mode = mode
        self._read_alias = read_alias
        self._number = generation.number if generation is not None else LEGACY_GENERATION
        self._stamp = (
            {"generation": generation.number, "fingerprint": generation.fingerprint} if generation is not None else None
        )
        self.live = generation is None or generation.state == "live"
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    @property
    def routing(self) -> Routing:
        return self._routing

    def set_up(self) -> bool:
        """The fixed indices and the templated routes' index templates; True when an index was created."""
        created = False
        for position, route in enumerate(self._routing.routes):
            if route.index.templated:
                body = index_body(self._schema, self._mode, route.template)
                if self._stamp is not None:
                    body["mappings"]["_meta"] = {GENERATION_META: self._stamp}
                name = f"cdc-{self._routing.table.lower()}-{route.name}"
                if self._number != LEGACY_GENERATION:
                    name += f"-g{self._number}"
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

    def went_live(self) -> None:
        """This generation was swapped live (by whichever process): give the indices this process made
        ready their aliases (``swap_from`` gave those that existed then; this covers a templated index
        created since)."""
        with self._lock:
            self.live = True
            indices = sorted(self._ready)
        for index in indices:
            route = self._route_of(index)
            if route is not None:
                self._add_aliases(index, route)

    def swap_from(self, other: IndexCatalog | None) -> int:
        """Move the read aliases from ``other``'s generation to this one's in one atomic request;
        returns how many alias actions it took. Raises SinkError when OpenSearch cannot answer."""
        actions: list[dict] = []
        if other is not None:
            for index, held in other.indices().items():
                route = other._route_of(index)
                if route is None:
                    continue
                filtered, plain = other.aliases(route, index)
                actions += [
                    {"remove": {"index": index, "alias": alias}} for alias in [*filtered, *plain] if alias in held
                ]
        for index in self.indices():
            route = self._route_of(index)
            if route is not None:
                actions += self._alias_actions(index, route)
        if actions:
            try:
                self._client.indices.update_aliases(body={"actions": actions})
            except (OpenSearchConnectionError, TransportError) as exc:
                raise SinkError(f"moving the read aliases to generation {self._number} failed: {exc}") from exc
        self.live = True
        return len(actions)

    def indices(self) -> dict[str, set[str]]:
        """This generation's existing indices, each with the aliases it has."""
        try:
            answer = self._client.indices.get_alias(
                index=",".join(self._routing.index_patterns), allow_no_indices=True, ignore_unavailable=True
            )
        except (OpenSearchConnectionError, TransportError) as exc:
            raise SinkError(f"listing the indices of generation {self._number} failed: {exc}") from exc
        return {
            index: set((body or {}).get("aliases") or {})
            for index, body in answer.items()
            if self._route_of(index) is not None
        }

    def delete_all(self) -> list[str]:
        """Delete this generation's indices and index templates (a retired generation); returns the
        indices deleted. Raises SinkError when OpenSearch cannot answer."""
        indices = sorted(self.indices())
        try:
            for index in indices:
                self._client.indices.delete(index=index, ignore_unavailable=True)
            for route in self._routing.routes:
                if route.index.templated:
                    name = f"cdc-{self._routing.table.lower()}-{route.name}-g{self._number}"
                    self._client.indices.delete_index_template(name=name, ignore=[404])
        except (OpenSearchConnectionError, TransportError) as exc:
            raise SinkError(f"deleting generation {self._number} failed: {exc}") from exc
        return indices

    def aliases(self, route: Route, index: str) -> tuple[list[str], list[str]]:
        """The aliases ``index`` has while its generation is live: (filtered, plain)."""
        logical = logical_index(index, self._number)
        read = self._read_alias if self._read_alias and not route.index.templated else read_alias_of(logical)
        filtered = [read, *((route.read_alias,) if route.read_alias else ())]
        plain = [logical] if logical != index else []
        return filtered, plain

    def _route_of(self, index: str) -> Route | None:
        """The first route whose index is ``index``, or whose template can make it."""
        for route in self._routing.routes:
            if route.index.text == index:
                return route
            if route.index.templated and fnmatch.fnmatchcase(index, route.index.pattern):
                if self._number == LEGACY_GENERATION and is_generation_index(index):
                    continue  # a later generation's index, which an adopted template's pattern also matches
                return route
        return None

    def _ensure(self, route: Route, index: str) -> bool:
        filtered, plain = self.aliases(route, index) if self.live else ([None], [])
        plain = [alias for alias in plain if not self._is_index(alias)]
        created = ensure_index(
            self._client,
            index,
            filtered[0],
            self._schema,
            self._mode,
            route.template,
            filtered[1:],
            plain,
            self._stamp,
        )
        self._ready.add(index)
        if created and route.index.templated:
            log.info("route_index_created", route=route.name, index=index)
        return created

    def _alias_actions(self, index: str, route: Route) -> list[dict]:
        filtered, plain = self.aliases(route, index)
        return [{"add": {"index": index, "alias": alias, "filter": LIVE_FILTER}} for alias in filtered] + [
            {"add": {"index": index, "alias": alias}} for alias in plain if not self._is_index(alias)
        ]

    def _add_aliases(self, index: str, route: Route) -> None:
        try:
            self._client.indices.update_aliases(body={"actions": self._alias_actions(index, route)})
        except (OpenSearchConnectionError, TransportError) as exc:
            raise SinkError(f"adding the read aliases of {index!r} failed: {exc}") from exc

    def _is_index(self, name: str) -> bool:
        """Whether ``name`` is a concrete index (which no alias may be named after)."""
        try:
            return name in self._client.indices.get_alias(index=name, ignore_unavailable=True, allow_no_indices=True)
        except NotFoundError:
            return False
        except (OpenSearchConnectionError, TransportError) as exc:
            raise SinkError(f"looking up {name!r} failed: {exc}") from exc

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
