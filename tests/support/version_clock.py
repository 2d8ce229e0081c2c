"""A shard's running version clock, for tests that hand out versions record by record (the service
keeps the last version in its tasks and leases and calls ``next_version``)."""

from __future__ import annotations

from consumer.pipeline.versioning import MAX_VERSION, next_version


class VersionClock:
    """The running clock of one shard. Not thread-safe: one shard consumer owns it."""

    def __init__(self, start: int = 0) -> None:
        if not 0 <= start <= MAX_VERSION:
            raise ValueError(f"clock start {start} is outside 0 … 2^63 - 1")
        self._last = start

    @property
    def last(self) -> int:
        """The last version handed out, or the start value; checkpointed with the record."""
        return self._last

    def tick(self, approximate_second: int) -> int:
        """Hand out the version of the next record of the shard."""
        self._last = next_version(self._last, approximate_second)
        return self._last
