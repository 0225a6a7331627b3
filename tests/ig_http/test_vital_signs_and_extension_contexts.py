"""Issue 9, item 9: two rules of the base specification enforced on every write, over HTTP, on the plain server
(rule table off) and the registry server alike:

* a vital sign Observation SHALL conform to its vital signs profile (https://hl7.org/fhir/R4/observation.html#vitals);
* an extension SHALL only be used where its definition's context allows
  (https://hl7.org/fhir/R4/defining-extensions.html#context).
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from fhir_server.json_types import Json
from tests.conftest import FHIR_JSON, body, parse, post
from tests.ig_http.helpers import SD, UCUM, issues, registry_subject

LOINC = "http://loinc.org"
CORE = "http://hl7.org/fhir/StructureDefinition/"
BIRTH_PLACE = {"url": f"{CORE}patient-birthPlace", "valueAddress": {"city": "Lyon", "country": "FR"}}
PROSPECTIVE = {"url": f"{SD}/prospective-study", "valueBoolean": True}
SERVERS = ["client", "registry_client"]


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> httpx.AsyncClient:
    client: httpx.AsyncClient = request.getfixturevalue(request.param)
    return client


def vital(code: str, subject: str, **extra: Any) -> Json:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": subject},
            "effectiveDateTime": "2021-06-01T08:30:00Z", **extra}


def heart_rate(subject: str) -> Json:
    return vital("8867-4", subject, valueQuantity={"value": 64, "unit": "beats/minute", "system": UCUM,
                                                   "code": "/min"})


def blood_pressure(subject: str) -> Json:
    def component(code: str, value: int) -> Json:
        return {"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
    return vital("85354-9", subject, component=[component("8480-6", 118), component("8462-4", 76)])


async def patient_on(server: httpx.AsyncClient) -> str:
    return await registry_subject(server)


def errors_at(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return [(i["code"], e) for i in issues(response) if i["severity"] == "error" for e in i["expression"]]


async def test_conforming_heart_rate_is_created(server: httpx.AsyncClient) -> None:
    r = await post(server, "Observation", heart_rate(await patient_on(server)))
    assert r.status_code == 201, r.text


async def test_heart_rate_without_ucum_system_and_code_is_422(server: httpx.AsyncClient) -> None:
    observation = heart_rate(await patient_on(server))
    del observation["valueQuantity"]["system"], observation["valueQuantity"]["code"]
    r = await post(server, "Observation", observation)
    assert errors_at(r) == [("required", "Observation.valueQuantity.system"),
                            ("required", "Observation.valueQuantity.code")]


async def test_heart_rate_with_a_unit_code_but_no_system_breaks_r4_itself_400(server: httpx.AsyncClient) -> None:
    """qty-3 (Quantity: a unit code needs its system) is R4's own rule: the resource is no valid FHIR, before any
    profile is looked at."""
    observation = heart_rate(await patient_on(server))
    del observation["valueQuantity"]["system"]
    r = await post(server, "Observation", observation)
    assert r.status_code == 400, r.text
    assert [(i["code"], i["expression"]) for i in issues(r)] == [("invariant", ["Observation.valueQuantity"])]


async def test_heart_rate_in_another_unit_is_422(server: httpx.AsyncClient) -> None:
    observation = heart_rate(await patient_on(server))
    observation["valueQuantity"].update(code="/h", unit="beats/hour")
    r = await post(server, "Observation", observation)
    assert errors_at(r) == [("value", "Observation.valueQuantity.code")]
    assert "/min" in issues(r)[0]["diagnostics"]


async def test_heart_rate_with_a_day_less_time_is_422(server: httpx.AsyncClient) -> None:
    r = await post(server, "Observation", heart_rate(await patient_on(server)) | {"effectiveDateTime": "2021-06"})
    assert errors_at(r) == [("invariant", "Observation.effectiveDateTime")]
    assert "vs-1" in issues(r)[0]["diagnostics"]


async def test_conforming_blood_pressure_is_created(server: httpx.AsyncClient) -> None:
    r = await post(server, "Observation", blood_pressure(await patient_on(server)))
    assert r.status_code == 201, r.text


async def test_blood_pressure_without_components_is_422(server: httpx.AsyncClient) -> None:
    observation = blood_pressure(await patient_on(server))
    del observation["component"]
    found = errors_at(await post(server, "Observation", observation))
    assert ("required", "Observation.component") in found
    assert ("invariant", "Observation") in found  # vs-2: neither value, nor components, nor members


async def test_blood_pressure_component_in_a_non_ucum_unit_is_422(server: httpx.AsyncClient) -> None:
    observation = blood_pressure(await patient_on(server))
    observation["component"][1]["valueQuantity"]["code"] = "mmHg"
    found = errors_at(await post(server, "Observation", observation))
    assert ("code-invalid", "Observation.component[1].valueQuantity") in found
    assert ("value", "Observation.component[1].valueQuantity.code") in found


async def test_vital_sign_in_a_transaction_is_judged_like_a_single_write(server: httpx.AsyncClient) -> None:
    observation = heart_rate(await patient_on(server))
    observation["valueQuantity"]["code"] = "/h"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation, "request": {"method": "POST", "url": "Observation"}}]}
    r = await server.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})
    assert errors_at(r) == [("value", "Bundle.entry[0].resource.valueQuantity.code")]


async def test_validate_reports_the_vital_signs_profile(server: httpx.AsyncClient) -> None:
    observation = heart_rate(await patient_on(server))
    del observation["valueQuantity"]
    r = await post(server, "Observation/$validate", observation)
    assert r.status_code == 200, r.text
    assert [(i["code"], i["expression"]) for i in issues(r) if i["severity"] == "error"] == [
        ("invariant", ["Observation"])]


async def test_birth_place_on_an_observation_is_422(server: httpx.AsyncClient) -> None:
    observation = heart_rate(await patient_on(server)) | {"extension": [BIRTH_PLACE]}
    r = await post(server, "Observation", observation)
    assert errors_at(r) == [("structure", "Observation.extension[0]")]
    assert "element Patient" in issues(r)[0]["diagnostics"]


async def test_birth_place_on_a_patient_is_created(server: httpx.AsyncClient) -> None:
    subject = await patient_on(server)
    patient = parse(await server.get(f"/fhir/{subject}"))
    patient["extension"] = [*patient.get("extension", []), BIRTH_PLACE]
    r = await server.put(f"/fhir/{subject}", content=body(patient), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text


async def test_birth_place_inside_a_patient_element_is_422(server: httpx.AsyncClient) -> None:
    subject = await patient_on(server)
    patient = parse(await server.get(f"/fhir/{subject}"))
    patient["_birthDate"] = {"extension": [BIRTH_PLACE]}
    r = await server.put(f"/fhir/{subject}", content=body(patient), headers={"Content-Type": FHIR_JSON})
    assert errors_at(r) == [("structure", "Patient.birthDate.extension[0]")]


async def test_prospective_study_outside_a_patient_is_422(server: httpx.AsyncClient) -> None:
    observation = heart_rate(await patient_on(server))
    observation["valueQuantity"]["extension"] = [copy.deepcopy(PROSPECTIVE)]
    r = await post(server, "Observation", observation)
    assert errors_at(r) == [("structure", "Observation.valueQuantity.extension[0]")]


async def test_prospective_study_on_a_patient_is_created(server: httpx.AsyncClient) -> None:
    assert await registry_subject(server, extension=[copy.deepcopy(PROSPECTIVE)])


async def test_unknown_extension_is_allowed_anywhere(server: httpx.AsyncClient) -> None:
    observation = heart_rate(await patient_on(server))
    observation["code"]["extension"] = [{"url": "https://example.org/fhir/StructureDefinition/x", "valueString": "y"}]
    r = await post(server, "Observation", observation)
    assert r.status_code == 201, r.text
