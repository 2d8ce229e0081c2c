"""JSON text spelt the many ways JSON allows, for tests of readers that take text apart themselves
(``raw_records.read_answer``'s scan, ``bulk.image_lines``): objects whose members keep their order
and may repeat a name, whitespace between tokens, strings spelt as the test chooses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class Obj:
    """A JSON object as its members in order, repeats allowed (a dict cannot hold them)."""

    def __init__(self, members: list[tuple[str, Any]]) -> None:
        self.members = members


def spell(value: Any, gap: Callable[[], str], string: Callable[[str, bool], str]) -> str:
    """The JSON text of ``value`` (an ``Obj``, a list, a string or another JSON scalar): ``gap()``
    around each object's tokens and after each comma, each string spelt by ``string(text, is_name)``."""
    if isinstance(value, Obj):
        space = gap()
        members = (f"{string(name, True)}{space}:{space}{spell(member, gap, string)}" for name, member in value.members)
        return "{" + space + f"{space},{space}".join(members) + space + "}"
    if isinstance(value, list):
        space = gap()
        return "[" + space + f",{space}".join(spell(member, gap, string) for member in value) + space + "]"
    if isinstance(value, str):
        return string(value, False)
    return json.dumps(value)
