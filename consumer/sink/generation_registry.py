"""Where a deployment's index generations are recorded: one document in OpenSearch (I/O, thread-safe).

The registry (``consumer.pipeline.generations.Registry``) is the document ``<deployment>`` of the
index ``cdc-generations`` (the deployment is named by its lease table, unique per consumer of a
table). It lives beside the indices it describes, so whoever can swap their aliases can read it, and
a restore of the cluster restores both together.

Every change is conditional: it is written with the external version one above the version read,
so of two processes changing the registry at once one wins and the other reads again and decides
anew (``update``). The index stores the document without indexing its fields (``dynamic: false``).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError, TransportError
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

from consumer.errors import ConfigError, SinkError
from consumer.pipeline.generations import Registry

log = structlog.get_logger(__name__)

REGISTRY_INDEX = "cdc-generations"
UPDATE_ATTEMPTS = 20  # of a read-decide-write cycle racing other processes


class GenerationStore:
    """The registry of one deployment's generations."""

    def __init__(self, client: OpenSearch, deployment: str) -> None:
        self._client = client
        self._deployment = deployment

    @property
    def deployment(self) -> str:
        return self._deployment

    def read(self) -> tuple[Registry, int]:
        """The registry and its version (0: nothing recorded yet).

        Raises:
            SinkError: OpenSearch did not answer (retry).
            ConfigError: the document is not a registry this version can read.
        """
        try:
            answer = self._client.get(index=REGISTRY_INDEX, id=self._deployment)
        except NotFoundError:
            return Registry(), 0
        except (OpenSearchConnectionError, TransportError) as exc:
            raise SinkError(f"reading the generation registry failed: {exc}") from exc
        try:
            return Registry.from_json(answer.get("_source")), int(answer["_version"])
        except (ValueError, KeyError) as exc:
            raise ConfigError(
                f"document {self._deployment!r} of index {REGISTRY_INDEX!r} is not a generation registry ({exc}): "
                "restore it from a snapshot, or delete it to adopt the live indices again (docs/generations.md)"
            ) from None

    def write(self, registry: Registry, read_version: int) -> bool:
        """Record ``registry`` unless someone changed it since ``read_version``; False then."""
        try:
            self._client.index(
                index=REGISTRY_INDEX,
                id=self._deployment,
                body=registry.to_json(),
                params={"version": read_version + 1, "version_type": "external", "refresh": "true"},
            )
        except ConflictError:
            return False
        except NotFoundError:  # the index itself is missing on a cluster that does not create it on write
            self._create_index()
            return self.write(registry, read_version)
        except (OpenSearchConnectionError, TransportError) as exc:
            raise SinkError(f"writing the generation registry failed: {exc}") from exc
        return True

    def update(self, change: Callable[[Registry], Registry | None]) -> Registry:
        """Apply ``change`` to the current registry and record it, again on a fresher read while another
        process wins the race; ``change`` returns None to leave the registry as it is. Returns the
        registry as recorded."""
        for _ in range(UPDATE_ATTEMPTS):
            registry, version = self.read()
            if version == 0:
                self._create_index()
            changed = change(registry)
            if changed is None or changed == registry:
                return registry
            if self.write(changed, version):
                return changed
        raise SinkError(
            f"the generation registry changed {UPDATE_ATTEMPTS} times while this process tried to update it"
        )

    def _create_index(self) -> None:
        try:
            self._client.indices.create(
                index=REGISTRY_INDEX,
                body={"settings": {"number_of_shards": 1}, "mappings": {"dynamic": False, "properties": {}}},
            )
        except TransportError as exc:
            if exc.status_code == 400 and exc.error == "resource_already_exists_exception":
                return
            raise SinkError(f"creating index {REGISTRY_INDEX!r} failed: {exc}") from exc
