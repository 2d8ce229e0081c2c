"""Routes: which index an item's state belongs in, and how its document is shaped there (pure).

A table of a single-table design holds several kinds of items (customers, orders, order lines, told
apart by key prefixes or a ``type`` attribute). ``CDC_ROUTES`` sends each kind to its own index: an
ordered list of routes, each with

* ``match``: state patterns (``consumer.pipeline.filtering``, on ``dynamodb.Keys`` and
  ``dynamodb.NewImage``) that an item's state must pass; a route without one takes every item;
* ``index``: a fixed name, or a template over the item's top-level attributes (``orders-${tenant}``:
  an ``S`` value, or an ``N`` value's canonical text, lowercased, with every character other than
  ``a-z 0-9 _ -`` replaced by ``_``). An item lacking a template's attribute (or holding another
  type there) does not match the route. A template may make at most ``max_indices`` indices
  (``consumer.sink.index_catalog`` enforces it);
* its field rules (``include_fields``, ``drop_fields``, ``mask_fields``) and ``transform``.

The first route that matches wins (``Routing.place``); an item that matches none is in no index, as
if a state filter left it out (a last route without ``match`` makes a default route). The global
rules (``CDC_FILTER_PATTERNS``, ``CDC_TTL_DELETES``, ...) apply before the routes. Without
``CDC_ROUTES`` there is one route, ``default``, to the table's index with the global field rules.

A route is *key-only* when its match names only ``dynamodb.Keys`` and its index only key
attributes: an item then never changes route, since its keys never change. A route on other
attributes can lose an item to another route (its ``type`` changes, its tenant moves), and the
document must then leave the old index: that takes the item's state before the change, the
stream's OldImage (``NEW_AND_OLD_IMAGES``), which ``Routing.image_routed_names`` lets the start-up
check ask for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from consumer.errors import RecordError
from consumer.pipeline.attributes import canonical_number
from consumer.pipeline.bulk import DEFAULT_ROUTE
from consumer.pipeline.filtering import StateMatcher, state_attributes
from consumer.pipeline.mapping import NO_TEMPLATE, IndexTemplate
from consumer.pipeline.projection_rules import ProjectionRules
from consumer.pipeline.transforms import Transform

MAX_INDEX_NAME_BYTES = 255
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_ABSENT = object()
_INDEX_LITERAL = re.compile(r"^[a-z0-9._-]*$")
_UNSAFE = re.compile(r"[^a-z0-9_-]")


def read_alias_of(index: str) -> str:
    """The filtered alias applications search for one index: ``<index>-live``."""
    return f"{index}-live"


@dataclass(frozen=True)
class IndexName:
    """A fixed index name, or a template: literal text with ``${attribute}`` placeholders."""

    text: str
    literals: tuple[str, ...]  # the text around the placeholders: one more than ``attributes``
    attributes: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> IndexName:
        """Raises ValueError naming what is wrong with ``text``."""
        literals = _PLACEHOLDER.split(text)[::2]
        attributes = tuple(_PLACEHOLDER.findall(text))
        if any(not name.strip() for name in attributes):
            raise ValueError(f"index {text!r}: a placeholder names no attribute (write ${{attribute}})")
        if not literals[0] or not re.match(r"^[a-z0-9]", literals[0]):
            raise ValueError(f"index {text!r} must start with a lowercase letter or digit (e.g. orders-${{tenant}})")
        for literal in literals:
            if not _INDEX_LITERAL.match(literal) or "$" in literal:
                raise ValueError(f"index {text!r}: use lowercase letters, digits, '.', '_', '-' and ${{attribute}}")
        return cls(text, tuple(literals), attributes)

    @property
    def templated(self) -> bool:
        return bool(self.attributes)

    def suffixed(self, suffix: str) -> IndexName:
        """This name with ``suffix`` after it (and after every name it makes)."""
        return IndexName(self.text + suffix, (*self.literals[:-1], self.literals[-1] + suffix), self.attributes)

    @property
    def pattern(self) -> str:
        """The wildcard pattern of every name the template can make (the name itself when fixed)."""
        return "*".join(self.literals)

    def render(self, item: dict[str, Any]) -> str | None:
        """The index name for an item's attributes (AttributeValues); None when one is missing or not
        a string or number. Raises RecordError when the name would exceed OpenSearch's 255 bytes."""
        if not self.attributes:
            return self.text
        parts = [self.literals[0]]
        for name, literal in zip(self.attributes, self.literals[1:], strict=True):
            value = item.get(name)
            if not isinstance(value, dict):
                return None
            if isinstance(value.get("S"), str) and value["S"]:
                text = value["S"]
            elif isinstance(value.get("N"), str):
                text = canonical_number(value["N"])
            else:
                return None
            parts += (_UNSAFE.sub("_", text.lower()), literal)
        name = "".join(parts)
        if len(name.encode()) > MAX_INDEX_NAME_BYTES:
            raise RecordError(
                f"index name {name[:80]}… from template {self.text!r} exceeds {MAX_INDEX_NAME_BYTES} bytes"
            )
        return name


