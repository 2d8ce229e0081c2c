"""The index's settings and mappings (consumer.pipeline.mapping) and CDC_INDEX_TEMPLATE."""

from __future__ import annotations

import json

import pytest

from consumer.config import load_settings
from consumer.errors import ConfigError
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.pipeline.mapping import (
    SCALAR_FIELD,
    IndexTemplate,
    existing_index_mapping,
    index_body,
)

SCHEMA = KeySchema((KeyAttribute("pk", "S"), KeyAttribute("sk", "N")))
BASE_ENV = {"CDC_TABLE_NAME": "orders", "CDC_OPENSEARCH_URL": "http://localhost:9200"}


def test_managed_mode_maps_every_scalar_alike_whatever_arrives_first():
    # GIVEN the default policy WHEN the index body is built
    body = index_body(SCHEMA)
    mappings = body["mappings"]
    # THEN strings, longs, doubles and booleans all get the same field (so no first document decides),
    # no date or numeric detection guesses types, and the keys are mapped exactly before any write
    templates = {name: spec for entry in mappings["dynamic_templates"] for name, spec in entry.items()}
    root = [spec for name, spec in templates.items() if name.startswith("cdc_scalar_")]
    assert {spec["match_mapping_type"] for spec in root} == {"string", "long", "double", "boolean"}
    assert all(spec["mapping"] == SCALAR_FIELD for spec in root)
    assert mappings["date_detection"] is False and mappings["numeric_detection"] is False
    assert mappings["properties"]["pk"] == SCALAR_FIELD == mappings["properties"]["sk"]
    # AND the number sub-field never coerces a string, and integer fields never take fractions
    assert SCALAR_FIELD["fields"]["number"] == {"type": "double", "coerce": False, "ignore_malformed": True}
    assert body["settings"]["index.mapping.coerce"] is False


def test_dynamic_mode_leaves_the_items_attributes_to_opensearch_but_not_the_typed_form():
    mappings = index_body(SCHEMA, "dynamic")["mappings"]
    names = [name for entry in mappings["dynamic_templates"] for name in entry]
    assert names and all(name.startswith("cdc_typed_") for name in names)
    assert "date_detection" not in mappings
    assert mappings["properties"]["_cdc_typed"] == {"type": "object", "dynamic": True}


def test_a_user_template_is_merged_first_and_keeps_its_own_fields():
    # GIVEN a template that maps a price as scaled_float, sets a refresh interval and a dynamic template
    user = IndexTemplate.from_json(
        {
            "settings": {"index": {"refresh_interval": "5s"}, "number_of_shards": 3},
            "mappings": {
                "properties": {"price": {"type": "scaled_float", "scaling_factor": 100}, "pk": {"type": "keyword"}},
                "dynamic_templates": [{"ids": {"match": "*_id", "mapping": {"type": "keyword"}}}],
            },
        }
    )
    # WHEN merged
    body = index_body(SCHEMA, "managed", user)
    # THEN its settings, fields and templates are there (its templates first: the first match wins),
    # and the service's own settings and fields are kept
    assert body["settings"]["index.refresh_interval"] == "5s"
    assert body["settings"]["index.number_of_shards"] == 3
    assert body["mappings"]["properties"]["price"]["type"] == "scaled_float"
    assert body["mappings"]["properties"]["pk"] == {"type": "keyword"}
    assert next(iter(body["mappings"]["dynamic_templates"][0])) == "ids"
    assert body["mappings"]["properties"]["_cdc_deleted"] == {"type": "boolean"}


@pytest.mark.parametrize(
    ("properties", "named"),
    [
        ({"sk": {"type": "long"}}, "sk"),
        ({"_cdc_deleted": {"type": "keyword"}}, "_cdc_deleted"),
        ({"_cdc_typed": {"type": "object"}}, "_cdc_typed"),
    ],
)
def test_a_template_that_conflicts_with_what_the_service_needs_is_refused_naming_the_field(properties, named):
    # GIVEN a template that maps a key other than exactly, or one of the service's fields
    # WHEN the worker's settings are loaded THEN start-up fails naming the field and what to do
    env = {**BASE_ENV, "CDC_INDEX_TEMPLATE": json.dumps({"mappings": {"properties": properties}})}
    settings, _ = load_settings(env)
    with pytest.raises(ConfigError, match=named):
        index_body(SCHEMA, settings.mapping_mode, settings.index_template)


def test_the_template_variable_takes_json_or_a_file_and_names_what_is_wrong(tmp_path):
    path = tmp_path / "template.json"
    path.write_text(json.dumps({"template": {"mappings": {"properties": {"a": {"type": "keyword"}}}}}))
    settings, _ = load_settings({**BASE_ENV, "CDC_INDEX_TEMPLATE": str(path)})
    assert settings.index_template == IndexTemplate({}, {"properties": {"a": {"type": "keyword"}}})
    for bad, message in [
        (str(tmp_path / "missing.json"), "neither JSON nor a readable file"),
        ("{not json", "not JSON"),
        ('{"mapping": {}}', "expected an object with 'settings' and/or 'mappings'"),
    ]:
        with pytest.raises(ConfigError, match="CDC_INDEX_TEMPLATE") as raised:
            load_settings({**BASE_ENV, "CDC_INDEX_TEMPLATE": bad})
        assert message in str(raised.value)


def test_an_existing_index_gets_only_what_it_lacks_and_keeps_its_own_templates():
    # GIVEN an index created before (dynamic mapping: sk became a long) with a template of its own
    current = {
        "properties": {"pk": {"type": "text"}, "sk": {"type": "long"}},
        "dynamic_templates": [{"mine": {"match": "x*", "mapping": {"type": "keyword"}}}],
    }
    # WHEN the service updates it
    update = existing_index_mapping(SCHEMA, current, "managed")
    # THEN existing fields are left alone (OpenSearch cannot change them), the service's are added,
    # and its template stays first with ours after it
    assert "pk" not in update["properties"] and "sk" not in update["properties"]
    assert "_cdc_deleted" in update["properties"]
    names = [name for entry in update["dynamic_templates"] for name in entry]
    assert names[0] == "mine" and "cdc_scalar_string" in names


def test_key_attributes_with_reserved_names_are_not_mapped_at_the_top_level():
    schema = KeySchema((KeyAttribute("_id", "S"),))
    assert "_id" not in index_body(schema)["mappings"]["properties"]
