"""Writes ``transaction.json`` beside this file: one CML patient's EHR export as a FHIR R4 transaction, the
shape a hospital's export (Synthea-like, or `$everything` from an EHR) takes: 16 resource types, every
reference between them an ``urn:uuid`` the server resolves (https://hl7.org/fhir/R4/bundle.html#references).
Synthetic data, no real person. Run: ``python tests/data/ehr-export/build.py``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

NS = uuid.UUID("5b0b8a1e-9d4c-4d7e-8f7a-2f7e7f6a1c13")
LOINC, SNOMED, ATC = "http://loinc.org", "http://snomed.info/sct", "http://www.whocc.no/atc"


def urn(name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(NS, name)}"


def ref(name: str) -> dict[str, str]:
    return {"reference": urn(name)}


def concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def resources() -> dict[str, dict[str, Any]]:
    pt, enc = ref("patient"), ref("encounter")
    bcr_abl = concept(LOINC, "69380-7", "BCR-ABL1 transcripts/ABL1 transcripts in Blood by RT-qPCR")
    return {
        "organization": {"resourceType": "Organization", "name": "Example University Hospital",
                         "identifier": [{"system": "urn:example:hospital", "value": "EUH"}]},
        "practitioner": {"resourceType": "Practitioner", "name": [{"family": "Haematologist", "given": ["Ada"]}]},
        "practitioner-role": {"resourceType": "PractitionerRole", "practitioner": ref("practitioner"),
                              "organization": ref("organization")},
        "patient": {"resourceType": "Patient", "gender": "female", "birthDate": "1961-03-04",
                    "identifier": [{"system": "urn:example:mrn", "value": "EHR-0001"}],
                    "managingOrganization": ref("organization"), "generalPractitioner": [ref("practitioner")]},
        "related-person": {"resourceType": "RelatedPerson", "patient": pt, "name": [{"family": "Relative"}]},
        "encounter": {"resourceType": "Encounter", "status": "finished", "subject": pt,
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                      "participant": [{"individual": ref("practitioner")}],
                      "serviceProvider": ref("organization"),
                      "period": {"start": "2024-01-10T09:00:00Z", "end": "2024-01-10T10:00:00Z"}},
        "condition": {"resourceType": "Condition", "subject": pt, "encounter": enc, "asserter": ref("practitioner"),
                      "code": concept(SNOMED, "92818009", "Chronic myeloid leukemia")},
        "service-request": {"resourceType": "ServiceRequest", "status": "completed", "intent": "order",
                            "subject": pt, "encounter": enc, "requester": ref("practitioner"), "code": bcr_abl},
        "specimen": {"resourceType": "Specimen", "subject": pt, "request": [ref("service-request")]},
        "observation": {"resourceType": "Observation", "status": "final", "subject": pt, "encounter": enc,
                        "code": bcr_abl, "specimen": ref("specimen"), "basedOn": [ref("service-request")],
                        "effectiveDateTime": "2024-01-10",
                        "valueQuantity": {"value": 0.08, "unit": "%", "system": "http://unitsofmeasure.org",
                                          "code": "%"}},
        "diagnostic-report": {"resourceType": "DiagnosticReport", "status": "final", "subject": pt,
                              "encounter": enc, "code": bcr_abl, "result": [ref("observation")],
                              "specimen": [ref("specimen")], "performer": [ref("organization")]},
        "medication-request": {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                               "subject": pt, "encounter": enc, "requester": ref("practitioner"),
                               "medicationCodeableConcept": concept(ATC, "L01EA01", "imatinib")},
        "medication-administration": {"resourceType": "MedicationAdministration", "status": "completed",
                                      "subject": pt, "context": enc, "request": ref("medication-request"),
                                      "medicationCodeableConcept": concept(ATC, "L01EA01", "imatinib"),
                                      "effectiveDateTime": "2024-01-10T09:30:00Z"},
        "procedure": {"resourceType": "Procedure", "status": "completed", "subject": pt, "encounter": enc,
                      "code": concept(SNOMED, "396487001", "Sampling of bone marrow")},
        "allergy": {"resourceType": "AllergyIntolerance", "patient": pt, "recorder": ref("practitioner"),
                    "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                              "active", "Active"),  # ait-1: needed unless entered-in-error
                    "code": {"text": "Penicillin"}},
        "provenance": {"resourceType": "Provenance", "recorded": "2024-01-10T10:00:00Z",
                       "target": [ref("observation"), ref("diagnostic-report")],
                       "agent": [{"who": ref("practitioner"), "onBehalfOf": ref("organization")}]},
    }


def transaction() -> dict[str, Any]:
    entries = [{"fullUrl": urn(name), "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]}}
               for name, resource in resources().items()]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


if __name__ == "__main__":
    target = Path(__file__).with_name("transaction.json")
    target.write_text(json.dumps(transaction(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target}")
