"""The pod record, its Elasticsearch mapping and the API's OpenAPI schema agree: every key
the records of the bundled sample hold is mapped with a type its values fit, and listed in
the OpenAPI schema; every field the schema lists occurs in some record."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import orjson
import pytest
from api_server import SAMPLE, replay
from prometheus_client import CollectorRegistry

from lunettes.api.app import create_app
from lunettes.api.routes import ApiSettings
from lunettes.model.schema import Field, fields_of
from lunettes.registry import default_results
from lunettes.store.es_indices import DIAGNOSES, MAPPINGS, PODS, diagnosis_document

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    """The sample's records as JSON (one also carrying a caller's trace context)."""
    pods = list(replay([str(SAMPLE)]).values())
    pods[0] = dataclasses.replace(pods[0], trace_context=TRACEPARENT)
    return [orjson.loads(orjson.dumps(p.to_dict())) for p in pods]


def fits(value: Any, mapping: dict[str, Any], path: str) -> None:
    """``value`` (or each of a list's values) is what ``mapping`` indexes."""
    if value is None:
        return
    if isinstance(value, list):
        for item in value:
            fits(item, mapping, path)
        return
    kind = mapping.get("type", "object")
    if kind in ("object", "nested"):
        assert isinstance(value, dict), path
        for key, item in value.items():
            assert key in mapping["properties"], f"{path}.{key}: not mapped"
            fits(item, mapping["properties"][key], f"{path}.{key}")
    elif kind == "flattened":
        assert isinstance(value, dict), path
        assert all(isinstance(v, str) for v in value.values()), path
    elif kind == "date":
        assert isinstance(value, str) and value.endswith("Z"), path
        datetime.fromisoformat(value)  # strict_date_optional_time takes RFC 3339
    elif kind in ("keyword", "text"):
        assert isinstance(value, str), path
    elif kind == "float":
        assert isinstance(value, int | float) and not isinstance(value, bool), path
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), path
    elif kind == "boolean":
        assert isinstance(value, bool), path
    else:
        raise AssertionError(f"{path}: unexpected mapping {mapping}")


def test_every_key_of_every_record_is_mapped_with_a_type_its_values_fit(
        records: list[dict[str, Any]]) -> None:
    pods = {"type": "object", **MAPPINGS[PODS]}
    diagnoses = {"type": "object", **MAPPINGS[DIAGNOSES]}
    results = default_results()
    documents = 0
    for record in records:
        fits(record, pods, record["uid"])
        document = diagnosis_document(record, results)
        if document is not None:
            fits(document, diagnoses, f"diagnosis of {record['uid']}")
            documents += 1
    assert documents > 10


def keys(values: list[Any]) -> set[str]:
    """The keys of every dict among ``values`` (and their lists' items)."""
    out: set[str] = set()
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                out |= set(item)
    return out


def resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The object schema a property holds (through $ref, anyOf with null, arrays)."""
    while True:
        if "$ref" in spec:
            spec = schema["components"]["schemas"][spec["$ref"].rsplit("/", 1)[1]]
        elif "anyOf" in spec:
            spec = next(s for s in spec["anyOf"] if s.get("type") != "null")
        elif spec.get("type") == "array":
            spec = spec["items"]
        else:
            return spec


def test_the_openapi_schema_lists_exactly_the_keys_records_hold(
        records: list[dict[str, Any]]) -> None:
    schema = create_app(CollectorRegistry(), api=ApiSettings()).openapi()
    pod = schema["components"]["schemas"]["PodModel"]
    assert set(pod["properties"]) - {"links"} == keys(records)
    assert set(pod["required"]) >= {"uid", "namespace", "name", "outcome", "stages"}

    stages = [s for r in records for s in r["stages"]]
    stage = resolve(schema, pod["properties"]["stages"])
    assert set(stage["properties"]) == keys(stages)
    events = resolve(schema, stage["properties"]["events"])
    assert set(events["properties"]) == keys([s.get("events", []) for s in stages])

    for name in ("slo", "diagnosis"):
        result = resolve(schema, pod["properties"][name])
        assert set(result["properties"]) == keys([r[name] for r in records]), name
    evidence = resolve(schema, resolve(schema, pod["properties"]["diagnosis"])
                       ["properties"]["evidence"])
    assert set(evidence["properties"]) == keys([r["diagnosis"]["evidence"] for r in records])
    # Types and meanings come along: a nullable time, a documented outcome.
    assert {"type": "null"} in pod["properties"]["created"]["anyOf"]
    assert "in_progress" in pod["properties"]["outcome"]["description"]


def test_a_field_of_an_unknown_type_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="wait_s: unknown type 'duration'"):
        fields_of({"wait_s": "duration"})
    with pytest.raises(ValueError, match="only object and nested"):
        Field("x", "keyword", fields=(Field("y", "keyword"),))
