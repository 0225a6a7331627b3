"""Index values extracted ahead of the version (``extract_ahead``, a bulk load's read-ahead): the stamped
version's ``sp`` is the very one a full extraction gives, key order included, for every R4 example and every
synthetic registry resource, with or without ids and meta; and the values found ahead are not used once the
parameters in force changed."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fhir_server.interactions.versioning import stamp
from fhir_server.search.extract import extract_ahead, extract_index_values
from fhir_server.search.registry import SearchParameterRegistry
from tests.synthetic import registry_bundle

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "fhir-r4-examples-all"
AT = datetime(2026, 12, 6, 5, 0, 0, 123000, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry() -> SearchParameterRegistry:
    return SearchParameterRegistry.load_default()


def examples() -> list[dict[str, Any]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            found.append(resource)
    return found


def registry_resources() -> list[dict[str, Any]]:
    rng = random.Random(14)
    return [entry["resource"] for index in range(6) for entry in registry_bundle(index, rng)[0]["entry"]]


def assert_same_as_full(registry: SearchParameterRegistry, resource: dict[str, Any], resource_id: str) -> None:
    stamped = stamp(resource, resource_id, 4, AT)
    full = extract_index_values(registry, stamped)
    ahead = extract_index_values(registry, stamped, extract_ahead(registry, resource))
    assert list(ahead.items()) == list(full.items()), resource.get("resourceType")


def test_examples_extracted_ahead_are_extracted_as_in_full(registry: SearchParameterRegistry) -> None:
    resources = [r for r in examples() if registry.for_type(r["resourceType"])]
    assert len(resources) > 500
    for resource in resources:
        assert_same_as_full(registry, resource, resource.get("id") or "new-id")


def test_resources_without_id_or_meta_and_with_tags_are_extracted_as_in_full(
        registry: SearchParameterRegistry) -> None:
    for resource in registry_resources():
        bare = {k: v for k, v in resource.items() if k not in ("id", "meta")}
        assert_same_as_full(registry, bare, "server-assigned")
        tagged = {**resource, "meta": {"tag": [{"system": "urn:t", "code": "imported"}],
                                       "security": [{"system": "urn:s", "code": "R"}],
                                       "profile": ["https://example.org/p"], "versionId": "9",
                                       "lastUpdated": "2001-01-01T00:00:00Z"}}
        assert_same_as_full(registry, tagged, "kept-id")
        full = extract_index_values(registry, stamp(tagged, "kept-id", 4, AT))
        assert {"s": "urn:t", "c": "imported"} in full["_tag"]  # meta's values come from the stamp


def test_values_found_ahead_are_not_used_once_a_parameter_changed() -> None:
    local = SearchParameterRegistry.load_default()
    definition = {"resourceType": "SearchParameter", "url": "https://example.org/sp/pip", "code": "pip",
                  "base": ["Patient"], "type": "token", "expression": "Patient.gender"}
    local.add_or_replace(definition)
    patient = {"resourceType": "Patient", "id": "p", "gender": "female",
               "maritalStatus": {"coding": [{"system": "urn:m", "code": "M"}]}}
    ahead = extract_ahead(local, patient)
    local.add_or_replace({**definition, "expression": "Patient.maritalStatus"})
    stamped = stamp(patient, "p", 1, AT)
    values = extract_index_values(local, stamped, ahead)
    assert values == extract_index_values(local, stamped)
    assert [e.get("c") for e in values["pip"]] == ["M"]


def test_a_parameter_reading_the_stamp_takes_the_stamped_version() -> None:
    local = SearchParameterRegistry.load_default()
    for code, expression in (("pipversion", "Patient.meta.versionId"), ("pipid", "Patient.id")):
        local.add_or_replace({"resourceType": "SearchParameter", "url": f"https://example.org/sp/{code}",
                              "code": code, "base": ["Patient"], "type": "token", "expression": expression})
    submitted = {"resourceType": "Patient", "id": "old", "meta": {"versionId": "9"}, "gender": "male"}
    values = extract_index_values(local, stamp(submitted, "new", 4, AT), extract_ahead(local, submitted))
    assert (values["pipversion"], values["pipid"]) == ([{"c": "4"}], [{"c": "new"}])
