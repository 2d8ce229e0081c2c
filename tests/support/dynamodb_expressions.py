"""DynamoDB's condition and update expressions, the subset the consumer writes, for the in-memory
lease-table double (``tests.support.memory_dynamodb``). Pure: no I/O.

Conditions: ``attribute_exists(p)``, ``attribute_not_exists(p)``, ``a = b``, ``a <> b``, ``AND``,
``OR``, ``NOT`` and parentheses, with DynamoDB's precedence (NOT, then AND, then OR). Updates: ``SET
p = operand, …`` and ``REMOVE p, …`` in either order. A path is one top-level attribute, by name or
``#placeholder``; an operand is a path or a ``:value``. Anything else (nested paths, functions such as
``if_not_exists``, arithmetic, ``ADD``/``DELETE``, ``<``, ``BETWEEN``, ``IN``) raises
``ExpressionError`` saying the double does not implement it, so a change in what the consumer writes
fails its contract test instead of being misread.

As DynamoDB does, every placeholder used must be defined and every one defined must be used.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Item = dict[str, dict[str, Any]]
Condition = Callable[[Item], bool]

_TOKEN = re.compile(r"\s*(?:(<>|[=(),])|([#:]?[A-Za-z_][A-Za-z0-9_]*)|(\S))")
_KEYWORDS = {"AND", "OR", "NOT", "SET", "REMOVE"}
_UNSUPPORTED_KEYWORDS = {"ADD", "DELETE", "BETWEEN", "IN"}
_FUNCTIONS = {"attribute_exists", "attribute_not_exists"}


class ExpressionError(ValueError):
    """An expression DynamoDB would refuse (a ``ValidationException``), or one this double does not
    implement (said in the message)."""


@dataclass
class Placeholders:
    """An expression's ``ExpressionAttributeNames`` and ``ExpressionAttributeValues``, and which were used."""

    names: dict[str, str]
    values: dict[str, dict[str, Any]]
    used: set[str] = field(default_factory=set)

    def name(self, token: str) -> str:
        if token.startswith("#"):
            if token not in self.names:
                raise ExpressionError(f"An expression attribute name used in the document path is not defined: {token}")
            self.used.add(token)
            return self.names[token]
        return token

    def value(self, token: str) -> dict[str, Any]:
        if token not in self.values:
            raise ExpressionError(f"An expression attribute value used in expression is not defined: {token}")
        self.used.add(token)
        return self.values[token]

    def check_all_used(self) -> None:
        unused = sorted(set(self.names) - self.used) + sorted(set(self.values) - self.used)
        if unused:
            raise ExpressionError(f"Value provided in ExpressionAttributeNames/Values unused in expressions: {unused}")


@dataclass(frozen=True)
class Update:
    """A parsed update: the attributes to set (to a value, or to another attribute's value) and to remove."""

    set: dict[str, Callable[[Item], dict[str, Any] | None]]
    remove: tuple[str, ...]

    def apply(self, item: Item) -> Item:
        """The item after the update (a new dict; ``item`` is left as it is)."""
        updated = dict(item)
        for name, operand in self.set.items():
            value = operand(item)
            if value is None:
                raise ExpressionError(
                    f"The provided expression refers to an attribute that does not exist in the item: {name}"
                )
            updated[name] = value
        for name in self.remove:
            updated.pop(name, None)
        return updated


def parse_condition(expression: str, placeholders: Placeholders) -> Condition:
    """The condition ``expression`` as a predicate over an item (an empty item: none exists)."""
    parser = _Parser(expression, placeholders)
    condition = parser.or_expression()
    parser.expect_end()
    return condition


def parse_update(expression: str, placeholders: Placeholders) -> Update:
    """The update ``expression``: SET and REMOVE clauses."""
    parser = _Parser(expression, placeholders)
    assignments: dict[str, Callable[[Item], dict[str, Any] | None]] = {}
    removed: list[str] = []
    seen_clauses: set[str] = set()
    while not parser.at_end():
        clause = parser.keyword()
        if clause not in ("SET", "REMOVE") or clause in seen_clauses:
            raise ExpressionError(
                f"Invalid UpdateExpression: unexpected {clause!r} (the double implements SET and REMOVE, once each)"
            )
        seen_clauses.add(clause)
        while True:
            path = parser.path()
            if clause == "SET":
                parser.take("=")
                assignments[path] = parser.operand()
            else:
                removed.append(path)
            if not parser.peek_is(","):
                break
            parser.take(",")
    if not seen_clauses:
        raise ExpressionError("Invalid UpdateExpression: the expression is empty")
    overlap = set(assignments) & set(removed)
    if overlap:
        raise ExpressionError(
            f"Invalid UpdateExpression: Two document paths overlap with each other: {sorted(overlap)}"
        )
    return Update(assignments, tuple(removed))


