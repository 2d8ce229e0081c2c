"""Index generations: their names, their registry, and which one a configuration writes (pure).

An index's documents are written into a *generation*: the physical index ``<index>-g<N>``, which
applications never name. They read ``<index>-live`` (the filtered read alias) or ``<index>`` (a
plain alias), both on the live generation. Each generation was built by one configuration, whose
``consumer.pipeline.document_shape`` fingerprint it records; a worker writes only the generation of
its own fingerprint, so no generation ever holds documents of two shapes. An index that existed
before generations (named ``<index>`` itself) is adopted as generation 0.

The registry (stored by ``consumer.sink.generation_registry``) lists the generations of one
deployment with their state:

* ``live``: the one the read aliases name; exactly one once anything was written;
* ``building``: the next one, being filled by ``consumer reindex`` (backfill) and by the stream,
  applied by workers of its configuration with its own lease table (a second consumer of the stream);
* ``previous``: the one live before the last swap, kept for ``consumer reindex --rollback`` until its
  retention ends, then deleted.

At most two generations exist besides the retired: {live, building} or {live, previous}. Each has
its own lease set, read by its own workers, so a stream shard has at most two readers — the bound
above which DynamoDB Streams throttles. A new generation is therefore refused while a previous one
is kept (retire it first), and while another is being built.

Thread-safe (immutable values and pure functions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from consumer.pipeline.document_shape import Shape, differences

State = Literal["building", "live", "previous"]
LEGACY_GENERATION = 0
_GENERATION_SUFFIX = re.compile(r"-g[0-9]+$")


def physical_index(index: str, generation: int) -> str:
    """The physical name of ``index`` in ``generation`` (generation 0: the adopted index itself)."""
    return index if generation == LEGACY_GENERATION else f"{index}-g{generation}"


def is_generation_index(name: str) -> bool:
    """Whether ``name`` is a generation's physical index (``…-g<N>``, N ≥ 1)."""
    return _GENERATION_SUFFIX.search(name) is not None


def logical_index(physical: str, generation: int) -> str:
    """The index name applications know, from its physical name in ``generation``."""
    suffix = f"-g{generation}"
    if generation == LEGACY_GENERATION or not physical.endswith(suffix):
        return physical
    return physical[: -len(suffix)]


@dataclass(frozen=True)
class ReindexProgress:
    """How far the reindex of a building generation has come, as its process last reported: the step
    (``waiting for workers``, ``fill``, ``catch-up``, ``proof``), the step's own count (items filled,
    shards still behind, items audited) and when either last changed. A reindex whose progress has not
    moved for long has stalled: its process is gone, or it waits on something (the alert
    ``CdcReindexStalled``)."""

    step: str
    count: int
    moved_at: float

    def after(self, step: str, count: int, now: float) -> ReindexProgress:
        """The progress reported next: ``moved_at`` is now only if the step or its count changed."""
        if (step, count) == (self.step, self.count):
            return self
        return ReindexProgress(step, count, now)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "count": self.count, "moved_at": self.moved_at}

    @classmethod
    def from_json(cls, body: Any) -> ReindexProgress | None:
        if body is None:
            return None
        return cls(str(body["step"]), int(body["count"]), float(body["moved_at"]))


