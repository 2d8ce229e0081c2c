"""Dead-letter destinations for records that cannot be indexed (poison records).

A dead letter (``consumer.pipeline.letters``) holds what is needed to understand and redrive a record:
its identity and keys, its shaped image, its shard id and sequence number, the error, the attempts
and when it happened, serialised by ``to_json`` — one JSON object, the same for every destination:

* ``DeadLetterFile``: appended to a local JSON-lines file, flushed and fsync'ed;
* ``DeadLetterQueue``: one SQS message per letter (SendMessageBatch, at most 10 per call);
* ``DeadLetterObjects``: one S3 object of JSON lines per write, under an idempotent key.

``write`` returns only once every letter is durable, because the shard's checkpoint moves past the
records right after; otherwise it raises (OSError, DeadLetterError), and the batch processor writes
them again until they are durable: the shard waits, it never moves past a record that is neither
applied nor dead-lettered. Delivery is at least once: a retried batch may send a letter to SQS
again (S3 overwrites the same key). All destinations are thread-safe.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import random
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from consumer.aws.accounting import Observer, observed_call
from consumer.aws.backoff import backoff_delay
from consumer.errors import ConfigError, DeadLetterError, Interrupted
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.pipeline.letters import DeadLetter, to_json

log = structlog.get_logger(__name__)

SQS_MAX_MESSAGE_BYTES = 256 * 1024  # per message and per SendMessageBatch call
SQS_MAX_BATCH_ENTRIES = 10
_KEPT_ERROR_CHARS = 2000


class DeadLetterSink(Protocol):
    """A destination: ``kind`` names it in metrics (file, sqs, s3)."""

    kind: str

    def write(self, letters: list[DeadLetter]) -> None: ...


class DurableDeadLetters:
    """Writes dead letters to a destination until they are durable: a refusal (S3 down, queue gone,
    disk full), or any failure at all, is retried with backoff while
    ``cdc_dead_letter_writes_total{outcome="error"}`` counts it and readiness says why, so the shard
    waits instead of moving past its records. Thread-safe."""

    def __init__(
        self,
        destination: DeadLetterSink,
        metrics: Metrics,
        health: Health | None = None,
        retry_base_seconds: float = 0.1,
        retry_cap_seconds: float = 10.0,
    ) -> None:
        self._destination = destination
        self._kind = destination.kind
        self._metrics = metrics
        self._health = health
        self._retry_base = retry_base_seconds
        self._retry_cap = retry_cap_seconds
        self._rng = random.Random()

    def write(self, letters: list[DeadLetter], stop: threading.Event) -> None:
        """Return once ``letters`` are durable. Raises Interrupted when ``stop`` is set first."""
        attempt = 0
        while True:
            try:
                self._destination.write(letters)
            except Exception as exc:  # noqa: BLE001 - not durable, whatever the reason: written again (docstring)
                self._metrics.dead_letter_writes.labels(destination=self._kind, outcome="error").inc()
                self._set_problem(f"dead-letter destination {self._kind} refuses writes: {type(exc).__name__}: {exc}")
                delay = backoff_delay(attempt, self._retry_base, self._retry_cap, self._rng)
                log.error(
                    "dead_letter_write_failed",
                    destination=self._kind,
                    letters=len(letters),
                    error=f"{type(exc).__name__}: {exc}",
                )
                attempt += 1
                if stop.wait(delay):
                    raise Interrupted(f"stop requested while {len(letters)} dead letters awaited a retry") from exc
                continue
            self._metrics.dead_letter_writes.labels(destination=self._kind, outcome="ok").inc()
            self._set_problem(None)
            return

    def _set_problem(self, problem: str | None) -> None:
        if self._health is not None:
            self._health.set_condition("dead_letters", problem)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class DeadLetterFile:
    """Appends dead letters to a local JSON-lines file, whole lines only.

    A write the disk cuts short (full, quota, a file size limit) leaves part of a line behind; the
    batch is then written again, and a fragment followed by the whole letter would be a line no one
    can read. So every write first cuts a torn tail off the file (a last line without its newline,
    left by a failed write or a crash in the middle of one: never acknowledged, so its batch is
    written again), and a write that fails truncates the file back to where it began. The letters
    are on disk (fsync) before ``write`` returns. One process per file.
    """

    kind = "file"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    def write(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        now = _now()
        lines = b"".join(to_json(letter, now) + b"\n" for letter in letters)
        with self._lock:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            created = not self._path.exists()
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
            try:
                start = self._cut_torn_tail(fd)
                try:
                    _write_all(fd, lines)
                    os.fsync(fd)
                except BaseException:
                    with contextlib.suppress(OSError):  # else the next write cuts the fragment
                        os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)
            if created:
                _fsync_directory(self._path.parent)

    def _cut_torn_tail(self, fd: int) -> int:
        """Truncate the file after its last newline; returns its size then."""
        size = os.fstat(fd).st_size
        whole = _end_of_last_line(fd, size)
        if whole < size:
            os.ftruncate(fd, whole)
            log.warning("dead_letter_file_repaired", path=str(self._path), removed_bytes=size - whole)
        return whole


def _end_of_last_line(fd: int, size: int, step: int = 64 * 1024) -> int:
    """The offset just past the file's last newline (0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - step)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(path: Path) -> None:
    """Make a new file's directory entry durable too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DeadLetterQueue:
    """Sends each dead letter as one message to a standard SQS queue.

    A letter whose JSON exceeds SQS's 256 KiB is sent with its ``record`` cut down to the event id,
    event name, keys and sequence number (enough to redrive it from the table) plus a note, and is
    logged as ``dead_letter_truncated``: never dropped. Entries SQS reports as ``Failed`` are sent
    again up to ``attempts`` times; then DeadLetterError. Whole-call failures are retried by botocore
    (standard mode) and then raised as DeadLetterError. Thread-safe (stateless besides the client).
    """

    kind = "sqs"

    def __init__(self, client: Any, queue_url: str, observe: Observer | None = None, attempts: int = 5) -> None:
        self._client = client
        self._queue_url = queue_url
        self._observe = observe
        self._attempts = attempts
        self._pause = threading.Event()  # never set: waits between resends of failed entries

    @property
    def queue_url(self) -> str:
        return self._queue_url

    @classmethod
    def connect(cls, client: Any, queue: str, observe: Observer | None = None) -> DeadLetterQueue:
        """The queue named by ``queue`` (a URL or a name), checked to exist with GetQueueUrl.

        Raises:
            ConfigError: the queue does not exist or may not be looked up.
        """
        name, owner = _queue_name_and_owner(queue)
        kwargs = {"QueueName": name, **({"QueueOwnerAWSAccountId": owner} if owner else {})}
        try:
            url = observed_call(client, "get_queue_url", observe, **kwargs)["QueueUrl"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
                raise ConfigError(f"CDC_DEAD_LETTER_DESTINATION: SQS queue {queue!r} does not exist") from None
            raise ConfigError(f"CDC_DEAD_LETTER_DESTINATION: SQS queue {queue!r} cannot be looked up: {exc}") from exc
        except BotoCoreError as exc:
            raise DeadLetterError(f"SQS queue {queue!r} could not be looked up: {exc}") from exc
        return cls(client, queue if queue.startswith("https://") or queue.startswith("http://") else url, observe)

    def write(self, letters: list[DeadLetter]) -> None:
        now = _now()
        pending = {str(i): self._body(letter, now) for i, letter in enumerate(letters)}
        for attempt in range(self._attempts):
            failed: dict[str, str] = {}
            for chunk in _chunks(list(pending.items())):
                failed.update(self._send(chunk))
            if not failed:
                return
            pending = {entry_id: pending[entry_id] for entry_id in failed}
            log.warning("dead_letters_refused", failed=len(failed), errors=sorted(set(failed.values()))[:3])
            if attempt + 1 < self._attempts:
                self._pause.wait(backoff_delay(attempt, 0.1, 2.0))
        raise DeadLetterError(f"SQS refused {len(pending)} dead letters after {self._attempts} attempts")

    def _send(self, chunk: list[tuple[str, str]]) -> dict[str, str]:
        """Send one batch; the ids of the entries SQS failed, with their error codes."""
        entries = [{"Id": entry_id, "MessageBody": body} for entry_id, body in chunk]
        try:
            answer = observed_call(
                self._client, "send_message_batch", self._observe, QueueUrl=self._queue_url, Entries=entries
            )
        except (ClientError, BotoCoreError) as exc:
            raise DeadLetterError(f"SendMessageBatch to {self._queue_url} failed: {exc}") from exc
        return {failure["Id"]: str(failure.get("Code", "failed")) for failure in answer.get("Failed", [])}

    @staticmethod
    def _body(letter: DeadLetter, now: str) -> str:
        data = to_json(letter, now)
        if len(data) > SQS_MAX_MESSAGE_BYTES:
            log.warning(
                "dead_letter_truncated",
                shard_id=letter.shard_id,
                sequence_number=letter.sequence_number,
                size_bytes=len(data),
                limit_bytes=SQS_MAX_MESSAGE_BYTES,
            )
            data = to_json(_cut_down(letter, len(data)), now)
        # SQS refuses U+FFFE / U+FFFF in a body; in JSON they can only occur in strings: escape them.
        return data.decode().replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")


class DeadLetterObjects:
    """Writes each batch of dead letters as one S3 object of JSON lines.

    The key is ``<prefix>/<shard id>/<first sequence number>-<last sequence number>.jsonl``, so a
    batch written again (after a failed checkpoint, or by the shard's next owner) overwrites its own
    object instead of duplicating it. Thread-safe (stateless besides the client).
    """

    kind = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str = "", observe: Observer | None = None) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._observe = observe

    @classmethod
    def connect(cls, client: Any, bucket: str, prefix: str = "", observe: Observer | None = None) -> DeadLetterObjects:
        """The bucket, checked with HeadBucket: missing → ConfigError; 403 (no s3:ListBucket) is accepted."""
        try:
            observed_call(client, "head_bucket", observe, Bucket=bucket)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                raise ConfigError(f"CDC_DEAD_LETTER_DESTINATION: S3 bucket {bucket!r} does not exist") from None
            if status != 403:  # 403: exists, but PutObject alone is granted (least privilege)
                raise ConfigError(
                    f"CDC_DEAD_LETTER_DESTINATION: S3 bucket {bucket!r} cannot be checked: {exc}"
                ) from exc
        except BotoCoreError as exc:
            raise DeadLetterError(f"S3 bucket {bucket!r} could not be checked: {exc}") from exc
        return cls(client, bucket, prefix, observe)

    def write(self, letters: list[DeadLetter]) -> None:
        now = _now()
        for shard_id, group in _by_shard(letters):
            body = b"".join(to_json(letter, now) + b"\n" for letter in group)
            key = self.key(shard_id, group)
            try:
                observed_call(
                    self._client,
                    "put_object",
                    self._observe,
                    Bucket=self._bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/x-ndjson",
                )
            except (ClientError, BotoCoreError) as exc:
                raise DeadLetterError(f"PutObject s3://{self._bucket}/{key} failed: {exc}") from exc

    def key(self, shard_id: str, letters: list[DeadLetter]) -> str:
        """The object key of one shard's letters: their sequence range, or a digest when none has one."""
        numbers = sorted(int(letter.sequence_number) for letter in letters if letter.sequence_number)
        if numbers:
            name = f"{numbers[0]}-{numbers[-1]}"
        else:
            digest = hashlib.sha256(b"".join(to_json(letter, "") for letter in letters)).hexdigest()[:32]
            name = f"unsequenced-{digest}"
        return "/".join(part for part in (self._prefix, shard_id, f"{name}.jsonl") if part)


def _cut_down(letter: DeadLetter, size: int) -> DeadLetter:
    """``letter`` with only the record's identity (its keys) and a note, small enough for SQS."""
    record = {
        **letter.record,
        "note": f"image of {size} bytes left out: over SQS's {SQS_MAX_MESSAGE_BYTES}-byte message limit; "
        "redrive reads the item from the table by its keys",
    }
    return replace(letter, record=record, document=None, raw_record=None, error=letter.error[:_KEPT_ERROR_CHARS])


def _chunks(entries: list[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    """Batches of at most 10 entries and 256 KiB of bodies in total (SendMessageBatch's limits)."""
    chunk: list[tuple[str, str]] = []
    size = 0
    for entry in entries:
        length = len(entry[1].encode())
        if chunk and (len(chunk) == SQS_MAX_BATCH_ENTRIES or size + length > SQS_MAX_MESSAGE_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += length
    if chunk:
        yield chunk


def _by_shard(letters: list[DeadLetter]) -> list[tuple[str, list[DeadLetter]]]:
    groups: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        groups.setdefault(letter.shard_id, []).append(letter)
    return list(groups.items())


def _queue_name_and_owner(queue: str) -> tuple[str, str | None]:
    """``(name, account)`` of a queue URL (``https://sqs.<region>.amazonaws.com/<account>/<name>``) or a name."""
    if "://" not in queue:
        return queue, None
    parts = queue.rstrip("/").split("/")
    return parts[-1], parts[-2] if len(parts) >= 5 and parts[-2].isdigit() else None
