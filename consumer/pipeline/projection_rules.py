"""The global projection rules: filters, TTL handling and the field rules (pure, thread-safe).

All configured by ``CDC_*`` variables (consumer.config); each route (``consumer.pipeline.routes``)
carries a copy with its own field rules. ``consumer.pipeline.projection`` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from consumer.pipeline.filtering import StateMatcher
from consumer.pipeline.records import EVENT_NAMES
from consumer.pipeline.shaping import FieldPath

TtlMode = Literal["delete", "skip", "mark"]
FilterMode = Literal["state", "events"]


@dataclass(frozen=True)
class ProjectionRules:
    """What to project, and how. The defaults project everything as it is."""

    event_names: frozenset[str] = frozenset(EVENT_NAMES)
    patterns: tuple[dict[str, Any], ...] = ()
    filter_mode: FilterMode = "state"
    ttl_deletes: TtlMode = "delete"
    include_fields: tuple[FieldPath, ...] = ()
    drop_fields: tuple[FieldPath, ...] = ()
    mask_fields: tuple[FieldPath, ...] = ()
    mask_key: bytes | None = field(default=None, repr=False)
    key_names: frozenset[str] = frozenset()  # kept by include_fields whatever it lists

    state_matches: StateMatcher = field(init=False, repr=False, compare=False)
    """(keys, image) → whether an item state (AttributeValues) passes the patterns, as the ``state``
    mode judges it."""

    def __post_init__(self) -> None:
        for name in ("include_fields", "drop_fields", "mask_fields"):  # paths may be given as text
            paths = tuple(FieldPath.parse(p) if isinstance(p, str) else p for p in getattr(self, name))
            object.__setattr__(self, name, paths)
        object.__setattr__(self, "state_matches", StateMatcher(self.patterns))

    @property
    def filters_state(self) -> bool:
        return self.filter_mode == "state" and bool(self.patterns)

    def with_fields(
        self,
        include_fields: tuple[FieldPath | str, ...] | None = None,
        drop_fields: tuple[FieldPath | str, ...] | None = None,
        mask_fields: tuple[FieldPath | str, ...] | None = None,
    ) -> ProjectionRules:
        """These rules with other field rules (None: keep that one)."""
        changes = {
            name: value
            for name, value in (
                ("include_fields", include_fields),
                ("drop_fields", drop_fields),
                ("mask_fields", mask_fields),
            )
            if value is not None
        }
        return replace(self, **changes)  # type: ignore[arg-type]


PROJECT_ALL = ProjectionRules()
