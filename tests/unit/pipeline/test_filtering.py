"""FilterCriteria-style patterns: what passes, what does not, and what is rejected up front."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.pipeline.filtering import PatternError, StateMatcher, matches, matches_any, validate_pattern
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


_NAMES = st.sampled_from(["status", "tier", "tags", "customer", "M", "S", "N", "SS", "L"])
_VALUES = st.sampled_from(["active", "gold", "vip", "1", "2.5", "x"]) | st.integers(-2, 3) | st.booleans()
_ELEMENTS = (
    _VALUES
    | st.sampled_from(
        [{"prefix": "ac"}, {"suffix": "d"}, {"anything-but": ["gold"]}, {"exists": True}, {"exists": False}]
    )
    | st.sampled_from([{"numeric": [">", 0]}, {"numeric": [">=", 1, "<", 3]}])
)
_STATE_VALUES = st.recursive(
    _VALUES | st.lists(_VALUES, max_size=3),
    lambda inner: st.dictionaries(_NAMES, inner, max_size=3),
    max_leaves=8,
)
_PATTERN_BODIES = st.recursive(
    st.lists(_ELEMENTS, min_size=1, max_size=3),
    lambda inner: st.dictionaries(_NAMES, inner, min_size=1, max_size=2),
    max_leaves=6,
)


@st.composite
def states_near(draw: st.DrawFn, patterns: list[dict]) -> dict:
    """A ``dynamodb`` state (Keys, NewImage) that often follows the patterns' paths, with values that
    are often one of their literals: so that leaves match, miss and meet the wrong type alike."""
    state: dict = {"Keys": draw(st.dictionaries(_NAMES, _STATE_VALUES, max_size=2)), "NewImage": {}}
    for pattern in patterns:
        for root, body in pattern["dynamodb"].items():
            if root in state and isinstance(body, dict) and draw(st.booleans()):
                _follow(draw, state[root], body)
    return state


def _follow(draw: st.DrawFn, target: dict, body: dict) -> None:
    for name, expected in body.items():
        if isinstance(expected, dict):
            child = target.setdefault(name, {}) if draw(st.integers(0, 5)) else target.setdefault(name, "flat")
            if isinstance(child, dict):
                _follow(draw, child, expected)
        else:
            literals = [element for element in expected if not isinstance(element, dict)] or ["x"]
            value = draw(st.sampled_from(literals) | _VALUES | st.lists(st.sampled_from(literals), max_size=2))
            if draw(st.integers(0, 4)):
                target[name] = value


@given(
    patterns=st.lists(
        st.fixed_dictionaries(
            {
                "dynamodb": st.dictionaries(
                    st.sampled_from(["Keys", "NewImage", "OldImage"]), _PATTERN_BODIES, min_size=1
                )
            }
        ),
        max_size=3,
    ),
    data=st.data(),
)
@settings(max_examples=500)
def test_a_compiled_state_matcher_judges_exactly_as_the_patterns_do(patterns, data):
    # GIVEN any patterns on an item's state (leaves at any depth, any operator) and states near them
    state = data.draw(states_near(patterns))
    keys, image = state["Keys"], state["NewImage"]

    # WHEN the compiled matcher judges it THEN it says what matching the patterns on the record says
    expected = matches_any(tuple(patterns), {"dynamodb": {"Keys": keys, "NewImage": image}})
    assert StateMatcher(tuple(patterns))(keys, image) == expected
