"""The index's settings and mappings: the mapping policy of docs/mapping.md, as one pure function.

OpenSearch fixes a field's type from the first value it sees, while a DynamoDB attribute may hold
a number on one item, a string on the next and a map on a third. The policy makes the mapping of
a field independent of which value arrives first, so no worker's documents depend on another's:

* ``managed`` (the default): every scalar field, whatever its JSON type, gets the same mapping,
  ``SCALAR_FIELD``: a ``keyword`` (exact: a number's canonical decimal text, a string as it is)
  with a ``.text`` sub-field (full text) and a ``.number`` sub-field (``double``, never coerced
  from a string; a non-number value is simply not indexed there). Maps are objects. No date or
  numeric detection.
* ``dynamic``: OpenSearch's own dynamic mapping for the item's attributes.

In both modes: the key attributes are mapped explicitly as ``SCALAR_FIELD`` (exact, searchable by
equality); the service's own fields (tombstone flag and time, the TTL mark, the typed form of
drifted attributes, ``consumer.pipeline.drift``) are mapped explicitly; ``index.mapping.coerce`` is
off, so a fraction sent to an integer field is refused (and diverted) instead of truncated; the
depth limit fits DynamoDB's 32 levels in the typed form.

A user template (``CDC_INDEX_TEMPLATE``) is merged first: its settings, properties and dynamic
templates win over ours, except that it may not map the key attributes other than as a keyword
or map the service's fields at all (``ConfigError`` naming the field).

Pure and thread-safe.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from consumer.errors import ConfigError
from consumer.pipeline.doc_ids import KeySchema
from consumer.pipeline.drift import METADATA_FIELDS, TYPED_FIELD
from consumer.pipeline.service_fields import DELETED_AT_FIELD, DELETED_FIELD, SERVICE_FIELDS, TTL_MARK_FIELD

MappingMode = Literal["managed", "dynamic"]

# Lucene refuses a keyword term above 32766 bytes; 8191 characters of up to 4 UTF-8 bytes each fit.
KEYWORD_IGNORE_ABOVE = 8191
SCALAR_FIELD: dict[str, Any] = {
    "type": "keyword",
    "ignore_above": KEYWORD_IGNORE_ABOVE,
    "fields": {
        "text": {"type": "text"},
        "number": {"type": "double", "coerce": False, "ignore_malformed": True},
    },
}
SERVICE_PROPERTIES: dict[str, Any] = {
    DELETED_FIELD: {"type": "boolean"},
    DELETED_AT_FIELD: {"type": "date", "format": "epoch_second"},
    TTL_MARK_FIELD: {"type": "boolean"},
    TYPED_FIELD: {"type": "object", "dynamic": True},
}
_SCALAR_KINDS = ("string", "long", "double", "boolean")
# Every scalar of the typed form gets SCALAR_FIELD in both modes: its layout keeps kinds apart.
TYPED_TEMPLATES = [
    {f"cdc_typed_{kind}": {"path_match": f"{TYPED_FIELD}.*", "match_mapping_type": kind, "mapping": SCALAR_FIELD}}
    for kind in _SCALAR_KINDS
]
MANAGED_TEMPLATES = [
    {f"cdc_scalar_{kind}": {"match_mapping_type": kind, "mapping": SCALAR_FIELD}} for kind in _SCALAR_KINDS
]
# DynamoDB nests up to 32 levels; the typed form doubles that (a tag object per level).
DEPTH_LIMIT = 80
# SCALAR_FIELD is three fields: the default limit of 1000 would allow only ~333 attribute paths.
TOTAL_FIELDS_LIMIT = 3000
SERVICE_SETTINGS: dict[str, Any] = {
    "index.mapping.coerce": False,
    "index.mapping.depth.limit": DEPTH_LIMIT,
}


@dataclass(frozen=True)
class IndexTemplate:
    """A user's settings and mappings (``CDC_INDEX_TEMPLATE``), as an index creation body has them."""

    settings: dict[str, Any] = field(default_factory=dict)
    mappings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Any, source: str = "CDC_INDEX_TEMPLATE") -> IndexTemplate:
        """From ``{"settings": …, "mappings": …}`` or an index template's ``{"template": {…}}``.

        Raises:
            ConfigError: naming ``source`` when the body has another shape.
        """
        if isinstance(body, dict) and isinstance(body.get("template"), dict):
            body = body["template"]
        if not isinstance(body, dict) or not set(body) <= {"settings", "mappings", "aliases"}:
            raise ConfigError(
                f"{source}: expected an object with 'settings' and/or 'mappings' (as in an index creation "
                f"request, or an index template's 'template'), got {_preview(body)}"
            )
        settings, mappings = body.get("settings", {}), body.get("mappings", {})
        if not isinstance(settings, dict) or not isinstance(mappings, dict):
            raise ConfigError(f"{source}: 'settings' and 'mappings' must be objects")
        return cls(_flatten_settings(settings), mappings)