def values_equal(left: dict[str, Any], right: dict[str, Any]) -> bool:
    """DynamoDB's equality of two AttributeValues: same type and value, numbers compared as numbers,
    sets as sets."""
    ((left_type, left_value),) = left.items()
    ((right_type, right_value),) = right.items()
    if left_type != right_type:
        return False
    if left_type == "N":
        return Decimal(left_value) == Decimal(right_value)
    if left_type == "NS":
        return {Decimal(v) for v in left_value} == {Decimal(v) for v in right_value}
    if left_type in ("SS", "BS"):
        return set(left_value) == set(right_value)
    return bool(left_value == right_value)


class _Parser:
    """Recursive descent over one expression's tokens."""

    def __init__(self, expression: str, placeholders: Placeholders) -> None:
        self._tokens = _tokenize(expression)
        self._at = 0
        self._placeholders = placeholders

    def at_end(self) -> bool:
        return self._at == len(self._tokens)

    def expect_end(self) -> None:
        if not self.at_end():
            raise ExpressionError(f"Invalid expression: unexpected {self._tokens[self._at]!r}")

    def peek_is(self, token: str) -> bool:
        return not self.at_end() and self._tokens[self._at].upper() == token

    def take(self, token: str | None = None) -> str:
        if self.at_end():
            raise ExpressionError(f"Invalid expression: it ends where {token or 'more'!r} was expected")
        found = self._tokens[self._at]
        if token is not None and found.upper() != token:
            raise ExpressionError(f"Invalid expression: {found!r} where {token!r} was expected")
        self._at += 1
        return found

    def keyword(self) -> str:
        return self.take().upper()

    def or_expression(self) -> Condition:
        terms = [self.and_expression()]
        while self.peek_is("OR"):
            self.take()
            terms.append(self.and_expression())
        return terms[0] if len(terms) == 1 else lambda item: any(term(item) for term in terms)

    def and_expression(self) -> Condition:
        terms = [self.not_expression()]
        while self.peek_is("AND"):
            self.take()
            terms.append(self.not_expression())
        return terms[0] if len(terms) == 1 else lambda item: all(term(item) for term in terms)

    def not_expression(self) -> Condition:
        if self.peek_is("NOT"):
            self.take()
            inner = self.not_expression()
            return lambda item: not inner(item)
        return self.primary()

    def primary(self) -> Condition:
        if self.peek_is("("):
            self.take()
            inner = self.or_expression()
            self.take(")")
            return inner
        token = self._tokens[self._at] if not self.at_end() else ""
        if token in _FUNCTIONS:
            return self._function()
        left = self.operand()
        comparator = self.take()
        if comparator not in ("=", "<>"):
            raise ExpressionError(
                f"Invalid ConditionExpression: the double implements = and <> only, not {comparator!r}"
            )
        right = self.operand()
        if comparator == "=":
            return lambda item: _compare(left(item), right(item), equal=True)
        return lambda item: _compare(left(item), right(item), equal=False)

    def _function(self) -> Condition:
        function = self.take()
        self.take("(")
        name = self.path()
        self.take(")")
        if function == "attribute_exists":
            return lambda item: name in item
        return lambda item: name not in item

    def path(self) -> str:
        token = self.take()
        if token.startswith(":") or token.upper() in _KEYWORDS or not re.fullmatch(r"#?[A-Za-z_][A-Za-z0-9_]*", token):
            raise ExpressionError(f"Invalid expression: {token!r} where an attribute name was expected")
        if not self.at_end() and self._tokens[self._at] in (".", "["):
            raise ExpressionError("the double implements top-level attributes only, not nested paths")
        return self._placeholders.name(token)

    def operand(self) -> Callable[[Item], dict[str, Any] | None]:
        token = self._tokens[self._at] if not self.at_end() else ""
        if token.startswith(":"):
            self.take()
            value = self._placeholders.value(token)
            return lambda item: value
        name = self.path()
        if self.peek_is("("):
            raise ExpressionError(f"the double does not implement the function {name}()")
        return lambda item: item.get(name)


def _compare(left: dict[str, Any] | None, right: dict[str, Any] | None, *, equal: bool) -> bool:
    """``=`` or ``<>``: a missing operand makes ``=`` false and ``<>`` true, as in DynamoDB."""
    if left is None or right is None:
        return not equal
    return values_equal(left, right) == equal


def _tokenize(expression: str) -> list[str]:
    tokens = []
    for match in _TOKEN.finditer(expression):
        operator, word, other = match.groups()
        token = operator or word or other
        if token is None:
            continue
        if word is not None and word.upper() in _UNSUPPORTED_KEYWORDS:
            raise ExpressionError(f"the double does not implement {word.upper()}")
        if other is not None and other not in (".", "["):
            raise ExpressionError(f"the double does not implement {other!r} in expressions")
        tokens.append(token)
    return tokens
