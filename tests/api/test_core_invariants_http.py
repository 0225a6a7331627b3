"""R4's own invariants on the write path (conformance-rules.html#constraints; http.html: a resource that "failed
basic FHIR validation rules" is a 400): every create, update and transaction entry, profiled or not, and
``$validate``, which shows the warnings a write leaves out."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import parse, post, put, unique

BOTH = {"resourceType": "Observation", "status": "final", "code": {"text": "BCR-ABL1"}, "valueString": "0.1 %",
        "dataAbsentReason": {"text": "not done"}}


def _issue(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    [issue] = parse(response)["issue"]
    return dict(issue)


async def test_a_create_breaking_obs_6_is_400_naming_the_rule_and_the_element(client: httpx.AsyncClient) -> None:
    issue = _issue(await post(client, "Observation", BOTH))
    assert issue["code"] == "invariant"
    assert "obs-6" in issue["diagnostics"]
    assert issue["expression"] == ["Observation"]


async def test_an_update_breaking_per_1_is_400_and_stores_nothing(client: httpx.AsyncClient) -> None:
    ident = unique("inv-")
    backwards = {"resourceType": "Encounter", "id": ident, "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                 "period": {"start": "2024-03-02T10:00:00Z", "end": "2024-03-01T10:00:00Z"}}
    issue = _issue(await put(client, f"Encounter/{ident}", backwards))
    assert "per-1" in issue["diagnostics"] and issue["expression"] == ["Encounter.period"]
    assert (await client.get(f"/fhir/Encounter/{ident}")).status_code == 404


async def test_an_unreferenced_contained_resource_is_400(client: httpx.AsyncClient) -> None:
    patient = {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o1", "name": "X"}]}
    issue = _issue(await post(client, "Patient", patient))
    assert "dom-3" in issue["diagnostics"] and issue["expression"] == ["Patient.contained[0]"]
    referenced = {**patient, "managingOrganization": {"reference": "#o1"}}
    assert (await post(client, "Patient", referenced)).status_code == 201


async def test_a_transaction_entry_breaking_an_invariant_fails_the_transaction(client: httpx.AsyncClient) -> None:
    marker = unique()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": marker}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": BOTH, "request": {"method": "POST", "url": "Observation"}}]}
    response = await client.post("/fhir", json=bundle)
    issue = _issue(response)
    assert issue["expression"] == ["Bundle.entry[1].resource"] and "obs-6" in issue["diagnostics"]
    assert parse(await client.get(f"/fhir/Patient?identifier=urn:x|{marker}"))["total"] == 0


async def test_validate_reports_errors_and_warnings_of_r4_invariants(client: httpx.AsyncClient) -> None:
    errors = parse(await post(client, "Observation/$validate", BOTH))
    assert [(i["severity"], "obs-6" in i["diagnostics"]) for i in errors["issue"]] == [("error", True)]
    problem = {"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "category": [{"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}]}
    warned = parse(await post(client, "Condition/$validate", problem))
    assert any(i["severity"] == "warning" and "con-3" in i["diagnostics"] for i in warned["issue"])
    assert (await post(client, "Condition", problem)).status_code == 201  # a warning does not refuse a write


async def test_a_range_whose_low_is_above_its_high_in_other_units_is_400(client: httpx.AsyncClient) -> None:
    # rng-2 compares two Quantities (low <= high) in common UCUM units: 1 g is above 500 mg
    ucum = "http://unitsofmeasure.org"
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "imatinib dose"},
                   "valueRange": {"low": {"value": 1, "unit": "g", "system": ucum, "code": "g"},
                                  "high": {"value": 500, "unit": "mg", "system": ucum, "code": "mg"}}}
    issue = _issue(await post(client, "Observation", observation))
    assert "rng-2" in issue["diagnostics"] and issue["expression"] == ["Observation.valueRange"]
    observation["valueRange"]["high"] = {"value": 1500, "unit": "mg", "system": ucum, "code": "mg"}
    assert (await post(client, "Observation", observation)).status_code == 201


async def test_a_create_repeating_an_element_id_is_400_at_the_second_element(client: httpx.AsyncClient) -> None:
    """element-definitions.html#Element.id: "Unique id for the element within a resource"."""
    patient = {"resourceType": "Patient", "name": [{"id": "n1", "family": "A"}, {"id": "n1", "family": "B"}]}
    issue = _issue(await post(client, "Patient", patient))
    assert issue["expression"] == ["Patient.name[1]"] and "n1" in issue["diagnostics"]
