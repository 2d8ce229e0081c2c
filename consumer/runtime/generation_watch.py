"""A worker's watch over the generation it writes (I/O, one thread, stops with the worker).

Every ``CDC_GENERATION_CHECK_SECONDS`` it reads the registry and acts on what changed elsewhere:

* its generation went live (a swap by ``consumer reindex`` or another worker): the indices it made
  get their aliases, and the worker becomes ready;
* its generation is being built: the worker is not ready (a rolling deploy then keeps the old pods,
  which keep the live generation current, until the swap);
* a generation is being built (its own or another): the reindex's progress as recorded in the
  registry is exported (step, count, when it last moved: the stall alert's input);
* its generation is no longer live (a newer one was swapped in): it keeps applying the stream to it,
  so a rollback finds it current, and says so;
* its generation was retired or abandoned: it stops, rather than write indices that no longer exist
  (restarted, it waits, not ready, for a generation of its shape);
* it is live and the previous generation's retention ended with no workers left on it: the previous
  generation is deleted (``Reindex.retire``).

A failure is said and the watch goes on at its next check.
"""

from __future__ import annotations

import threading

import structlog

from consumer.errors import ConsumerError
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.observability.routines import routine_failed
from consumer.pipeline.generations import Generation, Registry
from consumer.runtime.reindex import Reindex
from consumer.sink.index_catalog import IndexCatalog

log = structlog.get_logger(__name__)


class GenerationWatch:
    """Follows the registry for the worker that writes ``generation``."""

    def __init__(
        self,
        reindex: Reindex,
        generation: Generation,
        catalog: IndexCatalog,
        health: Health,
        metrics: Metrics,
        stop: threading.Event,
    ) -> None:
        self._reindex = reindex
        self._number = generation.number
        self._catalog = catalog
        self._health = health
        self._metrics = metrics
        self._stop = stop
        self._state = generation.state
        metrics.index_generation.labels(role="written").set(generation.number)
        self._show(generation)
        self._show_reindex(generation if generation.state == "building" else None)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="generation-watch", daemon=True)
        thread.start()
        return thread

    def check(self) -> None:
        """One look at the registry, and what follows from it."""
        registry = self._reindex.store.read()[0]
        own = registry.numbered(self._number)
        if registry.live is not None:
            self._metrics.index_generation.labels(role="live").set(registry.live.number)
        if own is None:
            problem = (
                f"generation {self._number}, which this worker writes, was retired or abandoned: the worker stops "
                "(roll it to the live configuration, or run `consumer reindex` with this one)"
            )
            log.error("generation_gone", generation=self._number, action=problem)
            self._health.set_condition("generation", problem)
            self._stop.set()
            return
        if own.state == "live" and not self._catalog.live:
            self._catalog.went_live()
            log.info("generation_live", generation=self._number)
        if own.state != self._state:
            log.info("generation_state", generation=self._number, state=own.state, was=self._state)
            self._state = own.state
        self._show(own)
        self._show_reindex(registry.building)
        if own.state == "live":
            self._retire_expired(registry)

    def _show_reindex(self, building: Generation | None) -> None:
        """The progress of the generation being built, whichever this worker writes (0: none)."""
        self._metrics.reindex_progress.clear()
        self._metrics.reindex_moved.set(building.moved_at() if building is not None else 0)
        if building is not None and building.progress is not None:
            self._metrics.reindex_progress.labels(step=building.progress.step).set(building.progress.count)

    def _show(self, own: Generation) -> None:
        self._metrics.generation_building.set(1 if own.state == "building" else 0)
        if own.state == "building":
            self._health.set_condition(
                "generation",
                f"building index generation {own.number}: ready once it is live (consumer reindex, docs/generations.md)",
            )
            return
        self._health.set_condition("generation", None)
        note = None
        if own.state == "previous":
            note = f"index generation {own.number} is no longer live: kept current for rollback until it is retired"
        self._health.set_note("generation", note)

    def _retire_expired(self, registry: Registry) -> None:
        previous = registry.previous
        if previous is None:
            return
        ends = (previous.left_live_at or 0.0) + self._reindex.settings.generation_retention_seconds
        if self._reindex.clock() < ends or self._reindex.applied(previous):
            return
        try:
            self._reindex.retire(now=False)
        except ConsumerError as exc:  # another worker retired it first, or its workers came back
            log.info("generation_retire_skipped", generation=previous.number, reason=str(exc))

    def _run(self) -> None:
        interval = self._reindex.settings.generation_check_seconds
        while not self._stop.wait(interval):
            try:
                self.check()
            except ConsumerError as exc:
                log.warning("generation_check_failed", error=str(exc), retry_in_seconds=interval)
            except Exception as exc:  # noqa: BLE001 - supervised: said, counted, and checked again next time
                # The watch moves no shard's position (it reads the registry, sets aliases and metrics),
                # so no record is passed over here; it keeps running, so /healthz stays as it is.
                routine_failed(self._metrics, "generation-watch", exc)
