"""The external version written with every document: a lineage clock.

Sequence numbers are 21–40 digit integers (> 2^63 − 1) and their order across parent and child
shards is not documented, so they cannot be the version. Instead each shard carries a *clock*:

    version(r₀) = max(start + 1,         second(r₀) · 2^31)
    version(rᵢ) = max(version(rᵢ₋₁) + 1, second(rᵢ) · 2^31)

where ``second`` is the record's ApproximateCreationDateTime in whole Unix seconds and ``start``
is the clock's starting value:

* the last version of the parent shard (its lease's ``checkpointVersion`` at SHARD_END) for a
  child shard, or 0 for a shard whose parent we never read;
* the version stored with the checkpoint when a shard resumes after AFTER_SEQUENCE_NUMBER.

Why this is correct (docs/versioning.md has the full argument):

1. Strictly increasing along a shard: every step is at least the previous version + 1.
2. Strictly increasing across a split or rollover: a child starts above its parent's last version,
   and an item's changes only ever move from a shard to its descendant.
3. Deterministic: a shard's records never change, so replaying from a checkpoint with its stored
   version reproduces exactly the versions of the first pass. Duplicates, crashes and zombie
   workers therefore write equal versions (409: already applied) or lower ones (409: stale).
4. In range: ``second < 2^32`` (year 2106) keeps ``second · 2^31`` below 2^63; the counter part may
   carry into the next second under more than 2^31 changes per second, which keeps the order.
5. Timestamps only raise the clock: a skewed or equal timestamp cannot lower a version, so the
   order never depends on DynamoDB's clock, while versions stay close to wall time, which makes a
   lost clock state (deleted lease table) cost at most changes within one second.

Pure and thread-safe.
"""

from __future__ import annotations

from consumer.errors import RecordError

COUNTER_BITS = 31
MAX_VERSION = 2**63 - 1
MAX_SECOND = (MAX_VERSION >> COUNTER_BITS) - 1


def next_version(previous: int, approximate_second: int) -> int:
    """The version of the record that follows a record of version ``previous`` on the same lineage.

    Raises RecordError when the result cannot be represented as a Java long (0 … 2^63 − 1), so
    the record is dead-lettered instead of failing a whole bulk request.
    """
    if not 0 <= approximate_second <= MAX_SECOND:
        raise RecordError(f"ApproximateCreationDateTime second {approximate_second} is outside 0 … {MAX_SECOND}")
    version = max(previous + 1, approximate_second << COUNTER_BITS)
    if version > MAX_VERSION:
        raise RecordError(f"external version {version} exceeds 2^63 - 1")
    return version
