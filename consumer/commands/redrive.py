"""``consumer redrive``: apply dead-lettered items again, from their current state in the table.

A dead letter names a change that could not be applied (``consumer.pipeline.letters``). Its image is out
of date by the time anyone redrives it, so only its keys are used: redrive reads the item's current
state with a consistent GetItem and indexes it (or a tombstone when the item is gone, or when the
state filter leaves it out; see docs/versioning.md, "Deletes") with the external version
``repair_version(read time)``, which every change made after the read beats (docs/versioning.md,
"Repairs"). Entries of one item share one read and one write.

Letters come from a file, an S3 prefix or an SQS queue (``consumer.commands.letter_sources``), in chunks:
memory stays flat whatever their number. A dry run (the default) prints, per entry, the document id,
the action and why; ``--apply`` writes and prints each outcome: applied, stale (a newer change is
already indexed) or poison (still rejected, with OpenSearch's error). An entry whose keys cannot be
read is reported, never dropped. On a terminal a progress line shows on stderr; a summary ends the
run. Running it twice changes nothing more (the same states are written again; SQS messages are
deleted once settled).
"""

from __future__ import annotations

import base64
import binascii
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from consumer.commands.letter_sources import open_source, source_for
from consumer.commands.progress import ProgressDisplay
from consumer.commands.reconcile import Reconciler
from consumer.config import Settings
from consumer.errors import RecordError
from consumer.pipeline.attributes import canonical_number, item_to_json
from consumer.pipeline.bulk import Outcome
from consumer.pipeline.doc_ids import KeySchema, document_id
from consumer.pipeline.projection import is_tombstone, shape_document
from consumer.pipeline.repair import Item, RepairAction, project_item, repair_version, restore

_SHOWN_ERROR_CHARS = 100


@dataclass(frozen=True)
class Entry:
    """One dead letter: the item it names, or why it names none.

    Attributes:
        origin: where it was read (``file.jsonl:3``, ``s3://bucket/key:3``, ``sqs:<message id>``).
        error: why the record was dead-lettered.
        key: the item's key as boto3 takes it (binary values as bytes); None when unreadable.
        doc_id: the item's document id; None when unreadable.
        problem: why the keys cannot be read; None when they can.
    """

    origin: str
    error: str
    key: Item | None = None
    doc_id: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Step:
    """An entry, what redrive does about it (``action``: None when nothing; ``also``: tombstones in the
    other indices of the routes that may hold the item), and why or with what outcome."""

    entry: Entry
    action: RepairAction | None
    note: str
    needs_attention: bool = False
    also: tuple[RepairAction, ...] = ()


def parse_entry(origin: str, text: bytes | str, schema: KeySchema) -> Entry:
    """Read one dead letter. Never raises: a bad one is an Entry with a problem."""
    try:
        letter = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Entry(origin, "", problem=f"not a JSON line ({exc})")
    if not isinstance(letter, dict):
        return Entry(origin, "", problem="not a dead-letter object")
    error = str(letter.get("error") or "")
    try:
        key = decode_key(schema, letter.get("record"))
        return Entry(origin, error, key, document_id(schema, key))
    except RecordError as exc:
        return Entry(origin, error, problem=str(exc))


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


def plan(reconciler: Reconciler, entries: Iterable[Entry], decided: dict[str, Step] | None = None) -> list[Step]:
    """What to do for each entry, from its item's current state (one consistent read per item;
    ``decided`` carries the decisions of earlier chunks)."""
    decided = {} if decided is None else decided
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
    routing = reconciler.routing
    try:
        read_at, item = reconciler.get_item(entry.key)
        projected = None if item is None else project_item(reconciler.schema, item, routing)[1]
        # the item's document leaves every other index: where a route may have put it, where one is
        elsewhere = set(routing.fixed_indices)
        if any(route.index.templated for route in routing.routes):
            elsewhere |= reconciler.holding_indices(entry.doc_id)
    except RecordError as exc:
        return Step(entry, None, f"unreadable: {exc}", needs_attention=True)
    version = repair_version(read_at)
    keys = shape_document(item_to_json(entry.key), routing.rules)
    tombstones = tuple(
        restore(entry.doc_id, None, version, keys, index)
        for index in sorted(elsewhere - {projected.index if projected else ""})
    )
    if projected is not None:
        action = restore(entry.doc_id, projected.document, version, index=projected.index)
        return Step(entry, action, "in the table: index its current state", also=tombstones)
    if not tombstones:
        return Step(entry, None, "not in the table nor in any index: nothing to do")
    note = "not in the table: delete its document" if item is None else "in no index's route: delete its document"
    return Step(entry, tombstones[0], note, also=tombstones[1:])


def apply(reconciler: Reconciler, steps: list[Step], stop: threading.Event) -> list[Step]:
    """Write each item's actions once; every step then notes its outcome (a tombstone elsewhere that
    fails needs attention too)."""
    actions = list(
        {
            (action.index, action.doc_id): action
            for step in steps
            if step.action is not None
            for action in (step.action, *step.also)
        }.values()
    )
    results = reconciler.apply(actions, stop)
    outcomes = {
        (action.index, action.doc_id): _outcome(*result) for action, result in zip(actions, results, strict=True)
    }
    applied = []
    for step in steps:
        if step.action is not None:
            note, needs_attention = outcomes[(step.action.index, step.action.doc_id)]
            elsewhere = [(also.index, *outcomes[(also.index, also.doc_id)]) for also in step.also]
            failed = [f"{index}: {text}" for index, text, attention in elsewhere if attention]
            if failed:
                note, needs_attention = f"{note}; tombstone elsewhere {'; '.join(failed)}", True
            step = replace(step, note=note, needs_attention=needs_attention)
        applied.append(step)
    return applied


