"""An in-memory DynamoDB stream with scriptable topology: the state behind the test stream server.

Pure (no I/O, no threads of its own). It holds what DynamoDB Streams holds and moto cannot:

* shards with real-looking ids (``shardId-<20 digits>-<8 hex>``, increasing in creation order), a
  parent, a hash key range and a ``SequenceNumberRange``;
* records whose sequence numbers are 22-digit strings above 2^63 - 1, strictly increasing across
  the whole stream and never contiguous;
* scripted topology: ``split`` (two children share the parent's hash range), ``rollover`` (one
  child, same range), ``close``, and ``trim`` (the trim horizon moves, old records are gone).

A change goes to the open shard whose hash range covers md5 of its canonical ``Keys``, so every
change of one item stays in one shard lineage, in order.

Read positions are integers: "the next record to read is the first one with seq >= position".
The wire layer (``stream_protocol``) turns them into iterator tokens.

Thread-safe: every public method holds the stream's lock (the HTTP server calls it from many threads).
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.support.stream_records import partition_hash, shaped_record, stream_label, wire_value

HASH_SPACE = 2**128
FIRST_SEQUENCE = 4_100_000_000_000_000_000_017  # 22 digits, > 2^63 - 1 like DynamoDB's
MAX_READ_RECORDS = 1000
MAX_READ_BYTES = 1024 * 1024
ITERATOR_TYPES = ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")
VIEW_TYPES = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")
EVENT_NAMES = ("INSERT", "MODIFY", "REMOVE")
ACCOUNT_ID = "123456789012"  # moto's default account, so ARNs look alike on both backends

Clock = Callable[[], float]


class StreamModelError(Exception):
    """A request the stream answers with an AWS error; ``code`` is the wire error code."""

    code = "InternalServerError"


class ResourceNotFound(StreamModelError):
    code = "ResourceNotFoundException"


class TrimmedDataAccess(StreamModelError):
    code = "TrimmedDataAccessException"


class InvalidRequest(StreamModelError):
    code = "ValidationException"


@dataclass(frozen=True)
class ShardInfo:
    """A snapshot of one shard, as a test may inspect it."""

    shard_id: str
    parent_shard_id: str | None
    hash_range: tuple[int, int]
    starting_sequence_number: str
    ending_sequence_number: str | None
    child_shard_ids: tuple[str, ...]

    @property
    def is_closed(self) -> bool:
        return self.ending_sequence_number is not None


@dataclass(frozen=True)
class Appended:
    """Where ``append`` put a change."""

    shard_id: str
    sequence_number: str


@dataclass(frozen=True)
class ReadResult:
    """Records from one read; ``next_position`` is None once a closed shard is read to its end."""

    records: list[dict[str, Any]]
    next_position: int | None


@dataclass
class _Shard:
    shard_id: str
    parent_shard_id: str | None
    hash_range: tuple[int, int]
    starting: int
    ending: int | None = None
    seqs: list[int] = field(default_factory=list)  # parallel to records, for bisect
    records: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)  # (appended_at, size, record)
    last_seq: int | None = None  # highest seq ever appended; trimming does not lower it
    trimmed_through: int | None = None  # highest seq trimmed away
    children: list[str] = field(default_factory=list)
    vanished: bool = False  # its data is gone: ResourceNotFound on iterators and reads
    first_seq: int | None = None  # the first record ever appended (trimming does not change it)
    unlisted: bool = False  # DescribeStream no longer shows it

    def info(self) -> ShardInfo:
        return ShardInfo(
            self.shard_id,
            self.parent_shard_id,
            self.hash_range,
            str(self.starting),
            None if self.ending is None else str(self.ending),
            tuple(self.children),
        )


class StreamModel:
    """One stream of one table. See the module docstring for what it guarantees."""

    def __init__(
        self,
        table_name: str,
        key_schema: list[dict[str, str]],
        view_type: str = "NEW_AND_OLD_IMAGES",
        shard_count: int = 1,
        *,
        clock: Clock = time.time,
        region: str = "us-east-1",
        label: str | None = None,
        first_sequence: int = FIRST_SEQUENCE,
    ) -> None:
        if view_type not in VIEW_TYPES:
            raise ValueError(f"view_type must be one of {VIEW_TYPES}, got {view_type!r}")
        if shard_count < 1:
            raise ValueError("a stream needs at least one shard")
        self.table_name = table_name
        self.key_schema = [dict(element) for element in key_schema]
        self.view_type = view_type
        self.region = region
        self._clock = clock
        self.created_at = clock()
        self.label = label or stream_label(self.created_at)
        self.arn = f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{table_name}/stream/{self.label}"
        self._lock = threading.RLock()
        self._last_seq = first_sequence
        self._seq_count = 0
        self._last_id_ms = 0
        self._shards: dict[str, _Shard] = {}
        size = HASH_SPACE // shard_count
        for index in range(shard_count):
            high = HASH_SPACE - 1 if index == shard_count - 1 else (index + 1) * size - 1
            self._open_shard(None, (index * size, high))

    # -- topology ---------------------------------------------------------------------------------

    def shards(self) -> list[ShardInfo]:
        """Every shard still listed, in creation (= shard id) order: parents before children."""
        with self._lock:
            return [self._shards[key].info() for key in sorted(self._shards) if not self._shards[key].unlisted]

    def shard(self, shard_id: str) -> ShardInfo:
        with self._lock:
            return self._get(shard_id).info()

    def split(self, shard_id: str) -> tuple[str, str]:
        """Close an open shard and open two children, each with half of its hash range."""
        with self._lock:
            low, high = self._get(shard_id).hash_range
            if high <= low:
                raise ValueError(f"{shard_id} covers a single hash value and cannot split")
            self._close(shard_id)
            middle = (low + high) // 2
            return (
                self._open_shard(shard_id, (low, middle)).shard_id,
                self._open_shard(shard_id, (middle + 1, high)).shard_id,
            )

    def rollover(self, shard_id: str) -> str:
        """Close an open shard and open one child with the same hash range (DynamoDB does this every
        few hours)."""
        with self._lock:
            parent = self._close(shard_id)
            return self._open_shard(shard_id, parent.hash_range).shard_id

    def close(self, shard_id: str) -> None:
        """Close an open shard without children: its keys have no open shard until a test opens one."""
        with self._lock:
            self._close(shard_id)

    def first_sequence(self, shard_id: str) -> int | None:
        """The sequence number of the shard's first record ever appended (None while it has none)."""
        with self._lock:
            shard = self._shards.get(shard_id)
            return shard.first_seq if shard is not None else None

    def vanish(self, shard_id: str, listed: bool = True) -> None:
        """Make a closed shard's data gone: iterators and reads answer ResourceNotFound; with
        ``listed`` DescribeStream still shows it (as DynamoDB can), otherwise it is dropped."""
        with self._lock:
            shard = self._get(shard_id)
            if shard.ending is None:
                raise ValueError(f"{shard_id} is open; only a closed shard's data can expire")
            shard.vanished = True
            if not listed:
                shard.unlisted = True

    # -- records ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def all_at_once(self) -> Iterator[None]:
        """Records appended inside the block are seen by readers all at once: a read waits for the
        block's end (a backlog written while a consumer already reads the stream)."""
        with self._lock:
            yield

    def append(self, record: dict[str, Any]) -> Appended:
        """Add one change (a GetRecords record, boto3 or wire form) to the shard its keys route to.

        The stream assigns ``SequenceNumber``, ``SizeBytes`` and ``StreamViewType`` and keeps only the
        images its view type carries; ``ApproximateCreationDateTime`` (now, if absent) is rounded down
        to the second, as DynamoDB does.
        """
        wire = wire_value(record)
        event_name = wire.get("eventName")
        if event_name not in EVENT_NAMES:
            raise ValueError(f"eventName must be one of {EVENT_NAMES}, got {event_name!r}")
        keys = wire.get("dynamodb", {}).get("Keys")
        if not isinstance(keys, dict) or not keys:
            raise ValueError("a change needs dynamodb.Keys")
        with self._lock:
            shard = self._route(partition_hash(keys))
            seq = self._next_seq()
            stored = shaped_record(wire, seq, self.arn, self.view_type, self.region, self._clock())
            shard.seqs.append(seq)
            shard.records.append((self._clock(), stored["dynamodb"]["SizeBytes"], stored))
            shard.last_seq = seq
            if shard.first_seq is None:
                shard.first_seq = seq
            return Appended(shard.shard_id, str(seq))

    def shard_for(self, keys: dict[str, Any]) -> str:
        """The open shard a change of ``keys`` would go to now."""
        with self._lock:
            return self._route(partition_hash(wire_value(keys))).shard_id

    def records(self, shard_id: str | None = None) -> list[dict[str, Any]]:
        """Copies of the untrimmed records of one shard, or of every shard in listing order."""
        with self._lock:
            shards = [self._get(shard_id)] if shard_id else [self._shards[key] for key in sorted(self._shards)]
            return [copy.deepcopy(record) for shard in shards for _, _, record in shard.records]

    def trim(
        self,
        before_sequence_number: str | int | None = None,
        *,
        count: int | None = None,
        older_than: float | None = None,
        drop_closed: bool = False,
    ) -> int:
        """Remove the oldest records, as retention does; returns how many were removed.

        Exactly one criterion: records with a sequence number below ``before_sequence_number``, the
        ``count`` oldest records of the stream, or records appended before clock time ``older_than``.
        ``drop_closed`` also removes closed shards left without records from the listing (what
        DynamoDB does to shards older than 24 h).
        """
        if sum(criterion is not None for criterion in (before_sequence_number, count, older_than)) != 1:
            raise ValueError("give exactly one of before_sequence_number, count, older_than")
        with self._lock:
            if count is not None:
                before_sequence_number = self._count_cutoff(count)
            removed = sum(
                self._trim_shard(shard, before_sequence_number, older_than) for shard in self._shards.values()
            )
            if drop_closed:
                for key in [
                    key for key, shard in self._shards.items() if shard.ending is not None and not shard.records
                ]:
                    del self._shards[key]
            return removed

    # -- reading ----------------------------------------------------------------------------------

    def iterator_position(self, shard_id: str, iterator_type: str, sequence_number: str | None = None) -> int:
        """The read position GetShardIterator names, validated as DynamoDB Streams does."""
        with self._lock:
            shard = self._get(shard_id, readable=True)
            if iterator_type == "TRIM_HORIZON":
                return _horizon(shard)
            if iterator_type == "LATEST":
                return shard.starting if shard.last_seq is None else shard.last_seq + 1
            if iterator_type not in ITERATOR_TYPES:
                raise InvalidRequest(
                    f"1 validation error detected: Value '{iterator_type}' at 'shardIteratorType' failed to "
                    f"satisfy constraint: Member must satisfy enum value set: {list(ITERATOR_TYPES)}"
                )
            seq = _parse_sequence(sequence_number, iterator_type)
            position = seq if iterator_type == "AT_SEQUENCE_NUMBER" else seq + 1
            _check_not_trimmed(shard, position)
            if not _belongs(shard, seq):
                raise InvalidRequest(f"Invalid SequenceNumber {sequence_number} for shard {shard_id}")
            return position

    def read(
        self, shard_id: str, position: int, limit: int = MAX_READ_RECORDS, max_bytes: int = MAX_READ_BYTES
    ) -> ReadResult:
        """Up to ``limit`` records (and ~``max_bytes``, at least one) from ``position`` on."""
        with self._lock:
            shard = self._get(shard_id, readable=True)
            _check_not_trimmed(shard, position)
            start = bisect.bisect_left(shard.seqs, position)
            records: list[dict[str, Any]] = []
            total = 0
            for _, size, record in shard.records[start : start + limit]:
                if records and total + size > max_bytes:
                    break
                records.append(record)
                total += size
            next_position = int(records[-1]["dynamodb"]["SequenceNumber"]) + 1 if records else position
            at_end = shard.ending is not None and bisect.bisect_left(shard.seqs, next_position) == len(shard.seqs)
            return ReadResult(records, None if at_end else next_position)

    # -- internals --------------------------------------------------------------------------------

    def _get(self, shard_id: str, readable: bool = False) -> _Shard:
        shard = self._shards.get(shard_id)
        if shard is None or (readable and shard.vanished):
            raise ResourceNotFound(f"Requested resource not found: Shard: {shard_id} in Stream: {self.arn} not found")
        return shard

    def _route(self, key_hash: int) -> _Shard:
        for shard in self._shards.values():
            low, high = shard.hash_range
            if shard.ending is None and low <= key_hash <= high:
                return shard
        raise ValueError(f"no open shard of {self.arn} covers hash {key_hash:032x}")

    def _open_shard(self, parent_id: str | None, hash_range: tuple[int, int]) -> _Shard:
        shard = _Shard(self._next_shard_id(), parent_id, hash_range, self._next_seq())
        self._shards[shard.shard_id] = shard
        if parent_id:
            self._shards[parent_id].children.append(shard.shard_id)
        return shard

    def _close(self, shard_id: str) -> _Shard:
        shard = self._get(shard_id)
        if shard.ending is not None:
            raise ValueError(f"{shard_id} is already closed")
        shard.ending = shard.starting if shard.last_seq is None else shard.last_seq
        return shard

    def _next_shard_id(self) -> str:
        # The 20 digits are creation milliseconds, bumped so ids sort in creation order.
        self._last_id_ms = max(int(self._clock() * 1000), self._last_id_ms + 1)
        suffix = hashlib.md5(f"{self.arn}/{self._last_id_ms}".encode(), usedforsecurity=False).hexdigest()[:8]
        return f"shardId-{self._last_id_ms:020d}-{suffix}"

    def _next_seq(self) -> int:
        # Gaps of 100..9_100 between consecutive numbers: never contiguous, still strictly increasing.
        self._seq_count += 1
        self._last_seq += 100 + (self._seq_count * 7_919) % 9_001
        return self._last_seq

    def _count_cutoff(self, count: int) -> int:
        seqs = sorted(seq for shard in self._shards.values() for seq in shard.seqs)
        if count <= 0 or not seqs:
            return 0
        return seqs[min(count, len(seqs)) - 1] + 1

    @staticmethod
    def _trim_shard(shard: _Shard, before: str | int | None, older_than: float | None) -> int:
        cut = 0
        for appended_at, _, record in shard.records:
            seq = int(record["dynamodb"]["SequenceNumber"])
            if (before is not None and seq < int(before)) or (older_than is not None and appended_at < older_than):
                cut += 1
            else:
                break
        if cut:
            shard.trimmed_through = shard.seqs[cut - 1]
            del shard.seqs[:cut], shard.records[:cut]
        return cut


def _horizon(shard: _Shard) -> int:
    return shard.starting if shard.trimmed_through is None else shard.trimmed_through + 1


def _check_not_trimmed(shard: _Shard, position: int) -> None:
    if shard.trimmed_through is not None and position <= shard.trimmed_through:
        raise TrimmedDataAccess(
            f"The operation attempted to read past the oldest stream record in shard {shard.shard_id}: "
            f"records up to {shard.trimmed_through} have been trimmed"
        )


def _belongs(shard: _Shard, seq: int) -> bool:
    """A record of this shard, its starting number, or a number it held before trimming."""
    if seq == shard.starting or (shard.trimmed_through is not None and shard.starting <= seq <= shard.trimmed_through):
        return True
    index = bisect.bisect_left(shard.seqs, seq)
    return index < len(shard.seqs) and shard.seqs[index] == seq


def _parse_sequence(sequence_number: str | None, iterator_type: str) -> int:
    if not isinstance(sequence_number, str) or not (sequence_number.isascii() and sequence_number.isdigit()):
        raise InvalidRequest(f"Invalid SequenceNumber {sequence_number!r} for ShardIteratorType {iterator_type}")
    return int(sequence_number)
