"""Where ``consumer redrive`` reads dead letters from: a file, an S3 prefix (or one key), an SQS queue.

Each source yields *chunks* of letters (one JSON text each, with a label saying where it came from)
and is told, per chunk, which letters were *settled* (applied, stale, or planned in a dry run):

* a file and S3 objects are only read, never changed: running redrive twice writes the same states
  again (idempotent); the operator archives them;
* an SQS message is deleted only once its letter is settled by an applied redrive; the others (a
  dry run's, and letters that still need attention) stay hidden while the run lasts, so each is seen
  once, and are handed back (visibility 0) when it ends (``finish``). The run must end within the
  visibility timeout (``--visibility-timeout``, default 300 s) or a message may be seen twice, which
  only costs a repeated, harmless write.

``open_source`` parses the source's text (the ``CDC_DEAD_LETTER_DESTINATION`` forms, or a path) and
raises ConfigError naming what is wrong. Not thread-safe: one redrive run uses one source.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from consumer.config import DeadLetterDestination, parse_dead_letter_destination
from consumer.errors import ConfigError, ConsumerError
from consumer.runtime.clients import dead_letter_client
from consumer.sink.dlq import DeadLetterQueue

log = structlog.get_logger(__name__)

CHUNK = 250
SQS_RECEIVE_MAX = 10


@dataclass(frozen=True)
class Letter:
    """One dead letter as read: ``origin`` says where (``file.jsonl:3``, ``s3://b/k:3``, ``sqs:<id>``)."""

    origin: str
    text: bytes
    receipt: str | None = None  # SQS receipt handle


class LetterSource(Protocol):
    description: str

    def chunks(self) -> Iterator[list[Letter]]: ...

    def estimate(self) -> int | None:
        """How many letters the source holds, as far as it can tell before reading them; None: unknown."""
        ...

    def settle(self, letters: list[Letter], apply_changes: bool) -> None: ...

    def finish(self) -> None: ...


def open_source(text: str, region: str | None, visibility_timeout: int = 300) -> LetterSource:
    """The source ``text`` names: ``sqs:<queue>``, ``s3://bucket[/prefix-or-key]``, ``file://path`` or a path."""
    if not text.startswith(("sqs:", "s3://", "file://")):
        return FileLetters(Path(text))
    try:
        destination = parse_dead_letter_destination(text)
    except ValueError as exc:
        raise ConfigError(f"redrive source {text!r}: {exc}") from None
    return source_for(destination or DeadLetterDestination("file", text), region, visibility_timeout)


def source_for(destination: DeadLetterDestination, region: str | None, visibility_timeout: int = 300) -> LetterSource:
    """The source of the letters a destination holds."""
    if destination.kind == "sqs":
        client = dead_letter_client("sqs", region)
        queue = DeadLetterQueue.connect(client, destination.location)
        return QueueLetters(client, queue.queue_url, visibility_timeout)
    if destination.kind == "s3":
        return ObjectLetters(dead_letter_client("s3", region), destination.location, destination.prefix)
    return FileLetters(Path(destination.location))


class FileLetters:
    """The lines of a local JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.description = str(path)

    def chunks(self) -> Iterator[list[Letter]]:
        try:
            with open(self._path, "rb") as file:
                yield from _chunked(
                    Letter(f"{self._path.name}:{number}", text)
                    for number, text in enumerate(file, start=1)
                    if text.strip()
                )
        except FileNotFoundError:
            raise ConfigError(
                f"dead-letter file {self._path} does not exist: pass the source (a path, s3://… or sqs:…) or set "
                "CDC_DEAD_LETTER_DESTINATION / CDC_DEAD_LETTER_PATH"
            ) from None
        except OSError as exc:
            raise ConfigError(f"dead-letter file {self._path} cannot be read: {exc}") from exc

    def estimate(self) -> int | None:
        """The file's non-empty lines (None when it cannot be read: chunks() says why)."""
        try:
            with open(self._path, "rb") as file:
                return sum(1 for text in file if text.strip())
        except OSError:
            return None

    def settle(self, letters: list[Letter], apply_changes: bool) -> None:
        """Files are never changed."""

    def finish(self) -> None:
        """Nothing to hand back."""


class ObjectLetters:
    """The lines of every object under an S3 prefix, or of the one object the prefix names. The
    listing is taken once (the estimate's and the reading's), and the first object read once."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix
        self.description = f"s3://{bucket}/{prefix}".rstrip("/")
        self._listing: list[tuple[str, int]] | None = None  # (key, size) of every object
        self._first: tuple[str, list[Letter]] | None = None

    def chunks(self) -> Iterator[list[Letter]]:
        yield from _chunked(letter for key, _ in self._objects() for letter in self._letters(key))

    def estimate(self) -> int | None:
        """The letters of the first object per byte, times the bytes of them all: exact when every
        object holds letters of one size, and known after one read whatever the prefix holds."""
        objects = self._objects()
        key, size = objects[0]
        first = len(self._letters(key))
        if size <= 0:
            return first
        return round(first * sum(size for _, size in objects) / size)

    def settle(self, letters: list[Letter], apply_changes: bool) -> None:
        """Objects are never changed."""

    def finish(self) -> None:
        """Nothing to hand back."""

    def _objects(self) -> list[tuple[str, int]]:
        if self._listing is None:
            self._listing = list(self._list())
            if not self._listing:
                raise ConfigError(f"no dead-letter objects under {self.description}")
        return self._listing

    def _list(self) -> Iterator[tuple[str, int]]:
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=self._prefix)
            for page in pages:
                for entry in page.get("Contents", []):
                    yield entry["Key"], int(entry.get("Size", 0))
        except ClientError as exc:
            raise _config_error(f"listing {self.description}", exc) from exc
        except BotoCoreError as exc:
            raise ConsumerError(f"listing {self.description} failed: {exc}") from exc

    def _letters(self, key: str) -> list[Letter]:
        if self._first is not None and self._first[0] == key:
            return self._first[1]
        letters = list(self._read(key))
        if self._first is None:
            self._first = (key, letters)
        return letters

    def _read(self, key: str) -> Iterator[Letter]:
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as exc:
            raise _config_error(f"reading s3://{self._bucket}/{key}", exc) from exc
        except BotoCoreError as exc:
            raise ConsumerError(f"reading s3://{self._bucket}/{key} failed: {exc}") from exc
        for number, text in enumerate(body.splitlines(), start=1):
            if text.strip():
                yield Letter(f"s3://{self._bucket}/{key}:{number}", text)


class QueueLetters:
    """The messages of an SQS queue, received ten at a time until none is left to see."""

    def __init__(self, client: Any, queue_url: str, visibility_timeout: int) -> None:
        self._client = client
        self._queue_url = queue_url
        self._visibility = visibility_timeout
        self._seen: set[str] = set()
        self._held: dict[str, str] = {}  # message id → receipt of messages received and not deleted
        self.description = queue_url

    def chunks(self) -> Iterator[list[Letter]]:
        empty_receives = 0
        while empty_receives < 2:  # a queue is only known empty after a receive finds nothing, twice
            messages = self._receive()
            fresh = [m for m in messages if m["MessageId"] not in self._seen]
            if not fresh:
                self._release([m["ReceiptHandle"] for m in messages])
                empty_receives += 1
                continue
            empty_receives = 0
            self._seen.update(m["MessageId"] for m in fresh)
            self._held.update((m["MessageId"], m["ReceiptHandle"]) for m in fresh)
            yield [Letter(f"sqs:{m['MessageId']}", m["Body"].encode(), m["ReceiptHandle"]) for m in fresh]

    def estimate(self) -> int | None:
        """SQS's approximate count of the queue's messages, visible or held; None when it cannot be asked
        (the count only feeds the progress line: the redrive goes on without it)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        try:
            answer = self._client.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=names)
        except (ClientError, BotoCoreError) as exc:
            log.warning("dead_letter_count_unknown", queue=self._queue_url, error=str(exc))
            return None
        attributes = answer.get("Attributes", {})
        return sum(int(attributes.get(name, 0)) for name in names)

    def settle(self, letters: list[Letter], apply_changes: bool) -> None:
        """Delete the settled letters' messages after they were applied; a dry run deletes nothing."""
        if not apply_changes:
            return
        settled = [letter for letter in letters if letter.receipt]
        self._batched("delete_message_batch", [letter.receipt or "" for letter in settled], {})
        for letter in settled:
            self._held.pop(letter.origin.removeprefix("sqs:"), None)

    def finish(self) -> None:
        """Hand back every message received and not deleted, visible again at once."""
        self._release(list(self._held.values()))
        self._held.clear()

    def _receive(self) -> list[dict[str, Any]]:
        try:
            answer = self._client.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=SQS_RECEIVE_MAX,
                VisibilityTimeout=self._visibility,
                WaitTimeSeconds=1,
            )
        except ClientError as exc:
            raise _config_error(f"receiving from {self._queue_url}", exc) from exc
        except BotoCoreError as exc:
            raise ConsumerError(f"receiving from {self._queue_url} failed: {exc}") from exc
        return answer.get("Messages", [])

    def _release(self, receipts: list[str]) -> None:
        self._batched("change_message_visibility_batch", receipts, {"VisibilityTimeout": 0})

    def _batched(self, operation: str, receipts: list[str], extra: dict[str, Any]) -> None:
        for start in range(0, len(receipts), SQS_RECEIVE_MAX):
            entries = [
                {"Id": str(i), "ReceiptHandle": receipt, **extra}
                for i, receipt in enumerate(receipts[start : start + SQS_RECEIVE_MAX])
            ]
            try:
                getattr(self._client, operation)(QueueUrl=self._queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                raise ConsumerError(f"{operation} on {self._queue_url} failed: {exc}") from exc


def _chunked(letters: Iterator[Letter]) -> Iterator[list[Letter]]:
    chunk: list[Letter] = []
    for letter in letters:
        chunk.append(letter)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _config_error(what: str, exc: ClientError) -> ConsumerError:
    code = exc.response.get("Error", {}).get("Code", "")
    if code in ("NoSuchBucket", "AccessDenied", "AccessDeniedException", "NonExistentQueue", "403", "404"):
        return ConfigError(f"{what}: {code}: check the source and the permissions (s3:ListBucket, s3:GetObject, sqs:*)")
    return ConsumerError(f"{what} failed: {exc}")
