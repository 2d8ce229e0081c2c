"""``consumer redrive``: apply dead-lettered items again, from their current state in the table.

A dead letter holds the stream record that could not be applied (``consumer.sink.dlq``). Its image
is out of date by the time anyone redrives it, so only its keys are used: redrive reads the item's
current state with a consistent GetItem and indexes it (or a tombstone when the item is gone, see
docs/versioning.md, "Deletes") with the external version ``repair_version(read time)``, which every
change made after the read beats (docs/versioning.md, "Repairs"). Entries of one item share one read and one write.

A dry run (the default) prints, per entry, the document id, the action and why; ``--apply`` writes
and prints each outcome: applied, stale (a newer change is already indexed) or poison (still
rejected, with OpenSearch's error). An entry whose keys cannot be read is reported, never dropped.
The file is only read, never rewritten: the operator archives it once its entries are redriven.
"""

from __future__ import annotations

import base64
import binascii
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from consumer.attributes import canonical_number, item_to_json
from consumer.config import Settings
from consumer.doc_ids import KeySchema, document_id
from consumer.errors import ConfigError, RecordError
from consumer.projection import is_tombstone, shape_document
from consumer.reconcile import Reconciler
from consumer.repair import Item, RepairAction, project_item, repair_version, restore
from consumer.sink.bulk import Outcome

_SHOWN_ERROR_CHARS = 100


@dataclass(frozen=True)
class Entry:
    """One line of the dead-letter file: the item it names, or why it names none.

    Attributes:
        line: 1-based line number in the file.
        error: why the record was dead-lettered.
        key: the item's key as boto3 takes it (binary values as bytes); None when unreadable.
        doc_id: the item's document id; None when unreadable.
        problem: why the keys cannot be read; None when they can.
    """

    line: int
    error: str
    key: Item | None = None
    doc_id: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Step:
    """An entry, what redrive does about it (``action``: None when nothing), and why or with what outcome."""

    entry: Entry
    action: RepairAction | None
    note: str
    needs_attention: bool = False


def parse_entry(line: int, text: bytes | str, schema: KeySchema) -> Entry:
    """Read one line of the dead-letter file. Never raises: a bad line is an Entry with a problem."""
    try:
        letter = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Entry(line, "", problem=f"not a JSON line ({exc})")
    if not isinstance(letter, dict):
        return Entry(line, "", problem="not a dead-letter object")
    error = str(letter.get("error") or "")
    try:
        key = decode_key(schema, letter.get("record"))
        return Entry(line, error, key, document_id(schema, key))
    except RecordError as exc:
        return Entry(line, error, problem=str(exc))


def decode_key(schema: KeySchema, record: Any) -> Item:
    """The item key in a dead-lettered record's ``dynamodb.Keys``, as boto3 takes it.

    The file holds binary values as base64 text (``consumer.sink.dlq``); boto3 takes bytes.
    Attributes outside the key schema are left out.

    Raises:
        RecordError: when a key attribute is missing, of another type, or not a valid value.
    """
    body = record.get("dynamodb") if isinstance(record, dict) else None
    keys = body.get("Keys") if isinstance(body, dict) else None
    if not isinstance(keys, dict) or not keys:
        raise RecordError("record has no dynamodb.Keys")
    key: Item = {}
    for attribute in schema.attributes:
        value = keys.get(attribute.name)
        if not isinstance(value, dict) or not isinstance(value.get(attribute.type), str):
            raise RecordError(
                f"dynamodb.Keys has no {attribute.type} value for key attribute {attribute.name!r} "
                f"(attributes: {sorted(keys)})"
            )
        key[attribute.name] = {attribute.type: _decode_value(attribute.name, attribute.type, value[attribute.type])}
    return key


def _decode_value(name: str, type_: str, text: str) -> str | bytes:
    if type_ == "B":
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            raise RecordError(f"key attribute {name!r} of type B is not base64 text") from None
    if type_ == "N":
        canonical_number(text)  # raises RecordError for a value that is no number
    return text


def read_entries(path: Path, schema: KeySchema) -> Iterator[Entry]:
    """Every non-blank line of the dead-letter file, in order. Raises ConfigError when it cannot be read."""
    try:
        with open(path, "rb") as file:
            for number, text in enumerate(file, start=1):
                if text.strip():
                    yield parse_entry(number, text, schema)
    except FileNotFoundError:
        raise ConfigError(f"dead-letter file {path} does not exist: pass --file or set CDC_DEAD_LETTER_PATH") from None
    except OSError as exc:
        raise ConfigError(f"dead-letter file {path} cannot be read: {exc}") from exc


