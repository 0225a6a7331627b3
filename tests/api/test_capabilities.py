"""CapabilityStatement at /metadata, generated from what the server serves."""

from __future__ import annotations

import httpx

from fhir_server.resources import SERVED_TYPES
from tests.conftest import parse


async def test_metadata_is_an_r4_capability_statement(client: httpx.AsyncClient) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"


async def test_metadata_lists_every_supported_type_and_no_other(client: httpx.AsyncClient) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    assert [r["type"] for r in cs["rest"][0]["resource"]] == list(SERVED_TYPES)


async def test_metadata_lists_search_parameters_from_the_registry(client: httpx.AsyncClient, services) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    observation = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Observation")
    names = {p["name"] for p in observation["searchParam"]}
    assert names == set(services.search_parameters.for_type("Observation"))
    assert {"code", "subject", "date", "value-quantity", "code-value-quantity"} <= names


async def test_metadata_lists_system_interactions(client: httpx.AsyncClient) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    codes = {i["code"] for i in cs["rest"][0]["interaction"]}
    assert codes == {"transaction", "batch", "search-system", "history-system"}


async def test_metadata_operations_match_the_operation_registry(client: httpx.AsyncClient, services) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    listed = {o["name"] for o in cs["rest"][0]["operation"]}
    for r in cs["rest"][0]["resource"]:
        listed |= {o["name"] for o in r["operation"]}
    assert listed == {spec.name for spec in services.operations.all()}


async def test_metadata_lists_the_registry_operations(client: httpx.AsyncClient) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    system = {o["name"] for o in cs["rest"][0]["operation"]}
    by_type = {r["type"]: {o["name"] for o in r["operation"]} for r in cs["rest"][0]["resource"]}
    assert {"registry-report", "export", "reindex"} <= system
    assert {"everything", "risk-scores", "export", "validate"} <= by_type["Patient"]
    assert {"export", "cohort"} <= by_type["Group"]
    assert {"lookup", "subsumes", "validate-code"} <= by_type["CodeSystem"]
    assert {"expand", "validate-code"} <= by_type["ValueSet"]
    assert "translate" in by_type["ConceptMap"]