@dataclass(frozen=True)
class Route:
    """Where items that pass ``patterns`` go, and how their documents are shaped there."""

    name: str
    index: IndexName
    rules: ProjectionRules  # the global rules with this route's field rules
    patterns: tuple[dict[str, Any], ...] = ()
    transform: Transform | None = None
    max_indices: int = 1
    read_alias: str | None = None  # an alias over all of a templated route's indices
    template: IndexTemplate = NO_TEMPLATE  # settings and mappings of its indices (CDC_INDEX_TEMPLATE's form)
    matches: StateMatcher = field(init=False, repr=False, compare=False)  # (keys, image) → whether it takes them
    fixed: Placement | None = field(init=False, repr=False, compare=False)  # where it puts items, if one index
    # its documents are the items as they are: no transform, no field rules
    as_they_are: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "matches", StateMatcher(self.patterns))
        object.__setattr__(self, "fixed", None if self.index.templated else Placement(self, self.index.text))
        shaped = self.rules.include_fields or self.rules.drop_fields or self.rules.mask_fields
        object.__setattr__(self, "as_they_are", self.transform is None and not shaped)

    def key_only(self, key_names: frozenset[str]) -> bool:
        """Whether only key attributes decide that an item takes this route, and to which index."""
        named = {name for pattern in self.patterns for name in pattern.get("dynamodb", {})}
        return named <= {"Keys"} and set(self.index.attributes) <= key_names


@dataclass(frozen=True)
class Placement:
    """The route an item's state takes and the index it lands in."""

    route: Route
    index: str


@dataclass(frozen=True)
class Routing:
    """The routes of one table, in order, with the global rules and the table's key names."""

    table: str
    rules: ProjectionRules
    routes: tuple[Route, ...]
    key_names: frozenset[str] = field(default_factory=frozenset)
    filters_state: bool = field(init=False, repr=False, compare=False)  # the global state filter is on
    # the item attributes a placement reads (filter, routes, index templates); None: the whole state
    deciding: frozenset[str] | None = field(init=False, repr=False, compare=False)
    # where every state of every item goes, when nothing tells states apart: no state filter, and a
    # first route that takes every item into one index (None: each state is placed)
    everywhere: Placement | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters_state", self.rules.filters_state)
        read = [state_attributes(route.patterns) for route in self.routes]
        read += [frozenset(route.index.attributes) for route in self.routes]
        if self.filters_state:
            read.append(state_attributes(self.rules.patterns))
        deciding = None if None in read else frozenset().union(*read)
        object.__setattr__(self, "deciding", deciding)
        first = self.routes[0] if self.routes else None
        takes_all = first is not None and not first.patterns and not self.filters_state
        object.__setattr__(self, "everywhere", first.fixed if takes_all else None)  # type: ignore[union-attr]

    def places_alike(self, image: dict[str, Any], other: dict[str, Any]) -> bool:
        """Whether two states of one item are sure to be placed alike: every attribute a placement reads
        is equal in both (then one ``place`` answers for both; False means only "not known")."""
        if self.deciding is None:
            return False
        return all(image.get(name, _ABSENT) == other.get(name, _ABSENT) for name in self.deciding)

    def place(self, keys: dict[str, Any], image: dict[str, Any]) -> Placement | None:
        """Where an item in state ``image`` belongs: None when the global state filter leaves it out
        or no route matches it. Raises RecordError for a templated name that cannot be an index."""
        if self.filters_state and not self.rules.state_matches(keys, image):
            return None
        return self.route(keys, image)

    def route(self, keys: dict[str, Any], image: dict[str, Any]) -> Placement | None:
        """The first route that ``image`` matches and whose index it can name (the global filter aside)."""
        for route in self.routes:
            if route.matches(keys, image):
                if route.fixed is not None:
                    return route.fixed
                index = route.index.render(image)
                if index is not None:
                    return Placement(route, index)
        return None

    def in_generation(self, number: int) -> Routing:
        """These routes writing index generation ``number`` (``consumer.pipeline.generations``): every
        index name, fixed or templated, with the generation's suffix."""
        if number == 0:  # the index adopted from before generations keeps its name
            return self
        routes = tuple(replace(route, index=route.index.suffixed(f"-g{number}")) for route in self.routes)
        return replace(self, routes=routes)

    @property
    def key_only(self) -> bool:
        return all(route.key_only(self.key_names) for route in self.routes)

    @property
    def image_routed_names(self) -> tuple[str, ...]:
        """The routes that an item can leave when it changes (they need the stream's OldImage)."""
        return tuple(route.name for route in self.routes if not route.key_only(self.key_names))

    @property
    def fixed_indices(self) -> tuple[str, ...]:
        """The indices of the routes with fixed names, each once, in route order."""
        return tuple(dict.fromkeys(route.index.text for route in self.routes if not route.index.templated))

    @property
    def index_patterns(self) -> tuple[str, ...]:
        """Every index the routes can write: the fixed names and the templates' wildcard patterns."""
        return tuple(dict.fromkeys(route.index.pattern for route in self.routes))

    @property
    def letter_rules(self) -> ProjectionRules:
        """The rules that shape the image a dead letter keeps: the global ones, masking every field that
        any route masks (a letter must not show what some index hides)."""
        masked = {path.text: path for route in self.routes for path in route.rules.mask_fields}
        if not masked:
            return self.rules
        return self.rules.with_fields(mask_fields=tuple(masked.values()))


def single_route(
    table: str,
    index: str,
    rules: ProjectionRules,
    transform: Transform | None = None,
    template: IndexTemplate = NO_TEMPLATE,
) -> Routing:
    """The routing without ``CDC_ROUTES``: every item to ``index``, shaped by the global rules."""
    route = Route(DEFAULT_ROUTE, IndexName.parse(index), rules, transform=transform, template=template)
    return Routing(table, rules, (route,), rules.key_names)