@dataclass(frozen=True)
class Generation:
    """One generation of a deployment's indices."""

    number: int
    fingerprint: str
    shape: Shape
    lease_table: str  # the lease table of the workers that apply the stream to it
    state: State
    created_at: float
    live_since: float | None = None
    left_live_at: float | None = None  # when it became ``previous``: its retention runs from here
    progress: ReindexProgress | None = None  # of its reindex, while it is being built

    def moved_at(self) -> float:
        """When its reindex last made progress (its creation, before any report)."""
        return self.progress.moved_at if self.progress is not None else self.created_at

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "fingerprint": self.fingerprint,
            "shape": self.shape,
            "lease_table": self.lease_table,
            "state": self.state,
            "created_at": self.created_at,
            "live_since": self.live_since,
            "left_live_at": self.left_live_at,
            "progress": self.progress.to_json() if self.progress is not None else None,
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Generation:
        """Raises ValueError when ``body`` is not a generation this version wrote."""
        try:
            state = body["state"]
            if state not in ("building", "live", "previous"):
                raise ValueError(f"unknown state {state!r}")
            return cls(
                number=int(body["number"]),
                fingerprint=str(body["fingerprint"]),
                shape=dict(body["shape"]),
                lease_table=str(body["lease_table"]),
                state=state,
                created_at=float(body["created_at"]),
                live_since=_optional_float(body.get("live_since")),
                left_live_at=_optional_float(body.get("left_live_at")),
                progress=ReindexProgress.from_json(body.get("progress")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a generation lacks or mistypes {exc}") from None


@dataclass(frozen=True)
class Registry:
    """The generations of one deployment, and the highest number ever given (never reused)."""

    generations: tuple[Generation, ...] = ()
    last_number: int = -1

    def in_state(self, state: State) -> Generation | None:
        return next((generation for generation in self.generations if generation.state == state), None)

    @property
    def live(self) -> Generation | None:
        return self.in_state("live")

    @property
    def building(self) -> Generation | None:
        return self.in_state("building")

    @property
    def previous(self) -> Generation | None:
        return self.in_state("previous")

    def numbered(self, number: int) -> Generation | None:
        return next((generation for generation in self.generations if generation.number == number), None)

    def of_fingerprint(self, fingerprint: str) -> Generation | None:
        return next((generation for generation in self.generations if generation.fingerprint == fingerprint), None)

    def adopted(self, fingerprint: str, shape: Shape, lease_table: str, legacy: bool, now: float) -> Registry:
        """The first generation, live at once: 0 when the index predates generations, else 1."""
        number = LEGACY_GENERATION if legacy else 1
        first = Generation(number, fingerprint, shape, lease_table, "live", now, live_since=now)
        return Registry((first,), number)

    def with_building(self, fingerprint: str, shape: Shape, lease_table_base: str, now: float) -> Registry:
        """A new generation to build, with its own lease table ``<base>-g<N>``."""
        number = self.last_number + 1
        building = Generation(number, fingerprint, shape, f"{lease_table_base}-g{number}", "building", now)
        return Registry((*self.generations, building), number)

    def swapped(self, now: float) -> Registry:
        """The building generation live, the live one previous."""
        building, live = self.building, self.live
        if building is None or live is None:
            raise ValueError("no generation is being built")
        return self._with(
            replace(building, state="live", live_since=now, progress=None),
            replace(live, state="previous", left_live_at=now),
        )

    def rolled_back(self, now: float) -> Registry:
        """The previous generation live again, the live one previous."""
        previous, live = self.previous, self.live
        if previous is None or live is None:
            raise ValueError("no previous generation is kept")
        return self._with(
            replace(previous, state="live", live_since=now, left_live_at=None),
            replace(live, state="previous", left_live_at=now),
        )

    def without(self, number: int) -> Registry:
        """The registry once generation ``number`` is deleted (retired or abandoned)."""
        return Registry(tuple(g for g in self.generations if g.number != number), self.last_number)

    def with_progress(self, step: str, count: int, now: float) -> Registry:
        """The building generation with its reindex's progress reported."""
        building = self.building
        if building is None:
            raise ValueError("no generation is being built")
        progress = building.progress or ReindexProgress(step, count, now)
        return self._with(replace(building, progress=progress.after(step, count, now)))

    def _with(self, *changed: Generation) -> Registry:
        by_number = {generation.number: generation for generation in changed}
        return Registry(tuple(by_number.get(g.number, g) for g in self.generations), self.last_number)

    def to_json(self) -> dict[str, Any]:
        return {"last_number": self.last_number, "generations": [g.to_json() for g in self.generations]}

    @classmethod
    def from_json(cls, body: Any) -> Registry:
        """Raises ValueError naming what is wrong (a registry written by something else)."""
        if not isinstance(body, dict) or not isinstance(body.get("generations"), list):
            raise ValueError("the generation registry has no list of generations")
        generations = tuple(Generation.from_json(item) for item in body["generations"])
        states = [generation.state for generation in generations]
        if any(states.count(state) > 1 for state in ("building", "live", "previous")):
            raise ValueError(f"the generation registry has two generations in one state: {states}")
        return cls(generations, int(body.get("last_number", max((g.number for g in generations), default=-1))))


@dataclass(frozen=True)
class Write:
    """Write this generation (it holds this configuration's shape)."""

    generation: Generation


@dataclass(frozen=True)
class Adopt:
    """Nothing recorded yet: this configuration's shape becomes the first, live generation."""


@dataclass(frozen=True)
class Create:
    """Build a new generation for this configuration."""


@dataclass(frozen=True)
class Refuse:
    """This configuration may not write now; ``reason`` says why and what to do."""

    reason: str


Decision = Write | Adopt | Create | Refuse


def plan(registry: Registry, fingerprint: str, shape: Shape, may_create: bool) -> Decision:
    """Which generation a configuration of ``fingerprint`` writes; ``may_create``: ``consumer reindex``,
    or a worker with ``CDC_REINDEX=auto``."""
    if not registry.generations:
        return Adopt()
    own = registry.of_fingerprint(fingerprint)
    if own is not None:
        return Write(own)
    live = registry.live
    what = _what_differs(live, shape) if live is not None else "no generation is live"
    if not may_create:
        return Refuse(
            f"this configuration's documents differ from those of the live generation {_name(live)} ({what}): it "
            "may not write them. Run `consumer reindex` with this configuration to build a generation for it, or set "
            "CDC_REINDEX=auto (docs/generations.md)"
        )
    building, previous = registry.building, registry.previous
    if building is not None:
        return Refuse(
            f"generation {building.number} is being built for another configuration (fingerprint "
            f"{building.fingerprint}); one reindex at a time: let it finish, or drop it with "
            "`consumer reindex --abandon`, then run this configuration again"
        )
    if previous is not None:
        return Refuse(
            f"generation {previous.number} is kept for rollback: a third generation would make three readers per "
            "stream shard (DynamoDB Streams throttles above two). Retire it with `consumer reindex --retire` (or wait "
            f"for its retention to end), then run this configuration again. This configuration differs by: {what}"
        )
    return Create()


def _what_differs(live: Generation, shape: Shape) -> str:
    found = differences(live.shape, shape)
    if not found:
        return "same shape, recorded under another fingerprint"
    return "; ".join(found[:6]) + (f"; and {len(found) - 6} more" if len(found) > 6 else "")


def _name(generation: Generation | None) -> str:
    return "(none)" if generation is None else str(generation.number)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
