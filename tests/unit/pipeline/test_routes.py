"""Routes: the index an item's state belongs in, the document it gets there, and the tombstone it
leaves behind when it changes route or index."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.config import load_settings, routing
from consumer.errors import ConfigError, RecordError
from consumer.pipeline.drift import natural_document
from consumer.pipeline.filtering import state_attributes
from consumer.pipeline.projection import is_tombstone, to_bulk_actions
from consumer.pipeline.projection_rules import ProjectionRules
from consumer.pipeline.records import StreamRecord
from consumer.pipeline.routes import IndexName
from consumer.pipeline.versioning import next_version
from tests.support.factories import one_index, stream_record
from tests.support.single_table import (
    KEY_SCHEMA,
    expected_indices,
    final_state,
    item_state,
    records_of,
    route_settings,
    routes,
    shop_histories,
    to_item,
)
from tests.support.single_table import (
    KEYS as SHOP_KEYS,
)


def shop_routing(**extra: str):
    settings, _ = load_settings(
        {"CDC_TABLE_NAME": "shop", "CDC_OPENSEARCH_URL": "http://search:9200", **route_settings(), **extra}
    )
    return routing(settings, KEY_SCHEMA)


KEYS = {"PK": {"S": "CUSTOMER#1"}, "SK": {"S": "ORDER#1"}}


def test_a_template_names_the_index_from_the_items_attributes():
    name = IndexName.parse("orders-${tenant}-${year}")
    assert name.templated and name.pattern == "orders-*-*"
    assert name.render({"tenant": {"S": "Globex Corp/EU"}, "year": {"N": "2026.0"}}) == "orders-globex_corp_eu-2026"
    # an item without the attribute (or with a value that names nothing) does not take the route
    assert name.render({"tenant": {"S": "acme"}}) is None
    assert name.render({"tenant": {"S": ""}, "year": {"N": "1"}}) is None
    assert name.render({"tenant": {"M": {}}, "year": {"N": "1"}}) is None
    with pytest.raises(RecordError, match="exceeds 255 bytes"):
        name.render({"tenant": {"S": "x" * 300}, "year": {"N": "1"}})
    assert IndexName.parse("orders").render({}) == "orders"


@pytest.mark.parametrize("text", ["Orders", "-orders", "${tenant}", "orders-${}", "orders/${x}", "or ders"])
def test_a_name_that_cannot_be_an_index_is_refused(text):
    with pytest.raises(ValueError, match="index"):
        IndexName.parse(text)


def test_the_first_matching_route_wins_and_an_unmatched_item_is_in_no_index():
    routes = shop_routing()
    line = {"PK": {"S": "ORDER#1"}, "SK": {"S": "LINE#1"}, "type": {"S": "order"}, "tenant": {"S": "acme"}}
    assert routes.place(line, line).route.name == "lines"  # key-only route first: wins over "orders"
    order = {**KEYS, "type": {"S": "order"}, "tenant": {"S": "acme"}}
    assert routes.place(KEYS, order).index == "shop-orders-acme"
    assert routes.place(KEYS, {**KEYS, "type": {"S": "note"}}) is None
    assert routes.place(KEYS, {**KEYS, "type": {"S": "order"}}) is None  # no tenant: no index to name


def test_an_item_that_changes_route_leaves_a_tombstone_in_its_old_index_at_the_same_version():
    # GIVEN an order of acme that becomes an archived item
    routes = shop_routing()
    old = {**KEYS, "type": {"S": "order"}, "tenant": {"S": "acme"}}
    new = {**KEYS, "type": {"S": "archived"}, "tenant": {"S": "acme"}}
    record = StreamRecord.from_wire(stream_record("MODIFY", keys=KEYS, new_image=new, old_image=old))

    # WHEN it is projected THEN the document goes to the new index and a tombstone to the old one
    document, tombstone = to_bulk_actions(record, KEY_SCHEMA, 7, routes)
    assert (document.index, document.route, document.version, document.companion) == (
        "shop-archive",
        "archive",
        7,
        False,
    )
    assert (tombstone.index, tombstone.route, tombstone.version, tombstone.companion) == (
        "shop-orders-acme",
        "orders",
        7,
        True,
    )
    assert is_tombstone(tombstone.document) and tombstone.doc_id == document.doc_id

    # AND a change that keeps it where it is writes one document
    (same,) = to_bulk_actions(
        StreamRecord.from_wire(stream_record("MODIFY", keys=KEYS, new_image=new, old_image=new)), KEY_SCHEMA, 8, routes
    )
    assert same.index == "shop-archive"


def test_a_transform_shapes_the_document_and_none_removes_it():
    routes = shop_routing()
    order = {**KEYS, "type": {"S": "order"}, "tenant": {"S": "acme"}}
    lines = {"L": [{"M": {"qty": {"N": "2"}, "price_cents": {"N": "150"}}}]}
    record = StreamRecord.from_wire(stream_record("INSERT", keys=KEYS, new_image={**order, "lines": lines}))
    (action,) = to_bulk_actions(record, KEY_SCHEMA, 1, routes)
    assert action.document["total_cents"] == 300 and action.document["PK"] == "CUSTOMER#1"

    hidden = {**order, "hidden": {"BOOL": True}}
    record = StreamRecord.from_wire(stream_record("MODIFY", keys=KEYS, new_image=hidden, old_image=order))
    (action,) = to_bulk_actions(record, KEY_SCHEMA, 2, routes)
    assert action.index == "shop-orders-acme" and is_tombstone(action.document)


def test_a_failing_or_invalid_transform_makes_the_record_poison(tmp_path, monkeypatch):
    module = tmp_path / "bad_shapes.py"
    module.write_text(
        "def boom(item, context):\n    raise KeyError('total')\n\n"
        "def text(item, context):\n    return 'not a document'\n\n"
        "def keys_win(item, context):\n    return {'PK': 'forged', 'extra': context.route}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    image = {**KEYS, "type": {"S": "order"}}
    record = StreamRecord.from_wire(stream_record("INSERT", keys=KEYS, new_image=image))
    for spec, error in (("bad_shapes:boom", "raised KeyError: 'total'"), ("bad_shapes:text", "returned a str")):
        settings, _ = load_settings({"CDC_TABLE_NAME": "shop", "CDC_OPENSEARCH_URL": "http://s", "CDC_TRANSFORM": spec})
        with pytest.raises(RecordError, match=error):
            to_bulk_actions(record, KEY_SCHEMA, 1, routing(settings, KEY_SCHEMA))
    # AND the keys and the id never come from the transform
    settings, _ = load_settings(
        {"CDC_TABLE_NAME": "shop", "CDC_OPENSEARCH_URL": "http://s", "CDC_TRANSFORM": "bad_shapes:keys_win"}
    )
    (action,) = to_bulk_actions(record, KEY_SCHEMA, 1, routing(settings, KEY_SCHEMA))
    assert action.document == {"PK": "CUSTOMER#1", "SK": "ORDER#1", "extra": "default"}
    assert action.doc_id == "CUSTOMER#1|ORDER#1"


def test_a_transform_that_cannot_be_imported_is_refused_at_start_up_naming_it():
    settings, _ = load_settings(
        {"CDC_TABLE_NAME": "shop", "CDC_OPENSEARCH_URL": "http://s", "CDC_TRANSFORM": "no_such_package.shapes:order"}
    )
    with pytest.raises(ConfigError, match="CDC_TRANSFORM='no_such_package.shapes:order': cannot import"):
        routing(settings, KEY_SCHEMA)
    routes = json.dumps([{"name": "a", "index": "a", "transform": "json:no_such_function"}])
    settings, _ = load_settings({"CDC_TABLE_NAME": "shop", "CDC_OPENSEARCH_URL": "http://s", "CDC_ROUTES": routes})
    with pytest.raises(ConfigError, match="route 'a' transform.*has no 'no_such_function'"):
        routing(settings, KEY_SCHEMA)


def test_a_route_may_not_mask_a_key_attribute_that_ids_would_show():
    routes = json.dumps([{"name": "a", "index": "a", "mask_fields": ["PK"]}])
    settings, _ = load_settings(
        {"CDC_TABLE_NAME": "shop", "CDC_OPENSEARCH_URL": "http://s", "CDC_ROUTES": routes, "CDC_MASK_KEY": "k" * 16}
    )
    with pytest.raises(ConfigError, match="mask key attributes with CDC_MASK_FIELDS"):
        routing(settings, KEY_SCHEMA)


def test_routes_on_attributes_are_named_as_needing_the_old_image():
    routes = shop_routing()
    assert routes.image_routed_names == ("customers", "orders", "archive")
    assert not routes.key_only
    assert routes.fixed_indices == ("shop-lines", "shop-customers", "shop-archive")
    assert routes.index_patterns == ("shop-lines", "shop-customers", "shop-orders-*", "shop-archive")


@given(changes=shop_histories(), order=st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_every_index_converges_to_the_items_of_its_route_whatever_the_order(changes, order):
    # GIVEN the actions of a random history (items change type and tenant, are deleted and come back),
    # each record's actions at its version, delivered in any order, each possibly twice
    routes = shop_routing()
    actions, version = [], 0
    for raw in records_of(changes):
        record = StreamRecord.from_wire(raw)
        version = next_version(version, record.approximate_second)
        actions += to_bulk_actions(record, KEY_SCHEMA, version, routes)
    delivered = actions + order.sample(actions, len(actions) // 2)
    order.shuffle(delivered)

    # WHEN an index keeps the highest external version of each document (OpenSearch's rule)
    indices: dict[str, dict[str, tuple[int, dict]]] = {}
    for action in delivered:
        held = indices.setdefault(action.index, {})
        if action.doc_id not in held or held[action.doc_id][0] < action.version:
            held[action.doc_id] = (action.version, action.document)

    # THEN each index holds exactly the items of its route, shaped by its rules and transform
    live = {
        index: {doc_id: natural_document(doc) for doc_id, (_, doc) in docs.items() if not is_tombstone(doc)}
        for index, docs in indices.items()
    }
    assert {index: docs for index, docs in live.items() if docs} == expected_indices(final_state(changes))


def test_routes_come_from_a_yaml_or_json_file_as_well(tmp_path):
    # GIVEN the routes in a YAML file (a mounted ConfigMap) and in a JSON file
    yaml_file, json_file = tmp_path / "routes.yaml", tmp_path / "routes.json"
    yaml_file.write_text(yaml.safe_dump({"routes": routes()}))
    json_file.write_text(json.dumps(routes()))
    for path in (yaml_file, json_file):
        # WHEN the settings load THEN they hold the same routes as the inline JSON
        assert shop_routing(CDC_ROUTES=str(path)) == shop_routing()
    yaml_file.write_text("routes: [name: a")
    with pytest.raises(ConfigError, match="routes.yaml: not YAML"):
        shop_routing(CDC_ROUTES=str(yaml_file))


@st.composite
def _shop_states(draw: st.DrawFn) -> tuple[dict, dict, dict]:
    """Two states of one shop item (AttributeValues), and the second with the first's deciding attributes."""
    key = draw(st.sampled_from(SHOP_KEYS))
    first, second = (item_state(lambda options: draw(st.sampled_from(options))) for _ in range(2))
    like_first = {**second, "type": first["type"], "tenant": first["tenant"]}
    return to_item(key, first), to_item(key, second), to_item(key, like_first)


