"""A reindex: build the next index generation and swap the read aliases to it (I/O).

Run by ``consumer reindex`` and, with ``CDC_REINDEX=auto``, by the workers of a new configuration
once their share of the fill is done. Every step is idempotent and resumes from what is recorded
(the registry, the generation's indices, its backfill segments, its lease table), so a process
killed at any point is replaced by running it again:

1. **Prepare** (``prepare``): the generation of this configuration, created in the registry when
   none exists (``consumer.runtime.generations.resolve_generation``) and its indices set up, without
   aliases.
2. **Fill** (``fill``): the backfill into the generation, its segments leases in the generation's
   lease table, shared with any worker and any other reindex; it starts once the generation's own
   lease set covers every open shard (workers of this configuration apply the stream to it from
   ``TRIM_HORIZON``), so nothing falls between the scan and the stream.
3. **Catch up** (``behind``): the generation's lease set has applied, on every shard, at least what
   the live generation's had when the check began.
4. **Prove** (``prove``): the audit of the generation against the table, repeated until no id
   differs in two audits in a row (an id that differs once is a change in flight).
5. **Swap** (``swap``): the aliases move in one ``_aliases`` request, then the registry records it.

``rollback`` swaps back to the previous generation (kept current by its own workers); ``retire``
deletes the previous generation once its retention ended and its workers stopped; ``abandon``
deletes a generation being built.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import structlog
from opensearchpy import OpenSearch

from consumer.backfill.runner import BackfillTally
from consumer.config import Settings
from consumer.errors import ConfigError, ConsumerError
from consumer.leases.model import SENTINELS, SHARD_END, Lease
from consumer.leases.table import LeaseTable
from consumer.observability.metrics import Metrics
from consumer.pipeline.generations import Generation, Registry
from consumer.pipeline.routes import Routing
from consumer.runtime.backfill_job import build_runner, check_no_gap, ensure_segments
from consumer.runtime.clients import AwsClients
from consumer.runtime.generations import bound_settings, generation_catalog, generation_store, resolve_generation
from consumer.runtime.stream_source import StreamSource, describe_table
from consumer.shards.api import StreamsApi
from consumer.sink.index_catalog import IndexCatalog

log = structlog.get_logger(__name__)

WAIT_SECONDS = 2.0  # between checks while waiting for workers
PROGRESS_REPORT_SECONDS = 30.0  # between reports of a step's progress into the registry
PROVE_PASSES = 5  # audits before an id that keeps differing is reported
ACTIVE_OWNER_FAILOVERS = 2.0  # a lease renewed within this many failover periods has a running worker


@dataclass(frozen=True)
class Proof:
    """The audits of a generation: how many ran, items compared, and the ids that kept differing."""

    passes: int
    items: int
    lasting: tuple[str, ...] = ()

    @property
    def proven(self) -> bool:
        return not self.lasting


# Audits a generation (consumer.commands.reindex.prove), reporting the items audited so far as it goes.
Prover = Callable[[Generation, Callable[[int], None]], Proof]


class Reindex:
    """The steps of one deployment's reindex, for the configuration in ``settings``."""

    def __init__(
        self,
        settings: Settings,
        aws: AwsClients,
        source: StreamSource,
        routes: Routing,
        search: OpenSearch,
        metrics: Metrics,
        stop: threading.Event,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings  # as configured (the base lease table), not bound to a generation
        self.source = source
        self.routes = routes  # as configured, not bound to a generation
        self.search = search
        self.store = generation_store(search, settings)
        self.aws = aws
        self._metrics = metrics
        self._stop = stop
        self.clock = clock
        self.step_seconds: dict[str, float] = {}  # of the steps this process ran, in order
        self._reported: tuple[str, float] = ("", 0.0)  # the step last reported into the registry, and when

    def run(self, prove: Prover, on_progress: Callable[[BackfillTally], None] | None = None) -> Generation | None:
        """Every step, from where the last run stopped; the generation made live, or None when stopped
        first. Raises ConfigError when the audits do not prove the generation (nothing is swapped)."""
        generation = self.prepare()
        if generation.state == "live":
            log.info("reindex_nothing_to_do", generation=generation.number)
            return generation
        if generation.state == "previous":
            raise ConfigError(
                f"this configuration is the previous generation's ({generation.number}): `consumer reindex --rollback` "
                "makes it live again"
            )
        with self._timed("fill"):
            filled = self.fill(generation, on_progress)
        if not filled:
            return None
        with self._timed("catch-up"):
            caught_up = self.wait_caught_up(generation)
        if not caught_up:
            return None
        with self._timed("proof"):
            proof = prove(generation, lambda audited: self.report(generation, "proof", audited))
        if not proof.proven:
            raise ConfigError(
                f"generation {generation.number} is not proven: {len(proof.lasting)} documents differed from the table "
                f"in {proof.passes} audits in a row (e.g. {', '.join(proof.lasting[:5])}). Nothing was swapped: "
                "run `consumer audit` with this configuration to see why, then `consumer reindex` again"
            )
        with self._timed("swap"):
            self.swap(generation)
        return generation

    @contextlib.contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.step_seconds[step] = time.monotonic() - started
            log.info("reindex_step_ended", step=step, seconds=round(self.step_seconds[step], 3))

    def report(self, generation: Generation, step: str, count: int) -> None:
        """Record the progress of ``step`` in the registry (the workers export it, the stall alert reads
        it): at once when the step changes, else at most every ``PROGRESS_REPORT_SECONDS``."""
        now = time.monotonic()
        if self._reported[0] == step and now - self._reported[1] < PROGRESS_REPORT_SECONDS:
            return
        self._reported = (step, now)
        moment = self.clock()

        def reported(current: Registry) -> Registry | None:
            if not _is_building(current, generation):
                return None
            changed = current.with_progress(step, count, moment)
            return changed if changed != current else None  # nothing moved: nothing to write

        try:
            self.store.update(reported)
        except ConsumerError as exc:  # progress is a view for the alert, never a reason to stop the fill
            log.warning(
                "reindex_progress_not_recorded", step=step, error=str(exc), retry_in_seconds=PROGRESS_REPORT_SECONDS
            )

    def fill(self, generation: Generation, on_progress: Callable[[BackfillTally], None] | None = None) -> bool:
        """The backfill into ``generation``, once its lease set leaves no gap; True when every segment
        is done (by this process or others), False when stopped first."""
        settings = self.bound(generation)
        leases = self.leases(generation)
        api = StreamsApi(self.aws.streams, observe=self._metrics.observe_aws, aws_clock=self.aws.clock)
        waited = 0
        while not self._stop.is_set():
            self.report(generation, "waiting for workers", 0)
            try:
                check_no_gap(_shard_leases(leases), api.list_shards(self.source.stream_arn))
                break
            except ConfigError as exc:
                if waited % 6 == 0:
                    log.warning(
                        "reindex_waiting_for_workers",
                        generation=generation.number,
                        lease_table=generation.lease_table,
                        reason=str(exc),
                        action="start workers with this configuration: they apply the stream to the new generation",
                    )
                waited += 1
                self._stop.wait(WAIT_SECONDS)
        else:
            return False
        catalog = self.catalog(generation)
        catalog.set_up()
        size = int(describe_table(self.aws.dynamodb, self.source.table_name).get("TableSizeBytes", 0))
        ensure_segments(leases, settings.backfill_segments, size, restart=False)

        def progressed(tally: BackfillTally) -> None:
            self.report(generation, "fill", tally.items)
            if on_progress is not None:
                on_progress(tally)

        runner = build_runner(
            settings,
            self.source,
            self.aws.dynamodb,
            leases,
            self._metrics,
            catalog.routing,
            catalog,
            on_progress=progressed,
            aws_clock=self.aws.clock,
        )
        progress = runner.run(self._stop)
        return progress.done == progress.total

    def wait_caught_up(self, generation: Generation) -> bool:
        """Wait until ``generation``'s workers have applied what the live generation's have; False
        when stopped first."""
        checks = 0
        while not self._stop.is_set():
            behind = self.behind(generation)
            if not behind:
                return True
            self.report(generation, "catch-up", len(behind))
            if checks % 6 == 0:
                log.info("reindex_catching_up", generation=generation.number, shards_behind=len(behind), e_g=behind[0])
            checks += 1
            self._stop.wait(WAIT_SECONDS)
        return False

    def prepare(self) -> Generation:
        """This configuration's generation, created when missing, with its indices set up.

        Raises:
            GenerationRefused: another reindex is under way, or a previous generation is kept.
        """
        generation = resolve_generation(
            self.store, self.search, self.routes, self.source.key_schema, self.settings, True, self.clock
        )
        if generation is None:
            raise ConfigError("index generations are off: set CDC_INDEX_GENERATIONS=on (docs/generations.md)")
        self.catalog(generation).set_up()
        return generation

    def catalog(self, generation: Generation | None) -> IndexCatalog:
        return generation_catalog(self.search, self.routes, self.source.key_schema, self.settings, generation)

    def leases(self, generation: Generation) -> LeaseTable:
        return LeaseTable(self.aws.dynamodb, generation.lease_table, observe=self._metrics.observe_aws)

    def bound(self, generation: Generation) -> Settings:
        return bound_settings(self.settings, generation)

    def behind(self, generation: Generation) -> list[str]:
        """The shards on which ``generation``'s workers have applied less than the live generation's
        had when this call began (empty: caught up)."""
        live = self.store.read()[0].live
        if live is None or live.number == generation.number:
            return []
        ahead = {lease.lease_key: lease for lease in _shard_leases(self.leases(live))}
        mine = {lease.lease_key: lease for lease in _shard_leases(self.leases(generation))}
        behind = []
        for key, theirs in ahead.items():
            own = mine.get(key)
            if own is None:
                if not theirs.is_ended:  # an ended shard the stream no longer lists is never leased again
                    behind.append(key)
            elif _position(own) < _position(theirs):
                behind.append(key)
        return sorted(behind)

    def swap(self, generation: Generation) -> Registry:
        """Make ``generation`` live: the aliases in one request, then the registry (idempotent)."""
        registry = self.store.read()[0]
        live = registry.live
        if live is not None and live.number == generation.number:
            return registry
        actions = self.catalog(generation).swap_from(self.catalog(live) if live is not None else None)
        now = self.clock()
        recorded = self.store.update(
            lambda current: current.swapped(now) if _is_building(current, generation) else None
        )
        log.info("generation_swapped", live=generation.number, previous=live.number if live else None, actions=actions)
        return recorded

    def rollback(self, force: bool) -> Registry:
        """The previous generation live again. Refused unless its workers are running (they keep it
        current), or ``force``."""
        registry = self.store.read()[0]
        previous, live = registry.previous, registry.live
        if previous is None or live is None:
            raise ConfigError("no previous generation is kept: there is nothing to roll back to")
        if not force and not self.applied(previous):
            raise ConfigError(
                f"no worker applies the stream to generation {previous.number} (lease table {previous.lease_table}): "
                "it is not current. Start workers with its configuration first (they catch up from its "
                "checkpoints), or roll back anyway with --force"
            )
        actions = self.catalog(previous).swap_from(self.catalog(live))
        now = self.clock()
        recorded = self.store.update(
            lambda current: current.rolled_back(now) if _is_previous(current, previous) else None
        )
        log.info("generation_rolled_back", live=previous.number, previous=live.number, actions=actions)
        return recorded

    def retire(self, now: bool) -> Generation:
        """Delete the previous generation: once its retention ended (or ``now``) and no worker applies
        the stream to it."""
        previous = self.store.read()[0].previous
        if previous is None:
            raise ConfigError("no previous generation is kept: there is nothing to retire")
        ends = (previous.left_live_at or 0.0) + self.settings.generation_retention_seconds
        if not now and self.clock() < ends:
            raise ConfigError(
                f"generation {previous.number} is kept for rollback for {ends - self.clock():,.0f} s more "
                "(CDC_GENERATION_RETENTION_SECONDS): retire it now with --now"
            )
        self._delete(previous, "retired")
        return previous

    def abandon(self) -> Generation:
        """Delete the generation being built (its workers stop, not ready, until it exists again)."""
        building = self.store.read()[0].building
        if building is None:
            raise ConfigError("no generation is being built: there is nothing to abandon")
        self._delete(building, "abandoned")
        return building

    def applied(self, generation: Generation) -> bool:
        """Whether workers apply the stream to ``generation``: a lease of its table renewed lately."""
        table = self.leases(generation)
        if not table.exists():
            return False
        since = self.clock() - ACTIVE_OWNER_FAILOVERS * self.settings.failover_seconds
        return any(
            lease.owner and (lease.last_updated_at or 0.0) >= since and not lease.is_ended
            for lease in table.list_leases()
        )

    def _delete(self, generation: Generation, what: str) -> None:
        if self.applied(generation):
            raise ConfigError(
                f"workers still apply the stream to generation {generation.number} (lease table "
                f"{generation.lease_table}): stop them first, or they would write indices that no longer exist"
            )
        deleted = self.catalog(generation).delete_all()
        self.store.update(lambda current: current.without(generation.number))
        log.info(
            f"generation_{what}", generation=generation.number, indices=deleted, lease_table=generation.lease_table
        )


def _shard_leases(table: LeaseTable) -> list[Lease]:
    return [lease for lease in table.list_leases() if not lease.is_segment] if table.exists() else []


def _position(lease: Lease) -> int:
    """A lease's position in its shard, comparable between lease sets of the same stream."""
    if lease.checkpoint == SHARD_END:
        return 1 << 200
    if lease.checkpoint in SENTINELS:
        return -1
    return int(lease.checkpoint)


def _is_building(registry: Registry, generation: Generation) -> bool:
    building = registry.building
    return building is not None and building.number == generation.number


def _is_previous(registry: Registry, generation: Generation) -> bool:
    previous = registry.previous
    return previous is not None and previous.number == generation.number
