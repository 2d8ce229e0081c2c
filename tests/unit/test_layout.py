"""The package's layout holds: every import runs down the layers (or stays in its room), and the top
level holds only the entry points, the settings and the errors (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import consumer

PACKAGE = Path(consumer.__file__).parent

# Lowest first: a module may import from its own room and from rooms listed before it, never after.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("pipeline",),
    ("aws",),
    ("observability",),
    ("leases", "sink"),
    ("shards", "backfill"),
    ("config",),  # read by the composition root alone: components get what they need from it
    ("runtime",),
    ("kcl",),
    ("commands",),
    ("__main__",),
)
RANK = {room: rank for rank, rooms in enumerate(LAYERS) for room in rooms}
TOP_LEVEL_MODULES = {"__init__", "__main__", "config", "errors"}


def _room(module: str) -> str:
    """``consumer.shards.task`` → ``shards``; ``consumer.config`` → ``config``."""
    return module.split(".")[1]


def _modules() -> dict[str, Path]:
    return {
        ".".join(("consumer", *path.relative_to(PACKAGE).with_suffix("").parts)): path
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def _imports(path: Path) -> set[str]:
    """The consumer modules (or rooms) that ``path`` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("consumer."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("consumer."))
    return found


def test_every_import_runs_down_the_layers_or_stays_in_its_room():
    upward = []
    for module, path in _modules().items():
        if module == "consumer.__init__":
            continue
        room = _room(module)
        for target in _imports(path):
            other = _room(target)
            if other != room and (RANK[other] > RANK[room] or RANK[other] == RANK[room]):
                upward.append(f"{module} imports {target} ({room} → {other})")
    assert not upward, "imports that run up or across a layer:\n" + "\n".join(sorted(upward))


def test_every_room_has_a_place_in_the_layers():
    rooms = {_room(module) for module in _modules() if module != "consumer.__init__"}
    assert rooms <= set(RANK), f"rooms without a layer: {sorted(rooms - set(RANK))}"


def test_the_top_level_holds_only_the_entry_points_the_settings_and_the_errors():
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top == TOP_LEVEL_MODULES
