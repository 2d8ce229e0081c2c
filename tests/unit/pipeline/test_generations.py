"""Index generations (pure): names, the registry's transitions, which generation a configuration
writes, and the fingerprint of what shapes documents."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.pipeline.document_shape import differences, document_shape, fingerprint
from consumer.pipeline.generations import (
    Adopt,
    Create,
    Refuse,
    Registry,
    Write,
    logical_index,
    physical_index,
    plan,
)
from consumer.pipeline.mapping import IndexTemplate
from consumer.pipeline.projection_rules import ProjectionRules
from consumer.pipeline.routes import IndexName, Route, Routing, single_route
from consumer.pipeline.transforms import Transform

SCHEMA = KeySchema((KeyAttribute("pk", "S"), KeyAttribute("sk", "N")))


def shape_of(**rules: object) -> dict:
    return document_shape(single_route("t", "orders", ProjectionRules(**rules)), SCHEMA, "managed")


def test_names_carry_the_generation_and_generation_0_is_the_index_itself():
    assert physical_index("orders", 3) == "orders-g3"
    assert physical_index("orders", 0) == "orders"
    assert logical_index("orders-g3", 3) == "orders"
    assert logical_index("orders-g3", 0) == "orders-g3"  # an index adopted with that very name


def test_routes_in_a_generation_name_its_indices_fixed_and_templated():
    rules = ProjectionRules()
    routes = Routing(
        "t",
        rules,
        (Route("orders", IndexName.parse("orders-${tenant}"), rules), Route("rest", IndexName.parse("rest"), rules)),
    )
    third = routes.in_generation(3)
    assert third.index_patterns == ("orders-*-g3", "rest-g3")
    assert third.place({}, {"tenant": {"S": "Acme"}}).index == "orders-acme-g3"
    assert third.place({}, {}).index == "rest-g3"
    assert routes.in_generation(0) is routes


def test_the_fingerprint_changes_with_what_shapes_documents_and_the_difference_is_named():
    base = shape_of()
    assert fingerprint(base) == fingerprint(shape_of())
    dropped = shape_of(drop_fields=("secret",))
    assert fingerprint(dropped) != fingerprint(base)
    assert differences(base, dropped) == ["route 'default' drop_fields: [] → [\"secret\"]"]
    template = IndexTemplate(mappings={"properties": {"price": {"type": "double"}}})
    mapped = document_shape(single_route("t", "orders", ProjectionRules(), template=template), SCHEMA, "managed")
    assert [line.split(":")[0] for line in differences(base, mapped)] == ["route 'default' template"]
    assert differences(base, document_shape(single_route("t", "orders", ProjectionRules()), SCHEMA, "strict")) == [
        'mapping_mode: "managed" → "strict"'
    ]


def test_a_transform_is_known_by_its_spec_and_version_and_the_masking_key_only_by_a_digest():
    def shaped(version: str) -> dict:
        transform = Transform("shop.shapes:order", lambda item, context: item, version)
        return document_shape(single_route("t", "orders", ProjectionRules(), transform), SCHEMA, "managed")

    assert fingerprint(shaped("1.0")) != fingerprint(shaped("1.1"))
    masked = shape_of(mask_fields=("email",), mask_key=b"k" * 32)
    assert b"k" * 32 not in repr(masked).encode() and "kkkk" not in repr(masked)
    assert fingerprint(masked) != fingerprint(shape_of(mask_fields=("email",), mask_key=b"j" * 32))


def test_the_first_configuration_is_adopted_then_only_its_own_generation_is_written():
    shape, other = shape_of(), shape_of(drop_fields=("secret",))
    first = Registry().adopted(fingerprint(shape), shape, "leases", legacy=False, now=1.0)
    assert isinstance(plan(Registry(), fingerprint(shape), shape, False), Adopt)
    assert plan(first, fingerprint(shape), shape, False) == Write(first.live)
    refused = plan(first, fingerprint(other), other, False)
    assert isinstance(refused, Refuse) and "drop_fields" in refused.reason and "consumer reindex" in refused.reason
    assert isinstance(plan(first, fingerprint(other), other, True), Create)
    building = first.with_building(fingerprint(other), other, "leases", 2.0)
    assert building.building.number == 2 and building.building.lease_table == "leases-g2"
    third = shape_of(drop_fields=("other",))
    assert "one reindex at a time" in plan(building, fingerprint(third), third, True).reason
    swapped = building.swapped(3.0)
    assert (swapped.live.number, swapped.previous.number) == (2, 1)
    assert "kept for rollback" in plan(swapped, fingerprint(third), third, True).reason
    assert (swapped.rolled_back(4.0).live.number, swapped.rolled_back(4.0).previous.number) == (1, 2)
    assert Registry.from_json(swapped.to_json()) == swapped


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, int]]:
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(["resolve", "swap", "rollback", "retire", "abandon", "report"]), st.integers(0, 4)
            ),
            max_size=30,
        )
    )


@settings(max_examples=300, deadline=None)
@given(operations())
def test_whatever_the_operations_no_generation_holds_two_shapes_and_at_most_two_are_applied(steps):
    shapes = [shape_of(drop_fields=(f"f{n}",)) for n in range(5)]
    registry, numbers_given = Registry(), []
    for operation, which in steps:
        shape = shapes[which]
        own = fingerprint(shape)
        if operation == "resolve":
            decision = plan(registry, own, shape, True)
            if isinstance(decision, Adopt):
                registry = registry.adopted(own, shape, "leases", legacy=which == 0, now=0.0)
            elif isinstance(decision, Create):
                registry = registry.with_building(own, shape, "leases", 0.0)
            elif isinstance(decision, Write):
                assert decision.generation.fingerprint == own
            if isinstance(decision, (Adopt, Create)):
                numbers_given.append(registry.last_number)
        elif operation == "swap" and registry.building:
            registry = registry.swapped(1.0)
        elif operation == "rollback" and registry.previous:
            registry = registry.rolled_back(1.0)
        elif operation == "report" and registry.building:
            registry = registry.with_progress("fill", which, float(which))
        elif operation in ("retire", "abandon"):
            gone = registry.previous if operation == "retire" else registry.building
            if gone is not None:
                registry = registry.without(gone.number)
        # invariants after every step
        assert len(registry.generations) <= 2  # live + building, or live + previous: two readers per shard
        assert len({g.fingerprint for g in registry.generations}) == len(registry.generations)
        assert len(numbers_given) == len(set(numbers_given))  # a number is never given twice
        if registry.generations:
            assert registry.live is not None
        assert all(g.progress is None for g in registry.generations if g.state != "building")
        assert Registry.from_json(registry.to_json()) == registry


def test_a_reindex_moves_only_when_its_step_or_count_changes_and_its_progress_ends_at_the_swap():
    shape, other = shape_of(), shape_of(drop_fields=("secret",))
    first = Registry().adopted(fingerprint(shape), shape, "leases", legacy=False, now=1.0)
    building = first.with_building(fingerprint(other), other, "leases", 2.0)
    assert building.building.moved_at() == 2.0  # no report yet: its creation
    filling = building.with_progress("fill", 100, 10.0)
    assert (filling.building.progress.step, filling.building.progress.count, filling.building.moved_at()) == (
        "fill",
        100,
        10.0,
    )
    assert filling.with_progress("fill", 100, 50.0).building.moved_at() == 10.0  # the same count: no move
    assert filling.with_progress("fill", 300, 50.0).building.moved_at() == 50.0
    assert filling.with_progress("catch-up", 300, 60.0).building.progress.step == "catch-up"
    assert Registry.from_json(filling.to_json()) == filling
    assert filling.swapped(70.0).live.progress is None
