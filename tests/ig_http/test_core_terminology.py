"""The code systems and value sets FHIR R4 publishes are known to the terminology service
(https://hl7.org/fhir/R4/terminologies-systems.html, terminologies-valuesets.html): $expand, $lookup and
$validate-code answer for them, a registry value set may include a whole core code system, and a profile's
binding to a core value set judges submissions (``fhir_server/terminology/core.py``)."""

from __future__ import annotations

import httpx

from tests.conftest import parse, post, unique
from tests.ig_http.helpers import B, issues, registration, registry_patient, registry_subject
from tests.ig_http.test_terminology_operations import out

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER = "http://hl7.org/fhir/administrative-gender"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
INTERPRETATION_VS = "http://hl7.org/fhir/ValueSet/observation-interpretation"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


async def test_expand_of_an_r4_value_set_lists_its_codes(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/ValueSet/$expand", params={"url": GENDER_VS})
    assert response.status_code == 200, response.text
    expansion = parse(response)["expansion"]
    assert expansion["total"] == 4
    assert {(c["system"], c["code"], c["display"]) for c in expansion["contains"]} == {
        (GENDER, "male", "Male"), (GENDER, "female", "Female"), (GENDER, "other", "Other"),
        (GENDER, "unknown", "Unknown")}


async def test_lookup_of_a_code_of_an_r4_code_system(client: httpx.AsyncClient) -> None:
    got = out(await client.get("/fhir/CodeSystem/$lookup", params={"system": V2_0203, "code": "MR"}))
    assert got["display"] == ["Medical record number"]
    response = await client.get("/fhir/CodeSystem/$lookup", params={"system": V2_0203, "code": "NOPE"})
    assert response.status_code == 404


async def test_validate_code_against_an_r4_value_set(client: httpx.AsyncClient) -> None:
    got = out(await client.get("/fhir/ValueSet/$validate-code",
                               params={"url": INTERPRETATION_VS, "system": INTERPRETATION, "code": "H"}))
    assert got["result"] == [True] and got["display"] == ["High"]
    got = out(await client.get("/fhir/ValueSet/$validate-code",
                               params={"url": INTERPRETATION_VS, "system": INTERPRETATION, "code": "NOPE"}))
    assert got["result"] == [False]


async def test_a_published_value_set_may_include_a_whole_r4_code_system(client: httpx.AsyncClient) -> None:
    url = f"{B}/ValueSet/{unique('genders-')}"
    value_set = {"resourceType": "ValueSet", "url": url, "version": "0.0.1", "name": "Genders", "status": "draft",
                 "compose": {"include": [{"system": GENDER}],
                             "exclude": [{"system": GENDER, "concept": [{"code": "unknown"}]}]}}
    created = await post(client, "ValueSet", value_set)
    assert created.status_code == 201, created.text
    response = await client.get("/fhir/ValueSet/$expand", params={"url": url})
    assert response.status_code == 200, response.text
    assert {c["code"] for c in parse(response)["expansion"]["contains"]} == {"male", "female", "other"}


async def test_a_code_outside_an_r4_value_set_a_profile_binds_is_refused(registry_client: httpx.AsyncClient) -> None:
    """ifp-patient keeps Patient.identifier.type's extensible binding to R4's identifier-type value set: a
    code of its system (v2-0203) that the value set leaves out cannot be stored; one it holds can (the rule
    table enforced: ``registry_client``)."""
    subject = await registry_subject(registry_client)
    patient = parse(await registry_client.get(f"/fhir/{subject}"))
    center_ref = patient["managingOrganization"]["reference"]
    typed = registry_patient(center_ref)
    typed["identifier"][0]["type"] = {"coding": [{"system": V2_0203, "code": "NOPE"}]}
    refused = await post(registry_client, "Patient", typed)
    assert refused.status_code == 422, refused.text
    assert any("identifier-type" in (i.get("diagnostics") or "") for i in issues(refused)), refused.text
    typed = registry_patient(center_ref)
    typed["identifier"][0]["type"] = {"coding": [{"system": V2_0203, "code": "MR"}]}
    accepted = await post(registry_client, "Patient", typed)
    assert accepted.status_code == 201, accepted.text


async def test_an_r4_interpretation_code_is_checked_on_a_registry_observation(
        registry_client: httpx.AsyncClient) -> None:
    subject = await registry_subject(registry_client)
    wrong = registration(subject, interpretation=[{"coding": [{"system": INTERPRETATION, "code": "NOPE"}]}])
    refused = await post(registry_client, "Observation", wrong)
    assert refused.status_code == 422, refused.text
    assert any("observation-interpretation" in (i.get("diagnostics") or "") for i in issues(refused))