@given(states=_shop_states())
@settings(max_examples=300, deadline=None)
def test_two_states_said_to_be_placed_alike_are_placed_alike(states):
    # GIVEN the shop's routes (on the key, on the item's type, into an index named by its tenant), and
    # two states of one item, and a third that differs from the first only where no placement reads
    routes_ = shop_routing(
        CDC_FILTER_PATTERNS=json.dumps([{"dynamodb": {"NewImage": {"revision": [{"exists": True}]}}}])
    )
    first, second, like_first = states
    keys = {name: first[name] for name in ("PK", "SK")}
    assert routes_.deciding == {"type", "tenant", "revision"}  # the routes', the template's, the filter's

    # WHEN placement is skipped for the states said to be placed alike
    # THEN they are placed alike; and a state that differs only elsewhere is always said to be
    if routes_.places_alike(first, second):
        assert routes_.place(keys, first) == routes_.place(keys, second)
    assert routes_.places_alike(first, like_first) == (first.get("revision") == like_first.get("revision"))


def test_a_pattern_that_reads_the_whole_state_makes_nothing_alike():
    # GIVEN a pattern on the state as a whole (it exists), and ones on attributes
    whole = ({"dynamodb": {"NewImage": [{"exists": True}]}},)
    on_attributes = ({"dynamodb": {"NewImage": {"a": {"S": ["x"]}}, "Keys": {"k": {"S": ["y"]}}}},)
    # THEN the first reads everything (no two states can be said alike); the others name what they read
    assert state_attributes(whole) is None
    assert state_attributes(on_attributes) == {"a"}


