"""Random change histories of a few items and the shards that carry them (a parent, and two
children after a split, routed by key), for the property tests of every delivery path."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from hypothesis import strategies as st

from tests.support.factories import stream_record

KEYS = [f"item-{i}" for i in range(5)]


@dataclass(frozen=True)
class Change:
    key: str
    deleted: bool
    second: int
    revision: int


@st.composite
def histories(draw: st.DrawFn, new_second_odds: int = 4) -> list[Change]:
    """Changes in write order; seconds never go backwards and often repeat (one change in
    ``new_second_odds`` starts a new second: the higher, the more changes share a second, where
    versions come from the clock's counter rather than the timestamp)."""
    second = 1_800_000_000
    changes = []
    for revision in range(draw(st.integers(1, 40))):
        second += draw(st.sampled_from([0] * (new_second_odds - 1) + [1]))
        changes.append(Change(draw(st.sampled_from(KEYS)), draw(st.booleans()), second, revision))
    return changes


def child_of(key: str) -> int:
    return zlib.crc32(key.encode()) % 2


def records_of(changes: list[Change], wire: bool = False) -> list[dict]:
    """Stream records of the changes, as boto3 gives them (``wire``: as the raw wire JSON has them)."""
    records = []
    for change in changes:
        keys = {"pk": {"S": change.key}}
        if change.deleted:
            records.append(stream_record("REMOVE", keys=keys, second=change.second, wire_timestamp=wire))
        else:
            image = {**keys, "revision": {"N": str(change.revision)}}
            records.append(
                stream_record("MODIFY", keys=keys, new_image=image, second=change.second, wire_timestamp=wire)
            )
    return records


def shards_of(changes: list[Change], split_at: int | None, wire: bool = False) -> list[list[dict]]:
    """[parent] or [parent, left child, right child], each a list of records in shard order."""
    if split_at is None:
        return [records_of(changes, wire)]
    after = changes[split_at:]
    return [
        records_of(changes[:split_at], wire),
        records_of([c for c in after if child_of(c.key) == 0], wire),
        records_of([c for c in after if child_of(c.key) == 1], wire),
    ]


def final_table(changes: list[Change]) -> dict[str, dict]:
    state: dict[str, dict] = {}
    for change in changes:
        if change.deleted:
            state.pop(change.key, None)
        else:
            state[change.key] = {"pk": change.key, "revision": change.revision}
    return state