def plan(reconciler: Reconciler, entries: Iterator[Entry]) -> list[Step]:
    """What to do for each entry, from its item's current state (one consistent read per item)."""
    decided: dict[str, Step] = {}
    steps = []
    for entry in entries:
        if entry.problem is not None or entry.doc_id is None or entry.key is None:
            steps.append(Step(entry, None, f"unreadable: {entry.problem}", needs_attention=True))
            continue
        if entry.doc_id not in decided:
            decided[entry.doc_id] = _decide(reconciler, entry)
        steps.append(replace(decided[entry.doc_id], entry=entry))
    return steps


def _decide(reconciler: Reconciler, entry: Entry) -> Step:
    assert entry.key is not None and entry.doc_id is not None
    try:
        read_at, item = reconciler.get_item(entry.key)
        document = None if item is None else project_item(reconciler.schema, item, reconciler.shaping)[1]
    except RecordError as exc:
        return Step(entry, None, f"unreadable: {exc}", needs_attention=True)
    keys = None if document is not None else shape_document(item_to_json(entry.key), reconciler.shaping)
    action = restore(entry.doc_id, document, repair_version(read_at), keys)
    if document is None:
        return Step(entry, action, "not in the table: delete its document")
    return Step(entry, action, "in the table: index its current state")


def apply(reconciler: Reconciler, steps: list[Step], stop: threading.Event) -> list[Step]:
    """Write each item's action once; every step then notes its outcome."""
    actions = list({step.action.doc_id: step.action for step in steps if step.action is not None}.values())
    results = reconciler.apply(actions, stop)
    outcomes = {action.doc_id: _outcome(*result) for action, result in zip(actions, results, strict=True)}
    applied = []
    for step in steps:
        if step.action is not None:
            note, needs_attention = outcomes[step.action.doc_id]
            step = replace(step, note=note, needs_attention=needs_attention)
        applied.append(step)
    return applied


def _outcome(outcome: Outcome, error: str | None) -> tuple[str, bool]:
    if outcome is Outcome.APPLIED:
        return "applied", False
    if outcome is Outcome.STALE:
        return "stale: a newer change is already indexed", False
    return f"poison: still rejected: {error}", True


def render(steps: list[Step], path: Path, applied: bool) -> str:
    """One line per entry and a summary; the dry run also shows why each record was dead-lettered."""
    rows = [("LINE", "DOC ID", "ACTION", "OUTCOME" if applied else "REASON")]
    for step in steps:
        note = step.note if applied or not step.entry.error else f"{step.note} (was: {_shorten(step.entry.error)})"
        action = action_name(step.action) if step.action is not None else "-"
        rows.append((str(step.entry.line), step.entry.doc_id or "-", action, note))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)), row[3]]) for row in rows
    ]
    return "\n".join(lines) + "\n\n" + _summary(steps, path, applied) + "\n"


def action_name(action: RepairAction) -> str:
    """``delete`` for a tombstone write, else the operation."""
    return "delete" if is_tombstone(action.document) else action.op


def _summary(steps: list[Step], path: Path, applied: bool) -> str:
    def count(prefix: str) -> int:
        return sum(1 for step in steps if step.note.startswith(prefix))

    unreadable = count("unreadable")
    if not applied:
        names = [action_name(step.action) for step in steps if step.action is not None]
        index, delete = names.count("index"), names.count("delete")
        return (
            f"dry run: {len(steps)} dead letters in {path}: {index} to index, {delete} to delete, "
            f"{unreadable} unreadable; nothing was written (--apply redrives them)"
        )
    return (
        f"{len(steps)} dead letters in {path}: {count('applied')} applied, {count('stale')} stale, "
        f"{count('poison')} poison, {unreadable} unreadable; the file is left as it is: archive it"
    )


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN_ERROR_CHARS else text[: _SHOWN_ERROR_CHARS - 1] + "…"


def redrive_command(settings: Settings, path: Path | None, apply_changes: bool) -> bool:
    """Run ``consumer redrive`` and print what it does; True when an entry needs attention."""
    reconciler = Reconciler.from_settings(settings)
    path = path or settings.dead_letter_path
    steps = plan(reconciler, read_entries(path, reconciler.schema))
    if apply_changes:
        steps = apply(reconciler, steps, threading.Event())
    sys.stdout.write(render(steps, path, apply_changes))
    return any(step.needs_attention for step in steps)