@given(
    states=_shop_states(),
    event=st.sampled_from(["INSERT", "MODIFY", "REMOVE"]),
    ttl=st.booleans(),
    kind=st.sampled_from(["one index", "one index, state filter", "one index, TTL marks", "shop routes"]),
)
@settings(max_examples=300, deadline=None)
def test_a_routing_that_places_every_state_alike_projects_what_placing_each_state_would(states, event, ttl, kind):
    # GIVEN a routing, and a change of one item from one state to another (a TTL delete now and then)
    routing_ = {
        "one index": one_index(),
        "one index, state filter": one_index(
            ProjectionRules(patterns=({"dynamodb": {"NewImage": {"type": [{"exists": True}]}}},))
        ),
        "one index, TTL marks": one_index(ProjectionRules(ttl_deletes="mark")),
        "shop routes": shop_routing(),
    }[kind]
    first, second, _ = states
    keys = {name: first[name] for name in ("PK", "SK")}
    record = StreamRecord.from_wire(
        stream_record(event, keys=keys, new_image=second, old_image=first, ttl=ttl and event == "REMOVE")
    )

    # WHEN it is projected with the routing's shortcut (every state in one place) and without it
    each_placed = dataclasses.replace(routing_)
    object.__setattr__(each_placed, "everywhere", None)

    # THEN the shortcut is taken only where no state can be told apart, and the actions are the same
    assert (routing_.everywhere is not None) == (kind in ("one index", "one index, TTL marks"))
    assert to_bulk_actions(record, KEY_SCHEMA, 5, routing_) == to_bulk_actions(record, KEY_SCHEMA, 5, each_placed)
