"""FilterCriteria-style patterns: what passes, what does not, and what is rejected up front."""

from __future__ import annotations

import pytest

from consumer.pipeline.filtering import PatternError, matches, matches_any, validate_pattern
from tests.support.factories import stream_record


def order(status: str = "active", total: str = "42.5", tags: list[str] | None = None) -> dict:
    image = {"pk": {"S": "order-1"}, "status": {"S": status}, "total": {"N": total}}
    if tags is not None:
        image["tags"] = {"SS": tags}
    return stream_record("MODIFY", keys={"pk": {"S": "order-1"}}, new_image=image)


@pytest.mark.parametrize(
    ("pattern", "record", "expected"),
    [
        ({"eventName": ["MODIFY"]}, order(), True),
        ({"eventName": ["INSERT", "REMOVE"]}, order(), False),
        ({"dynamodb": {"NewImage": {"status": {"S": ["active"]}}}}, order(), True),
        ({"dynamodb": {"NewImage": {"status": {"S": ["active"]}}}}, order("closed"), False),
        ({"dynamodb": {"NewImage": {"status": {"S": [{"prefix": "act"}]}}}}, order(), True),
        ({"dynamodb": {"NewImage": {"status": {"S": [{"suffix": "ive"}]}}}}, order("closed"), False),
        ({"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": ["closed"]}]}}}}, order("open"), True),
        ({"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": "closed"}]}}}}, order("closed"), False),
        ({"dynamodb": {"NewImage": {"total": {"N": [{"numeric": [">", 40, "<=", 50]}]}}}}, order(), True),
        ({"dynamodb": {"NewImage": {"total": {"N": [{"numeric": [">", 100]}]}}}}, order(), False),
        ({"dynamodb": {"NewImage": {"tags": {"SS": ["vip"]}}}}, order(tags=["new", "vip"]), True),
        ({"dynamodb": {"NewImage": {"tags": [{"exists": True}]}}}, order(), False),
        ({"dynamodb": {"NewImage": {"tags": [{"exists": False}]}}}, order(), True),
        ({"dynamodb": {"NewImage": {"missing": {"S": ["x"]}}}}, order(), False),
    ],
)
def test_a_pattern_matches_when_every_leaf_does(pattern, record, expected):
    validate_pattern(pattern)
    assert matches(pattern, record) is expected


def test_several_patterns_are_ored_and_none_means_everything():
    active = {"dynamodb": {"NewImage": {"status": {"S": ["active"]}}}}
    inserts = {"eventName": ["INSERT"]}
    assert matches_any((), order("closed"))
    assert matches_any((inserts, active), order())
    assert not matches_any((inserts, active), order("closed"))


@pytest.mark.parametrize(
    ("pattern", "complaint"),
    [
        ({}, "non-empty object"),
        ({"eventName": "INSERT"}, "non-empty list"),
        ({"eventName": []}, "non-empty list"),
        ({"a": [{"regex": "x"}]}, "unknown operator 'regex'"),
        ({"a": [{"numeric": [">", "one"]}]}, "bad operand for 'numeric'"),
        ({"a": [{"prefix": "x", "suffix": "y"}]}, "exactly one key"),
    ],
)
def test_malformed_patterns_are_rejected_naming_the_place(pattern, complaint):
    with pytest.raises(PatternError, match=complaint):
        validate_pattern(pattern)
