"""The collector's thresholds: a page's containers must die young (consumer.runtime.garbage_collection)."""

from __future__ import annotations

import gc

import orjson
import pytest

from consumer.runtime.garbage_collection import tune_collector


@pytest.fixture(autouse=True)
def _restore_thresholds():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_a_young_threshold_raises_the_young_and_middle_generations():
    assert tune_collector(100_000) == (100_000, 50, 10)
    assert gc.get_threshold() == (100_000, 50, 10)


def test_zero_keeps_the_thresholds_in_force():
    gc.set_threshold(700, 10, 10)
    assert tune_collector(0) == (700, 10, 10)


def test_a_negative_threshold_is_refused():
    with pytest.raises(ValueError, match="≥ 0"):
        tune_collector(-1)


@pytest.mark.parametrize(("young", "promoted"), [(0, True), (100_000, False)])
def test_a_page_that_settles_within_a_few_pages_never_reaches_the_oldest_generation(young, promoted):
    # GIVEN CPython's defaults (0) or the service's threshold, and a GetRecords-like page: 400 records
    # of about 30 containers each, alive while two more pages are parsed (the read-ahead)
    gc.set_threshold(700, 10, 10)
    tune_collector(young)
    page = orjson.dumps([{"dynamodb": {"NewImage": {f"a{i}": {"M": {"x": {"S": "y"}}} for i in range(15)}}}] * 400)
    gc.collect()
    oldest_before = len(gc.get_objects(generation=2))

    # WHEN the page is parsed and then two more pages are parsed while it is held
    held = orjson.loads(page)
    ahead = [orjson.loads(page) for _ in range(2)]

    # THEN with the defaults the held page was promoted to the oldest generation (every full
    # collection walks it from then on); with the service's threshold it is still young
    oldest_growth = len(gc.get_objects(generation=2)) - oldest_before
    assert (oldest_growth > 10_000) is promoted
    del held, ahead
