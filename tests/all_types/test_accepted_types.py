"""A deployment says which types it accepts (FHIR_ACCEPTED_TYPES); with the registry's rules on, the registry's
profiles still apply to the registry's resources and the other R4 types are stored and searchable."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from fhir_server.api.app import create_app
from fhir_server.services import Services
from tests.conftest import FHIR_JSON, parse, post

ACCEPTED = "Patient,Organization,Condition,MedicationStatement,Observation,Procedure,Group"


@pytest.fixture(scope="module")
async def narrow_client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    settings = services.settings.model_copy(update={"accepted_types": ACCEPTED})
    narrow = dataclasses.replace(services, settings=settings)
    transport = httpx.ASGITransport(app=create_app(settings, narrow))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Accept": FHIR_JSON}) as c:
        yield c


async def test_a_type_the_deployment_does_not_accept_is_refused_as_not_supported(
        narrow_client: httpx.AsyncClient) -> None:
    r = await post(narrow_client, "Encounter", {"resourceType": "Encounter", "status": "planned",
                                                "class": {"code": "AMB"}})
    assert r.status_code == 404, r.text
    issue = parse(r)["issue"][0]
    assert issue["code"] == "not-supported" and "FHIR_ACCEPTED_TYPES" in issue["diagnostics"]


async def test_a_transaction_with_a_type_the_deployment_does_not_accept_stores_nothing(
        narrow_client: httpx.AsyncClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Organization", "name": "accepted-not-stored"},
         "request": {"method": "POST", "url": "Organization"}},
        {"resource": {"resourceType": "Practitioner"}, "request": {"method": "POST", "url": "Practitioner"}}]}
    r = await post(narrow_client, "", bundle)
    assert r.status_code == 404, r.text
    found = parse(await narrow_client.get("/fhir/Organization", params={"name": "accepted-not-stored"}))
    assert found.get("entry", []) == []


async def test_the_capability_statement_lists_only_the_accepted_types(narrow_client: httpx.AsyncClient) -> None:
    statement = parse(await narrow_client.get("/fhir/metadata"))
    # and the audit trail, which the server records whatever a deployment accepts from clients
    assert {r["type"] for r in statement["rest"][0]["resource"]} == {*ACCEPTED.split(","), "AuditEvent"}


async def test_with_registry_rules_other_types_are_stored_and_registry_profiles_still_apply(
        registry_client: httpx.AsyncClient) -> None:
    encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                 "identifier": [{"system": "urn:example:enc", "value": "registry-rules-enc"}]}
    created = await post(registry_client, "Encounter", encounter)
    assert created.status_code == 201, created.text
    found = parse(await registry_client.get("/fhir/Encounter", params={"identifier": "registry-rules-enc"}))
    assert len(found["entry"]) == 1
    # The registry's Patient profile (profiles/rules.json, rule "patient") still applies: a bare Patient fails it.
    refused = await post(registry_client, "Patient", {"resourceType": "Patient"})
    assert refused.status_code == 422, refused.text
