"""Python's cyclic garbage collector, set for a process that turns pages of JSON into documents.

A 1 MB GetRecords (or Scan) page parses into about 13,000 dicts and lists, and preparing it makes
about 3,000 more; they live until the page settles, while the pages read ahead are parsed. With
CPython's default thresholds (a young collection every 700 allocations, a middle one every 10 young
ones) a page's containers outlive both young generations and reach the oldest, which a full
collection walks whole, again and again while the pages flow: measured on the prepare loop, the
collector was more than half of the CPU per record (README, `make bench-scale`).

``tune_collector(young)`` raises the young generation's threshold to ``young`` allocations and the
middle one's to 50 young collections, so a page's containers die young and full collections
become rare. Nothing else changes: reference counting still frees every object the moment its
last reference goes (a page's data is acyclic, so its memory is returned exactly as before); only
unreachable *cycles* (an exception and its traceback, say) wait longer for the collector, at most
``50 × young`` allocations while young. ``young`` = 0 leaves CPython's defaults.

Process-wide: call once, at start-up.
"""

from __future__ import annotations

import gc

MIDDLE_GENERATION_THRESHOLD = 50  # young collections per middle-generation collection
OLD_GENERATION_THRESHOLD = 10  # CPython's default: middle collections per full collection


def tune_collector(young: int) -> tuple[int, int, int]:
    """Set the collector's thresholds for ``young`` allocations per young collection (0: leave
    CPython's defaults); returns the thresholds in force."""
    if young < 0:
        raise ValueError(f"young generation threshold must be ≥ 0, got {young}")
    if young:
        gc.set_threshold(young, MIDDLE_GENERATION_THRESHOLD, OLD_GENERATION_THRESHOLD)
    return gc.get_threshold()
