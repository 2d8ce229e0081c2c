"""A transform for the generation tests: the second shape of the documents (``shape: v2``)."""

from __future__ import annotations

from typing import Any


def version_two(item: dict[str, Any], context: Any) -> dict[str, Any]:
    return {**item, "shape": "v2"}
