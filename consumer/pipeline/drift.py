"""Type drift: attributes whose shape the index cannot take, and the typed form they go to instead.

A DynamoDB attribute may be a map on one item and a string on another, or a list mixing maps and
numbers; OpenSearch cannot map one field both as an object and as a value, and a field mapped by
a user's template (say ``scaled_float``) refuses a string. Such an attribute is *diverted*: removed
from the document's top level and written, whole, into ``_cdc_typed`` in the *typed form*, where
every value is wrapped in an object whose one key names its JSON kind::

    "Paris"            → {"s": "Paris"}          12.5  → {"n": 12.5}
    true               → {"bool": true}          null  → {"null": true}
    {"city": "Paris"}  → {"m": {"city": {"s": "Paris"}}}
    [1, {"a": "x"}]    → {"l": [{"n": 1}, {"m": {"a": {"s": "x"}}}]}

An attribute name is always an object there and a kind tag always a value of one kind, so the
typed form can never conflict with itself, whatever the items hold. Names are escaped (``%`` →
``%25``, ``.`` → ``%2E``) because OpenSearch reads dots in names as paths. The rest of the document
stays as it is and searchable as usual; ``natural_document`` undoes the diversion exactly.

Which attributes to divert is decided from the document and the index's current mapping
(``conflicting_attributes``), or from the field OpenSearch's refusal names (``named_attributes``),
after OpenSearch refused the document; names OpenSearch refuses at the top level (its metadata
fields) and the service's own field names are diverted before sending (``reserved_attributes``).

Pure and thread-safe.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

TYPED_FIELD = "_cdc_typed"
# Names OpenSearch reserves for metadata: a document may not have them as top-level fields.
METADATA_FIELDS = frozenset(
    {
        "_id",
        "_index",
        "_source",
        "_routing",
        "_version",
        "_seq_no",
        "_primary_term",
        "_ignored",
        "_field_names",
        "_type",
        "_nested_path",
        "_size",
        "_data_stream_timestamp",
        "_doc_count",
        "_tier",
    }
)
_INTEGER_RANGES = {
    "long": (-(2**63), 2**63 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "short": (-(2**15), 2**15 - 1),
    "byte": (-(2**7), 2**7 - 1),
    "unsigned_long": (0, 2**64 - 1),
}
_FLOAT_TYPES = frozenset({"double", "float", "half_float", "scaled_float"})
_OBJECT_TYPES = frozenset({"object", "nested"})
# How OpenSearch names the field at fault: "failed to parse field [x] of type [date]", "object
# mapping for [x] tried to parse ...", "dynamic introduction of [x] within [_doc] is not allowed".
_NAMED_FIELD = re.compile(r"(?:field|mapper|mapping for|mapping|introduction of) \[([^\[\]]+)\]")


def typed_value(value: Any) -> dict[str, Any]:
    """The typed form of one JSON value (module docstring)."""
    if isinstance(value, dict):
        return {"m": {escape_name(name): typed_value(member) for name, member in value.items()}}
    if isinstance(value, list):
        return {"l": [typed_value(element) for element in value]}
    if value is None:
        return {"null": True}
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, (int, float, decimal.Decimal)):
        return {"n": value}
    return {"s": value}


def natural_value(typed: Any) -> Any:
    """The JSON value a typed form stands for. Raises ValueError on something that is no typed form."""
    if not isinstance(typed, dict) or len(typed) != 1:
        raise ValueError(f"not a typed value: {typed!r}")
    ((kind, inner),) = typed.items()
    if kind == "m":
        return {unescape_name(name): natural_value(member) for name, member in inner.items()}
    if kind == "l":
        return [natural_value(element) for element in inner]
    if kind == "null":
        return None
    if kind in ("s", "n", "bool"):
        return inner
    raise ValueError(f"unknown kind {kind!r} in typed value")


def escape_name(name: str) -> str:
    return name.replace("%", "%25").replace(".", "%2E")


def unescape_name(name: str) -> str:
    return name.replace("%2E", ".").replace("%25", "%")


def divert(document: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """A copy of ``document`` with the attributes ``names`` moved into the typed form."""
    diverted = dict(document)
    typed = dict(diverted.get(TYPED_FIELD) or {}) if TYPED_FIELD not in names else {}
    for name in names:
        if name in diverted:
            typed[escape_name(name)] = typed_value(diverted.pop(name))
    diverted[TYPED_FIELD] = typed
    return diverted


def natural_document(source: dict[str, Any]) -> dict[str, Any]:
    """The document as the item has it: diverted attributes put back where they were."""
    if TYPED_FIELD not in source:
        return source
    natural = {name: value for name, value in source.items() if name != TYPED_FIELD}
    for name, typed in (source[TYPED_FIELD] or {}).items():
        natural[unescape_name(name)] = natural_value(typed)
    return natural


def reserved_attributes(document: Mapping[str, Any], service_fields: Collection[str]) -> list[str]:
    """Top-level attributes that can never stay where they are: OpenSearch's metadata names and the
    service's own field names (an item attribute ``_cdc_deleted`` must not make a tombstone)."""
    return [name for name in document if name in METADATA_FIELDS or name in service_fields]


