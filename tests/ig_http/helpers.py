"""Builders of registry resources for the HTTP tests of the implementation guide (contract-shaped)."""

from __future__ import annotations

import random
import string
from typing import Any

import httpx

from tests.conftest import parse, post, unique

B = "https://cml-registry.eu/fhir"
SD = f"{B}/StructureDefinition"
CONCEPTS = f"{B}/CodeSystem/ifp-concepts"
REASON = f"{B}/CodeSystem/ifp-registration-reason"
PHASE = f"{B}/CodeSystem/ifp-disease-phase"
RESPONSE = f"{B}/CodeSystem/ifp-response"
LOINC, SNOMED, UCUM = "http://loinc.org", "http://snomed.info/sct", "http://unitsofmeasure.org"


def concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def record() -> list[dict[str, Any]]:
    """A center's record identifier (required by most registry profiles)."""
    return [{"system": f"{B}/sid/record", "value": unique("FR-TST-") + "/1"}]


def center(code: str | None = None) -> dict[str, Any]:
    code = code or "FR-" + "".join(random.choices(string.ascii_uppercase, k=10))
    return {"resourceType": "Organization", "identifier": [{"system": f"{B}/sid/center", "value": code}],
            "name": f"Center {code}", "address": [{"country": "FR"}]}


def registry_patient(center_ref: str, *, birth_date: str = "1950-06-15", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": f"{B}/sid/patient", "value": unique("P-")}],
            "gender": "male", "birthDate": birth_date, "managingOrganization": {"reference": center_ref}, **extra}


def registration(patient_ref: str, reason: str = "no-cyr-6m", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "identifier": record(), "status": "final",
            "code": concept(CONCEPTS, "registration-reason"),
            "subject": {"reference": patient_ref}, "effectiveDateTime": "2007-03-01",
            "valueCodeableConcept": concept(REASON, reason),
            "component": [{"code": concept(CONCEPTS, "phase-at-registration"),
                           "valueCodeableConcept": concept(PHASE, "chronic")}], **extra}


def diagnosis(patient_ref: str, onset: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "identifier": record(),
            "verificationStatus": concept("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                          "confirmed"),
            "code": concept(SNOMED, "92818009"), "subject": {"reference": patient_ref}, "onsetDateTime": onset,
            "stage": [{"summary": concept(PHASE, "chronic")}]}


def lab(patient_ref: str, system: str, code: str, value: Any, unit: str, when: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "identifier": record(), "status": "final", "code": concept(system, code),
            "subject": {"reference": patient_ref}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def risk_score(patient_ref: str, name: str, value: Any, group: str, when: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": concept(CONCEPTS, f"{name}-score"),
            "subject": {"reference": patient_ref}, "effectiveDateTime": when, "valueQuantity": {"value": value},
            "interpretation": [concept(RESPONSE, group)]}


async def created(client: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    """POST ``resource``; its reference (``Type/id``), asserting 201."""
    r = await post(client, resource["resourceType"], resource)
    assert r.status_code == 201, r.text
    return f"{resource['resourceType']}/{parse(r)['id']}"


async def registry_subject(client: httpx.AsyncClient, **extra: Any) -> str:
    """A valid center + patient on the registry server; the patient's reference."""
    org = await created(client, center())
    return await created(client, registry_patient(org, **extra))


def issues(response: httpx.Response) -> list[dict[str, Any]]:
    body = parse(response)
    assert body["resourceType"] == "OperationOutcome", body
    return list(body["issue"])
