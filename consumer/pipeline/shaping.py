"""Field paths and the document edits they drive: keep only some fields, drop some, mask some (pure).

A *field path* names attributes inside a JSON document: segments separated by dots go into maps
(``customer.email``), and a segment ending in ``[]`` goes into every element of a list
(``items[].email``, or ``emails[]`` for the elements themselves). Paths that lead nowhere in a
document change nothing there.

Masking replaces a value by a keyed digest of its JSON text: ``"hmac-sha256:<hex>"`` (HMAC-SHA256
with the operator's key), or ``"sha256:<hex>"`` when the operator explicitly chose unkeyed masking.
Equal values give equal digests, so masked fields can still be matched for equality, but without
the key no dictionary of likely values (emails, phone numbers) can undo them.

Thread-safe.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from consumer.pipeline.attributes import dumps_json

_MISSING = object()


@dataclass(frozen=True)
class FieldPath:
    """A parsed field path: ``segments`` of ``(name, each)``, ``each`` meaning "every list element"."""

    text: str
    segments: tuple[tuple[str, bool], ...]

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        """Raises ValueError naming what is wrong with ``text``."""
        segments = []
        for part in text.split("."):
            each = part.endswith("[]")
            name = part[:-2] if each else part
            if not name or "[" in name or "]" in name:
                raise ValueError(f"{text!r} is not a field path (e.g. customer.email, items[].email, tags[])")
            segments.append((name, each))
        return cls(text, tuple(segments))


def include_only(document: dict[str, Any], paths: tuple[FieldPath, ...], always: frozenset[str]) -> dict[str, Any]:
    """A new document holding only the fields ``paths`` name, plus the top-level ``always`` ones."""
    trie: dict[tuple[str, bool], Any] = {}
    for path in paths:
        node = trie
        for segment in path.segments:
            node = node.setdefault(segment, {})
    kept = _select(document, trie)
    assert isinstance(kept, dict)
    kept.update({name: document[name] for name in always if name in document})
    return kept


def _select(value: Any, trie: dict[tuple[str, bool], Any]) -> Any:
    if not trie:
        return value
    if not isinstance(value, dict):
        return _MISSING
    kept: dict[str, Any] = {}
    for (name, each), below in trie.items():
        if name not in value:
            continue
        child = value[name]
        if each:
            if isinstance(child, list):
                kept[name] = [picked for element in child if (picked := _select(element, below)) is not _MISSING]
        elif (picked := _select(child, below)) is not _MISSING:
            kept[name] = picked
    return kept


def drop(document: dict[str, Any], path: FieldPath) -> None:
    """Remove the fields ``path`` names (in place); ``tags[]`` as the last segment empties the list."""
    _edit(document, path.segments, lambda value: _MISSING)


def mask(document: dict[str, Any], path: FieldPath, key: bytes | None) -> None:
    """Replace the values ``path`` names by their digest (in place); see the module docstring."""
    _edit(document, path.segments, lambda value: masked(value, key))


def masked(value: Any, key: bytes | None) -> str:
    """The digest that stands for ``value``: keyed when ``key`` is given."""
    text = dumps_json(value, option=orjson.OPT_SORT_KEYS)
    if key is None:
        return "sha256:" + hashlib.sha256(text).hexdigest()
    return "hmac-sha256:" + hmac.new(key, text, hashlib.sha256).hexdigest()


def _edit(container: Any, segments: tuple[tuple[str, bool], ...], change: Any) -> None:
    """Apply ``change`` (value → new value, or _MISSING to remove) where ``segments`` lead."""
    if not isinstance(container, dict):
        return
    (name, each), rest = segments[0], segments[1:]
    if name not in container:
        return
    child = container[name]
    if each:
        if not isinstance(child, list):
            return
        if rest:
            for element in child:
                _edit(element, rest, change)
        else:
            container[name] = [new for element in child if (new := change(element)) is not _MISSING]
        return
    if rest:
        _edit(child, rest, change)
        return
    new = change(child)
    if new is _MISSING:
        del container[name]
    else:
        container[name] = new
