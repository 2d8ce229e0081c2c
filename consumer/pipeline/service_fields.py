"""The top-level fields the service writes into documents beside the item's attributes (pure)."""

from __future__ import annotations

from consumer.pipeline.drift import TYPED_FIELD

TTL_MARK_FIELD = "_ttl_expired"  # a TTL delete kept as its last state (CDC_TTL_DELETES=mark)
DELETED_FIELD = "_cdc_deleted"  # a tombstone: the item is deleted, or out of this index
DELETED_AT_FIELD = "_cdc_deleted_at"  # the tombstone's Unix second, for the reaper
SERVICE_FIELDS = (DELETED_FIELD, DELETED_AT_FIELD, TTL_MARK_FIELD, TYPED_FIELD)
