"""Dead-letter destination for records that cannot be indexed (poison records).

Each entry is one JSON line holding everything needed to understand and redrive the record: the
whole stream record, its shard id and sequence number, the error, and when it happened. An entry
is flushed and fsync'ed before ``write`` returns, because the shard's checkpoint moves past the
record right after. Thread-safe.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be applied, and why."""

    shard_id: str
    sequence_number: str | None
    error: str
    record: dict[str, Any]
    attempts: int = 1


class DeadLetterSink(Protocol):
    def write(self, letters: list[DeadLetter]) -> None: ...


class DeadLetterFile:
    """Appends dead letters to a local JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    def write(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        now = dt.datetime.now(dt.UTC).isoformat()
        lines = b"".join(
            orjson.dumps(
                {
                    "dead_lettered_at": now,
                    "shard_id": letter.shard_id,
                    "sequence_number": letter.sequence_number,
                    "error": letter.error,
                    "attempts": letter.attempts,
                    "record": letter.record,
                },
                default=_json_default,
            )
            + b"\n"
            for letter in letters
        )
        with self._lock:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._path, "ab") as file:
                file.write(lines)
                file.flush()
                os.fsync(file.fileno())


def _json_default(value: Any) -> Any:
    """boto3 hands records with bytes (B, BS), datetimes and Decimals; keep them lossless."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, set):
        return sorted(value)
    return str(value)
