"""What a transaction Bundle's ``ifNoneExist`` matched is the resource its other entries see
(https://hl7.org/fhir/R4/http.html#trules, bundle.html#references): the matched version, read once in the
transaction's snapshot, is what a reference to that entry is validated against and what a later entry updates."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

import httpx

from tests.api.test_search_parameters_across_processes import alias_parameter
from tests.conftest import FHIR_JSON, body, parse, post, unique
from tests.synthetic import registry_bundle

OTHER_SYSTEM = "urn:ifp-test:organization"


def _center_and_patient() -> tuple[dict[str, Any], dict[str, Any]]:
    """The center Organization entry and a new Patient entry (unique identifier) of a registry Bundle, the
    Patient's ``managingOrganization`` naming the Organization entry."""
    bundle, _ = registry_bundle(1, random.Random(5))
    organization, patient = bundle["entry"][0], bundle["entry"][1]
    pseudonym = f"FR-PAR-{unique()}"
    identifier = patient["resource"]["identifier"][0]
    identifier["value"] = pseudonym
    patient["request"]["ifNoneExist"] = f"identifier={quote(identifier['system'])}|{pseudonym}"
    return organization, patient


async def _transaction(client: httpx.AsyncClient, *entries: dict[str, Any]) -> httpx.Response:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}
    return await client.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})


async def test_a_reference_to_a_matched_center_is_valid(registry_client: httpx.AsyncClient) -> None:
    organization, patient = _center_and_patient()
    first = await _transaction(registry_client, organization)
    assert first.status_code == 200, first.text
    stored_id = parse(first)["entry"][0]["response"]["location"].split("/")[-3]
    r = await _transaction(registry_client, organization, patient)
    assert r.status_code == 200, r.text
    matched, created = (entry["response"] for entry in parse(r)["entry"])
    assert matched["status"].startswith("200") and matched["location"].split("/")[-3] == stored_id
    assert created["status"].startswith("201")
    stored = parse(await registry_client.get(f"/fhir/Patient/{created['location'].split('/')[-3]}"))
    assert stored["managingOrganization"]["reference"] == f"Organization/{stored_id}"


async def test_a_reference_to_a_matched_resource_is_validated_against_the_matched_content(
        registry_client: httpx.AsyncClient) -> None:
    # the entry says "a center", but what its ifNoneExist matched is a stored Organization that is no center:
    # the Patient naming that entry names the stored one, which breaks ifp-patient's targetProfile (ifp-center)
    code = unique()
    stored = await post(registry_client, "Organization", {
        "resourceType": "Organization", "identifier": [{"system": OTHER_SYSTEM, "value": code}], "name": "Lab"})
    assert stored.status_code == 201, stored.text
    organization, patient = _center_and_patient()
    organization["request"]["ifNoneExist"] = f"identifier={OTHER_SYSTEM}|{code}"
    r = await _transaction(registry_client, organization, patient)
    assert r.status_code == 422, r.text
    assert "ifp-center" in r.text


async def test_an_update_by_id_of_a_matched_resource_in_the_same_bundle_stores_the_next_version(
        client: httpx.AsyncClient) -> None:
    code = unique()
    organization = {"resourceType": "Organization", "identifier": [{"system": OTHER_SYSTEM, "value": code}],
                    "name": "Before"}
    stored = await post(client, "Organization", organization)
    assert stored.status_code == 201, stored.text
    stored_id = parse(stored)["id"]
    r = await _transaction(
        client,
        {"resource": organization,
         "request": {"method": "POST", "url": "Organization", "ifNoneExist": f"identifier={OTHER_SYSTEM}|{code}"}},
        {"resource": {**organization, "id": stored_id, "name": "After"},
         "request": {"method": "PUT", "url": f"Organization/{stored_id}", "ifMatch": 'W/"1"'}})
    assert r.status_code == 200, r.text
    matched, updated = (entry["response"] for entry in parse(r)["entry"])
    assert matched["status"].startswith("200") and matched["etag"] == 'W/"1"'
    assert updated["status"].startswith("200") and updated["etag"] == 'W/"2"'
    current = parse(await client.get(f"/fhir/Organization/{stored_id}"))
    assert current["name"] == "After" and current["meta"]["versionId"] == "2"


async def test_a_search_parameter_defined_in_another_process_indexes_the_next_transaction_of_conditional_creates(
        client: httpx.AsyncClient, registry_client: httpx.AsyncClient) -> None:
    # the conformance epoch is read with the Bundle's ifNoneExist lookups: the next Bundle still sees the change
    code = unique("nick-")
    assert (await registry_client.get("/fhir/Organization?name=warm-up")).status_code == 200  # caches loaded
    assert (await post(client, "SearchParameter", alias_parameter(code))).status_code == 201
    marker, identifier = unique("Zeta"), unique()
    organization = {"resourceType": "Organization", "identifier": [{"system": OTHER_SYSTEM, "value": identifier}],
                    "alias": [marker]}
    r = await _transaction(registry_client, {
        "resource": organization,
        "request": {"method": "POST", "url": "Organization", "ifNoneExist": f"identifier={OTHER_SYSTEM}|{identifier}"}})
    assert r.status_code == 200, r.text
    created = parse(r)["entry"][0]["response"]["location"].split("/")[-3]
    db_view = parse(await client.get(f"/fhir/Organization?{code}={marker}", headers={"Prefer": "handling=strict"}))
    assert [e["resource"]["id"] for e in db_view["entry"]] == [created]
