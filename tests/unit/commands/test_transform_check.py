"""``consumer transform --check``: what the routes and the transform make of items, written nowhere."""

from __future__ import annotations

import json

import pytest

from consumer.commands.cli import main
from tests.support.single_table import MASK_KEY, route_settings

ITEMS = [
    {
        "PK": "CUSTOMER#1",
        "SK": "ORDER#1",
        "type": "order",
        "tenant": "Globex Corp",
        "lines": [{"qty": 2, "price_cents": 150}],
        "price": 1.25,
    },
    {
        "Item": {
            "PK": {"S": "CUSTOMER#1"},
            "SK": {"S": "PROFILE"},
            "type": {"S": "customer"},
            "name": {"S": "Ada"},
            "tenant": {"S": "acme"},
            "email": {"S": "a@example.com"},
        }
    },
    {"PK": "X", "SK": "Y", "type": "note"},
    {"PK": "X", "SK": "Z", "type": "order", "tenant": "acme", "hidden": True},
]


@pytest.fixture
def shop_env(monkeypatch):
    monkeypatch.setenv("CDC_TABLE_NAME", "shop")
    for name, value in route_settings().items():
        monkeypatch.setenv(name, value)


def run(tmp_path, capsys, items, *args):
    path = tmp_path / "items.json"
    path.write_text(json.dumps(items))
    code = main(["transform", "--check", str(path), "--key", "PK,SK", *args])
    return code, capsys.readouterr()


def test_each_item_shows_its_route_index_id_and_document_or_why_it_has_none(shop_env, tmp_path, capsys):
    # WHEN items in plain JSON and DynamoDB JSON are checked
    code, out = run(tmp_path, capsys, ITEMS, "--json")

    # THEN each shows what the workers would write: shaped by the route's transform and field rules
    order, customer, note, hidden = json.loads(out.out)
    assert code == 0
    assert (order["route"], order["index"], order["id"]) == ("orders", "shop-orders-globex_corp", "CUSTOMER#1|ORDER#1")
    assert order["document"]["total_cents"] == 300 and order["document"]["price"] == 1.25
    assert customer["index"] == "shop-customers" and customer["document"]["display_name"] == "Ada (acme)"
    assert customer["document"]["email"].startswith("hmac-sha256:") and MASK_KEY not in out.out
    assert note == {"item": 3, "id": "X|Y", "index": None, "why": "no route takes it"}
    assert hidden["why"] == "the transform of route 'orders' left it out"


def test_an_item_the_transform_fails_on_is_reported_as_poison_with_exit_3(shop_env, tmp_path, capsys):
    code, out = run(tmp_path, capsys, [{"PK": "X", "SK": "Q", "type": "order", "tenant": "a", "lines": [{"qty": "x"}]}])
    assert code == 3
    assert "poison (its changes would be dead-lettered): transform tests.support.single_table:shape raised" in out.out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "neither JSON nor JSON lines"),
        ("[1]", "item 1 is not a JSON object"),
        ('[{"SK": "x"}]', "--key PK,SK"),
    ],
)
def test_a_file_it_cannot_use_is_a_configuration_error_naming_it(shop_env, tmp_path, capsys, content, message):
    path = tmp_path / "items.json"
    path.write_text(content)
    assert main(["transform", "--check", str(path), "--key", "PK,SK"]) == 2
    assert message in capsys.readouterr().err