def _outcome(outcome: Outcome, error: str | None) -> tuple[str, bool]:
    if outcome is Outcome.APPLIED:
        return "applied", False
    if outcome is Outcome.STALE:
        return "stale: a newer change is already indexed", False
    return f"poison: still rejected: {error}", True


def render_rows(steps: list[Step], applied: bool) -> str:
    """One line per entry: where it came from, its document id, the action, and its outcome (or,
    in a dry run, why the record was dead-lettered)."""
    lines = []
    for step in steps:
        note = step.note if applied or not step.entry.error else f"{step.note} (was: {_shorten(step.entry.error)})"
        action = action_name(step.action) if step.action is not None else "-"
        lines.append(f"{step.entry.origin}  {step.entry.doc_id or '-'}  {action}  {note}")
    return "".join(line + "\n" for line in lines)


def render_json_rows(steps: list[Step]) -> str:
    """One JSON object per entry (JSON Lines): origin, document id, action, outcome, and the error it
    was dead-lettered with."""
    return "".join(
        orjson.dumps(
            {
                "origin": step.entry.origin,
                "doc_id": step.entry.doc_id,
                "action": action_name(step.action) if step.action is not None else None,
                "outcome": step.note,
                "error": step.entry.error,
            }
        ).decode()
        + "\n"
        for step in steps
    )


def action_name(action: RepairAction) -> str:
    """``delete`` for a tombstone write, else the operation."""
    return "delete" if is_tombstone(action.document) else action.op


@dataclass
class RedriveTally:
    """Counts of a run, by what became of each entry."""

    entries: int = 0
    to_index: int = 0
    to_delete: int = 0
    applied: int = 0
    stale: int = 0
    poison: int = 0
    unreadable: int = 0

    def add(self, steps: list[Step]) -> None:
        for step in steps:
            self.entries += 1
            if step.note.startswith("unreadable"):
                self.unreadable += 1
            elif step.action is not None:
                if action_name(step.action) == "index":
                    self.to_index += 1
                else:
                    self.to_delete += 1
            for kind in ("applied", "stale", "poison"):
                if step.note.startswith(kind):
                    setattr(self, kind, getattr(self, kind) + 1)

    def summary(self, source: str, applied: bool) -> str:
        if not applied:
            return (
                f"dry run: {self.entries} dead letters in {source}: {self.to_index} to index, {self.to_delete} to "
                f"delete, {self.unreadable} unreadable; nothing was written (--apply redrives them)"
            )
        return (
            f"{self.entries} dead letters in {source}: {self.applied} applied, {self.stale} stale, "
            f"{self.poison} poison, {self.unreadable} unreadable"
        )


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN_ERROR_CHARS else text[: _SHOWN_ERROR_CHARS - 1] + "…"


def redrive_command(
    settings: Settings,
    source_text: str | None,
    apply_changes: bool,
    visibility_timeout: int,
    stop: threading.Event,
    as_json: bool = False,
) -> bool:
    """Run ``consumer redrive`` and print what it does; True when an entry needs attention or ``stop``
    (SIGTERM) ended it first: the letters not yet settled are handed back (an SQS message is visible
    again at once, not after its visibility timeout) and a second run goes on with them."""
    reconciler = Reconciler.from_settings(settings)
    if source_text is None:
        source = source_for(settings.dead_letters, settings.aws_region, visibility_timeout)
    else:
        source = open_source(source_text, settings.aws_region, visibility_timeout)
    tally, decided = RedriveTally(), {}
    display, started = ProgressDisplay(source.estimate(), "redrive"), time.monotonic()
    attention = False
    try:
        for chunk in source.chunks():
            if stop.is_set():
                break
            entries = [parse_entry(letter.origin, letter.text, reconciler.schema) for letter in chunk]
            steps = plan(reconciler, entries, decided)
            if apply_changes:
                steps = apply(reconciler, steps, stop)
            settled = [letter for letter, step in zip(chunk, steps, strict=True) if not step.needs_attention]
            source.settle(settled, apply_changes)
            attention = attention or any(step.needs_attention for step in steps)
            tally.add(steps)
            sys.stdout.write(render_json_rows(steps) if as_json else render_rows(steps, apply_changes))
            display.count(tally.entries, started)
    finally:
        source.finish()
    display.finish()
    if as_json:
        summary = {
            **asdict(tally),
            "source": source.description,
            "applied_changes": apply_changes,
            "complete": not stop.is_set(),
        }
        sys.stdout.write(orjson.dumps({"summary": summary}).decode() + "\n")
    else:
        sys.stdout.write("\n" + tally.summary(source.description, apply_changes) + "\n")
        if stop.is_set():
            sys.stdout.write("stopped before the end: the letters not yet redriven are kept; run the command again\n")
    return attention or stop.is_set()
