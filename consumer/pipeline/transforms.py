"""The Python transform hook: ``CDC_TRANSFORM`` (or a route's ``transform``) names a function
``package.module:function`` that turns an item into the document to index.

The function is called with the item as JSON (the values a document would hold: numbers as numbers,
sets as lists, binary as base64) and a ``TransformContext``; it returns the document (a dict), or
None to leave the item out of the index (its document is removed, as a state filter would). It must
be deterministic, a function of the item alone: the backfill, ``consumer audit`` and
``consumer redrive`` call it on items read from the table and must get the document the stream's
change made. What comes of it:

* the key attributes are written back over the result (the document's identity never comes from
  the transform), and the route's field rules are applied after it (a transform cannot unmask a
  masked field); the version never comes from it either;
* an exception, or a result that is neither a dict nor None, makes the record poison: it is
  dead-lettered with the error, and the shard moves on (``TransformError`` is a RecordError).

Thread-safe as long as the function is: it is called from every shard's thread.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, NamedTuple

from consumer.errors import RecordError

Document = dict[str, Any]


class TransformError(RecordError):
    """The transform failed on one item, or returned what is no document."""


class TransformContext(NamedTuple):
    """What the transform may know beside the item: the table, the route, the event (None when the item
    was read from the table: backfill, audit, redrive) and the item's keys (JSON, read-only)."""

    table: str
    route: str
    event_name: str | None
    keys: Mapping[str, Any]


@dataclass(frozen=True)
class Transform:
    """A loaded transform: its ``spec`` (``module:function``), the function, and its ``version``: the
    module's ``__version__``, or a digest of its source (what an index generation records of it)."""

    spec: str
    function: Callable[[Document, TransformContext], Any] = field(repr=False, compare=False)
    version: str = ""

    def __call__(self, item: Document, context: TransformContext) -> Document | None:
        """The document the function makes of ``item``, or None; raises TransformError for any failure
        of the function (MemoryError aside: the process's, not the record's)."""
        try:
            result = self.function(item, context)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code: whatever it raises, the record is poison
            # (a RecordError: the processor dead-letters the record, durably, before its shard moves past it)
            raise TransformError(f"transform {self.spec} raised {type(exc).__name__}: {exc}") from exc
        if result is None or isinstance(result, dict):
            return result
        raise TransformError(f"transform {self.spec} returned a {type(result).__name__}, not a dict or None")


def load_transform(spec: str) -> Transform:
    """Import ``package.module:function``. Raises ValueError saying what is wrong and what to do."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name or not all(part.isidentifier() for part in function_name.split(".")):
        raise ValueError(f"{spec!r} is not package.module:function (e.g. shop_shapes.orders:shape)")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - importing user code may raise anything: report it as config
        raise ValueError(
            f"cannot import {module_name!r} ({type(exc).__name__}: {exc}): install the package beside the service "
            "(docs/routes.md, 'Shipping a transform')"
        ) from None
    for part in function_name.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ValueError(f"module {module_name!r} has no {function_name!r}")
    if not callable(target):
        raise ValueError(f"{spec!r} is not callable")
    return Transform(spec, target, module_version(importlib.import_module(module_name)))


def module_version(module: ModuleType) -> str:
    """``__version__`` of ``module`` when it declares one, else a digest of its source file (so that
    editing a transform changes the fingerprint of the documents it shapes)."""
    declared = getattr(module, "__version__", None)
    if isinstance(declared, str) and declared:
        return declared
    source = getattr(module, "__file__", None)
    try:
        with open(source or "", "rb") as handle:
            return "sha256:" + hashlib.sha256(handle.read()).hexdigest()[:12]
    except OSError:
        return "unversioned"