NO_TEMPLATE = IndexTemplate()


def index_body(schema: KeySchema, mode: MappingMode = "managed", user: IndexTemplate = NO_TEMPLATE) -> dict[str, Any]:
    """The body that creates the index: settings and mappings as the module docstring says.

    Raises:
        ConfigError: when the user template maps a key attribute other than as a keyword, or maps
            one of the service's fields.
    """
    user_mappings = copy.deepcopy(user.mappings)
    user_properties = user_mappings.pop("properties", {})
    user_templates = user_mappings.pop("dynamic_templates", [])
    _check_user_properties(schema, user_properties)
    properties = {
        attribute.name: SCALAR_FIELD
        for attribute in schema.attributes
        if attribute.name not in METADATA_FIELDS and attribute.name not in SERVICE_FIELDS
    }
    properties.update(user_properties)
    properties.update(SERVICE_PROPERTIES)
    mappings: dict[str, Any] = {}
    if mode == "managed":
        mappings.update(date_detection=False, numeric_detection=False)
    mappings.update(user_mappings)
    mappings["dynamic_templates"] = merge_templates(user_templates, mode)
    mappings["properties"] = properties
    settings = {"index.mapping.total_fields.limit": TOTAL_FIELDS_LIMIT, **user.settings, **SERVICE_SETTINGS}
    return {"settings": settings, "mappings": mappings}


def existing_index_mapping(
    schema: KeySchema, current: dict[str, Any], mode: MappingMode, user: IndexTemplate = NO_TEMPLATE
) -> dict[str, Any]:
    """What to put on an index that exists already (``current`` is its mapping): the service's
    fields, the key attributes and the user's properties where they are not mapped yet, and our
    dynamic templates after the ones it has. Existing fields keep their types (OpenSearch cannot
    change them); documents that disagree with them are diverted (``consumer.pipeline.drift``).
    """
    body = index_body(schema, mode, user)["mappings"]
    mapped = current.get("properties", {})
    properties = {name: spec for name, spec in body["properties"].items() if name not in mapped}
    existing = [entry for entry in current.get("dynamic_templates", []) if isinstance(entry, dict)]
    names = {name for entry in existing for name in entry}
    templates = existing + [entry for entry in body["dynamic_templates"] if not set(entry) & names]
    update: dict[str, Any] = {"properties": properties, "dynamic_templates": templates}
    if mode == "managed" and "date_detection" not in current:
        update.update(date_detection=False, numeric_detection=False)
    return update


def merge_templates(user_templates: list[Any], mode: MappingMode) -> list[dict[str, Any]]:
    """The user's dynamic templates first (the first match wins), then the typed form's, then the
    managed policy's."""
    ours = TYPED_TEMPLATES + (MANAGED_TEMPLATES if mode == "managed" else [])
    return [*user_templates, *ours]


def key_mapping_problems(schema: KeySchema, properties: dict[str, Any]) -> list[str]:
    """Key attributes an existing mapping holds with a type that cannot take every key exactly."""
    problems = []
    for attribute in schema.attributes:
        mapped = properties.get(attribute.name)
        if isinstance(mapped, dict) and mapped.get("type", "object") != "keyword":
            problems.append(f"{attribute.name} is mapped as {mapped.get('type', 'object')}")
    return problems


def _check_user_properties(schema: KeySchema, properties: Any) -> None:
    if not isinstance(properties, dict):
        raise ConfigError("CDC_INDEX_TEMPLATE: mappings.properties must be an object")
    for name in SERVICE_FIELDS:
        if name in properties:
            raise ConfigError(
                f"CDC_INDEX_TEMPLATE maps field {name!r}, which the service writes itself "
                f"(reserved: {', '.join(SERVICE_FIELDS)}): remove it from the template"
            )
    for problem in key_mapping_problems(schema, properties):
        raise ConfigError(
            f"CDC_INDEX_TEMPLATE: key attribute {problem}; key attributes must stay exact and searchable "
            "by equality: map them as keyword, or leave them out of the template"
        )


def _flatten_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"index": {"refresh_interval": "5s"}}`` → ``{"index.refresh_interval": "5s"}``, so ours merge."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten_settings(value, name + "."))
        else:
            flat[name if name.startswith("index.") else f"index.{name}"] = value
    return flat


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
