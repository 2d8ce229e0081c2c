"""The projection rules the settings describe: one place, for the workers, audit and redrive."""

from __future__ import annotations

from consumer.config import Settings
from consumer.doc_ids import KeySchema
from consumer.projection import ProjectionRules
from consumer.shaping import FieldPath


def projection_rules(settings: Settings, schema: KeySchema) -> ProjectionRules:
    """The rules the settings describe (filters, TTL handling, the fields to keep, drop and mask)."""
    return ProjectionRules(
        event_names=frozenset(settings.event_names),
        patterns=settings.filter_patterns,
        filter_mode=settings.filter_mode,
        ttl_deletes=settings.ttl_deletes,
        include_fields=tuple(FieldPath.parse(text) for text in settings.include_fields),
        drop_fields=tuple(FieldPath.parse(text) for text in settings.drop_fields),
        mask_fields=tuple(FieldPath.parse(text) for text in settings.mask_fields),
        mask_key=settings.mask_secret,
        key_names=frozenset(attribute.name for attribute in schema.attributes),
    )
