"""Record filters in the spirit of Lambda's FilterCriteria (EventBridge-style patterns), pure.

A pattern is a JSON object mirroring the record's shape (as GetRecords returns it); its leaves
are lists of allowed values, and a record matches when every leaf matches (AND). Several
patterns are OR'ed. Leaf elements are literals (equality) or one operator:

    {"prefix": "ord-"}   {"suffix": ".com"}   {"anything-but": ["deleted", "void"]}
    {"numeric": [">", 0, "<=", 100]}          {"exists": true} / {"exists": false}

Example — only active orders: ``{"dynamodb": {"NewImage": {"status": {"S": ["active"]}}}}``.
A record value that is a list (e.g. a string set) matches when any element does. Numbers compare
as decimals (DynamoDB ``N`` values arrive as strings).

``StateMatcher`` is the same test compiled once for patterns that judge an item's state (they name
``dynamodb.Keys`` and ``dynamodb.NewImage``, as routes and the ``state`` filter mode do): each leaf
becomes a path and a test, and a leaf of literals a set lookup, so the hot path walks no pattern.
Thread-safe.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from typing import Any

from consumer.pipeline.records import as_image

_ABSENT = object()
_NUMERIC_OPERATORS: dict[str, Callable[[decimal.Decimal, decimal.Decimal], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class PatternError(ValueError):
    """A filter pattern is malformed; the message says where."""


def validate_pattern(pattern: Any, path: str = "$") -> None:
    """Raise PatternError unless ``pattern`` is a well-formed pattern object."""
    if not isinstance(pattern, dict) or not pattern:
        raise PatternError(f"{path}: expected a non-empty object")
    for key, value in pattern.items():
        where = f"{path}.{key}"
        if isinstance(value, dict):
            validate_pattern(value, where)
        elif isinstance(value, list) and value:
            for element in value:
                _validate_element(element, where)
        else:
            raise PatternError(f"{where}: expected an object or a non-empty list of allowed values")


def matches(pattern: dict[str, Any], record: Any) -> bool:
    """Whether ``record`` satisfies every leaf of ``pattern``; an image the answer left as text
    (``records.ImageText``) is judged as the image it spells."""
    for key, expected in pattern.items():
        actual = as_image(record.get(key, _ABSENT)) if isinstance(record, dict) else _ABSENT
        if isinstance(expected, dict):
            if not matches(expected, actual if actual is not _ABSENT else {}):
                return False
        elif not any(_leaf_matches(element, actual) for element in expected):
            return False
    return True


def matches_any(patterns: tuple[dict[str, Any], ...], record: dict[str, Any]) -> bool:
    """OR of the patterns; no patterns at all means everything passes."""
    return not patterns or any(matches(pattern, record) for pattern in patterns)


Leaf = Callable[[dict[str, Any], dict[str, Any]], bool]  # (keys, image) → whether one leaf matches


def _leaf(root: str | None, path: tuple[str, ...], elements: tuple[Any, ...]) -> Leaf:
    """One leaf of a pattern as a function of an item's state: its value is at ``path`` below the
    ``root`` (``Keys`` or ``NewImage``; None: somewhere a state does not have); a leaf of plain
    strings tests a string value by a set lookup."""
    literals = frozenset(elements) if all(isinstance(element, str) for element in elements) else None
    from_keys, from_image = root == "Keys", root == "NewImage"

    def matches_leaf(keys: dict[str, Any], image: dict[str, Any]) -> bool:
        value: Any = keys if from_keys else image if from_image else _ABSENT
        for name in path:
            value = value.get(name, _ABSENT) if value.__class__ is dict else _ABSENT
        if literals is not None and value.__class__ is str:
            return value in literals
        return any(_leaf_matches(element, value) for element in elements)

    return matches_leaf


class StateMatcher:
    """Patterns (OR'ed) compiled to judge an item's state: ``matcher(keys, image)`` equals
    ``matches_any(patterns, {"dynamodb": {"Keys": keys, "NewImage": image}})``."""

    def __init__(self, patterns: tuple[dict[str, Any], ...]) -> None:
        self._everything = not patterns
        self._compiled = [(pattern, _compile(pattern)) for pattern in patterns]

    def __call__(self, keys: dict[str, Any], image: dict[str, Any]) -> bool:
        if self._everything:
            return True
        for pattern, leaves in self._compiled:
            if leaves is None:  # a leaf above the state's attributes: judged the slow way
                if matches(pattern, {"dynamodb": {"Keys": keys, "NewImage": image}}):
                    return True
                continue
            for leaf in leaves:
                if not leaf(keys, image):
                    break
            else:
                return True
        return False


def state_attributes(patterns: tuple[dict[str, Any], ...]) -> frozenset[str] | None:
    """The top-level attributes of an item's state (``dynamodb.NewImage``) that ``patterns`` read, so
    that two states equal in these are judged alike; None when a pattern reads the state whole."""
    names: set[str] = set()
    for pattern in patterns:
        for path, _ in _leaves(pattern, ()):
            if len(path) < 3 or path[0] != "dynamodb" or path[1] not in ("Keys", "NewImage"):
                return None
            if path[1] == "NewImage":
                names.add(path[2])
    return frozenset(names)


def _compile(pattern: dict[str, Any]) -> list[Leaf] | None:
    """The leaves of a pattern, or None when one sits at or above ``dynamodb.Keys`` / ``NewImage``."""
    leaves: list[Leaf] = []
    for path, elements in _leaves(pattern, ()):
        if len(path) < 3:
            return None
        root = path[1] if path[0] == "dynamodb" and path[1] in ("Keys", "NewImage") else None
        leaves.append(_leaf(root, path[2:], tuple(elements)))
    return leaves


def _leaves(pattern: dict[str, Any], above: tuple[str, ...]) -> list[tuple[tuple[str, ...], list[Any]]]:
    found: list[tuple[tuple[str, ...], list[Any]]] = []
    for key, expected in pattern.items():
        if isinstance(expected, dict):
            found += _leaves(expected, (*above, key))
        else:
            found.append(((*above, key), expected))
    return found


def _leaf_matches(element: Any, actual: Any) -> bool:
    if isinstance(element, dict) and "exists" in element:
        return (actual is not _ABSENT) == element["exists"]
    if actual is _ABSENT:
        return False
    if isinstance(actual, (list, set, frozenset, tuple)):
        return any(_value_matches(element, value) for value in actual)
    return _value_matches(element, actual)


def _value_matches(element: Any, value: Any) -> bool:
    if not isinstance(element, dict):
        return element == value
    ((operator, operand),) = element.items()
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(operand)
    if operator == "suffix":
        return isinstance(value, str) and value.endswith(operand)
    if operator == "anything-but":
        excluded = operand if isinstance(operand, list) else [operand]
        return value not in excluded
    return _numeric_matches(operand, value)


def _numeric_matches(conditions: list[Any], value: Any) -> bool:
    try:
        number = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        return False
    pairs = zip(conditions[::2], conditions[1::2], strict=True)
    return all(_NUMERIC_OPERATORS[op](number, decimal.Decimal(str(bound))) for op, bound in pairs)


def _validate_element(element: Any, where: str) -> None:
    if not isinstance(element, dict):
        if isinstance(element, (str, int, float, bool)) or element is None:
            return
        raise PatternError(f"{where}: {element!r} is neither a literal nor an operator")
    if len(element) != 1:
        raise PatternError(f"{where}: an operator object has exactly one key, got {sorted(element)}")
    ((operator, operand),) = element.items()
    valid = {
        "prefix": isinstance(operand, str),
        "suffix": isinstance(operand, str),
        "anything-but": isinstance(operand, (list, str, int, float)),
        "exists": isinstance(operand, bool),
        "numeric": _valid_numeric(operand),
    }
    if operator not in valid:
        raise PatternError(f"{where}: unknown operator {operator!r}; use one of {sorted(valid)}")
    if not valid[operator]:
        raise PatternError(f"{where}: bad operand for {operator!r}: {operand!r}")


def _valid_numeric(operand: Any) -> bool:
    if not isinstance(operand, list) or len(operand) not in (2, 4):
        return False
    operators, bounds = operand[::2], operand[1::2]
    return all(op in _NUMERIC_OPERATORS for op in operators) and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds
    )