def conflicting_attributes(
    document: Mapping[str, Any], mapping: Mapping[str, Any], protected: Collection[str] = ()
) -> list[str]:
    """Top-level attributes of ``document`` that the index mapping ``mapping`` (an index's
    ``mappings``: ``properties``, ``dynamic``) cannot take, or that conflict within the document.
    ``protected`` attributes (the keys, the service's fields) are never named."""
    properties = mapping.get("properties") or {}
    dynamic = mapping.get("dynamic", True)
    names = [
        name
        for name, value in document.items()
        if name not in protected and (name in METADATA_FIELDS or not _fits(_segments(name), value, properties, dynamic))
    ]
    return names + [name for name in _self_conflicts(document) if name not in protected and name not in names]


def named_attributes(document: Mapping[str, Any], error: str, protected: Collection[str] = ()) -> list[str]:
    """Top-level attributes that OpenSearch's refusal ``error`` names as the field at fault, for
    refusals only OpenSearch can judge (a date field refusing a value's format)."""
    named = _NAMED_FIELD.findall(error)
    return [
        name
        for name in document
        if name not in protected and any(path == name or path.startswith(name + ".") for path in named)
    ]


def _segments(name: str) -> list[str]:
    return name.split(".")


def _fits(path: list[str], value: Any, properties: Mapping[str, Any], dynamic: Any) -> bool:
    """Whether ``value`` at ``path`` (segments below ``properties``) fits the mapping."""
    node: Mapping[str, Any] = properties
    for segment in path[:-1]:
        spec = node.get(segment)
        if spec is None:
            return _unmapped_fits(dynamic)
        if not _is_object(spec):
            return False  # a value's field, asked to hold an object
        if spec.get("enabled") is False:
            return True
        node, dynamic = spec.get("properties") or {}, spec.get("dynamic", dynamic)
    spec = node.get(path[-1])
    if spec is None:
        return _unmapped_fits(dynamic)
    return _value_fits(spec, value, dynamic)


def _value_fits(spec: Mapping[str, Any], value: Any, dynamic: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list):
        return all(_value_fits(spec, element, dynamic) for element in value)
    if isinstance(value, dict):
        if not _is_object(spec):
            return False
        if spec.get("enabled") is False:
            return True
        inner, inner_dynamic = spec.get("properties") or {}, spec.get("dynamic", dynamic)
        return all(_fits(_segments(name), member, inner, inner_dynamic) for name, member in value.items())
    if _is_object(spec):
        return spec.get("enabled") is False  # a disabled object skips whatever it is given
    return _scalar_fits(str(spec.get("type")), value)


def _scalar_fits(field_type: str, value: Any) -> bool:
    is_number = isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)
    if field_type in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[field_type]
        integral = isinstance(value, int) or (isinstance(value, decimal.Decimal) and value == value.to_integral())
        return is_number and integral and low <= value <= high
    if field_type in _FLOAT_TYPES:
        return is_number
    if field_type == "boolean":
        return isinstance(value, bool)
    # flat_object takes only objects; keyword, text, date, ip, ...: OpenSearch judges the rest, and
    # its error names the field (conflicting_attributes reads it).
    return field_type != "flat_object"


def _is_object(spec: Mapping[str, Any]) -> bool:
    return spec.get("type", "object") in _OBJECT_TYPES or "properties" in spec


def _unmapped_fits(dynamic: Any) -> bool:
    return str(dynamic).lower() != "strict"


def _self_conflicts(document: Mapping[str, Any]) -> list[str]:
    """Top-level attributes that hold both an object and a value at one path (lists are transparent
    to OpenSearch, and dots in names are paths), e.g. ``[1, {"a": 2}]`` or ``{"a": 1, "a.b": 2}``."""
    kinds: dict[tuple[str, ...], tuple[str, str]] = {}
    conflicting: list[str] = []

    def record(path: tuple[str, ...], kind: str, top: str) -> None:
        first_kind, first_top = kinds.setdefault(path, (kind, top))
        if first_kind != kind:
            conflicting.extend(name for name in dict.fromkeys((first_top, top)) if name not in conflicting)

    stack: list[tuple[str, tuple[str, ...], Any]] = []
    for name, value in document.items():
        stack.append((name, _path((), name, name, record), value))
    while stack:
        top, path, value = stack.pop()
        if isinstance(value, list):
            stack.extend((top, path, element) for element in value)
        elif isinstance(value, dict):
            record(path, "object", top)
            stack.extend((top, _path(path, name, top, record), member) for name, member in value.items())
        elif value is not None:
            record(path, "value", top)
    return conflicting


def _path(
    parent: tuple[str, ...], name: str, top: str, record: Callable[[tuple[str, ...], str, str], None]
) -> tuple[str, ...]:
    """The path of member ``name`` of ``parent``; the objects a dotted name implies are recorded."""
    path = parent
    segments = _segments(name)
    for segment in segments[:-1]:
        path += (segment,)
        record(path, "object", top)
    return path + (segments[-1],)
