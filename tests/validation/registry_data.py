"""A realistic registry submission for one patient (data contract v0.1), as fresh dicts per call."""

from __future__ import annotations

import copy
from decimal import Decimal

from fhir_server.json_types import Json

B = "https://cml-registry.eu/fhir"
SD = f"{B}/StructureDefinition"
CONCEPTS = f"{B}/CodeSystem/ifp-concepts"
REASON = f"{B}/CodeSystem/ifp-registration-reason"
PHASE = f"{B}/CodeSystem/ifp-disease-phase"
RESPONSE = f"{B}/CodeSystem/ifp-response"
DECISION = f"{B}/CodeSystem/ifp-decision"
SCT, ICD, ATC, LOINC, UCUM = ("http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10",
                              "http://www.whocc.no/atc", "http://loinc.org", "http://unitsofmeasure.org")


def record(n: int) -> list[Json]:
    return [{"system": f"{B}/sid/record", "value": f"FR-POI-0042/{n}"}]


def concept(system: str, code: str) -> Json:
    return {"coding": [{"system": system, "code": code}]}


SUBJECT = {"reference": "Patient/p1"}

_RESOURCES: dict[str, Json] = {
    "center": {
        "resourceType": "Organization", "id": "c1",
        "identifier": [{"system": f"{B}/sid/center", "value": "FR-POI"}],
        "name": "CHU de Poitiers", "address": [{"city": "Poitiers", "country": "FR"}],
    },
    "patient": {
        "resourceType": "Patient", "id": "p1",
        "extension": [{"url": f"{SD}/prospective-study", "valueBoolean": False}],
        "identifier": [{"system": f"{B}/sid/patient", "value": "FR-POI-0042"}],
        "gender": "male", "birthDate": "1951-06",
        "managingOrganization": {"reference": "Organization/c1"},
    },
    "diagnosis": {
        "resourceType": "Condition", "id": "d1", "identifier": record(1),
        "verificationStatus": concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
        "code": {"coding": [{"system": SCT, "code": "92818009"}, {"system": ICD, "code": "C92.1"}]},
        "subject": SUBJECT, "onsetDateTime": "2002-03-14",
        "stage": [{"summary": concept(PHASE, "chronic")}],
    },
    "imatinib": {
        "resourceType": "MedicationStatement", "id": "m1", "identifier": record(2), "status": "stopped",
        "statusReason": [{"coding": [{"system": SCT, "code": "266721009"},
                                     {"system": REASON, "code": "no-mcyr-12m"}]}],
        "medicationCodeableConcept": concept(ATC, "L01EA01"), "subject": SUBJECT,
        "effectivePeriod": {"start": "2002-04-01", "end": "2003-05-20"},
        "dosage": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [{"doseQuantity": {"value": 400, "unit": "mg", "system": UCUM, "code": "mg"}}]}],
    },
    "spleen": {
        "resourceType": "Observation", "id": "o1", "identifier": record(3), "status": "final",
        "code": concept(CONCEPTS, "spleen-size"), "subject": SUBJECT, "effectiveDateTime": "2002-03-14",
        "valueQuantity": {"value": Decimal("4.0"), "unit": "cm", "system": UCUM, "code": "cm"},
    },
    "platelets": {
        "resourceType": "Observation", "id": "o2", "identifier": record(4), "status": "final",
        "code": concept(LOINC, "777-3"), "subject": SUBJECT, "effectiveDateTime": "2002-03-14",
        "valueQuantity": {"value": 450, "unit": "10^9/L", "system": UCUM, "code": "10*9/L"},
    },
    "sokal": {
        "resourceType": "Observation", "id": "o3", "status": "final", "code": concept(CONCEPTS, "sokal-score"),
        "subject": SUBJECT, "valueQuantity": {"value": Decimal("0.93")},
        "interpretation": [concept(RESPONSE, "intermediate")],
    },
    "response": {
        "resourceType": "Observation", "id": "o4", "identifier": record(5), "status": "final",
        "code": concept(CONCEPTS, "cytogenetic-response"), "subject": SUBJECT,
        "effectiveDateTime": "2003-04-02", "valueCodeableConcept": concept(RESPONSE, "minor-cyr"),
    },
    "registration": {
        "resourceType": "Observation", "id": "o5", "identifier": record(6), "status": "final",
        "code": concept(CONCEPTS, "registration-reason"), "subject": SUBJECT,
        "effectiveDateTime": "2003-05-20", "valueCodeableConcept": concept(REASON, "no-mcyr-12m"),
        "component": [{"code": concept(CONCEPTS, "phase-at-registration"),
                       "valueCodeableConcept": concept(PHASE, "chronic")}],
    },
    "decision": {
        "resourceType": "Observation", "id": "o6", "identifier": record(7), "status": "final",
        "code": concept(CONCEPTS, "decision-after-imatinib"), "subject": SUBJECT,
        "effectiveDateTime": "2003-05-27", "valueCodeableConcept": concept(DECISION, "dasatinib"),
    },
    "dasatinib": {
        "resourceType": "MedicationStatement", "id": "m2", "identifier": record(8), "status": "active",
        "medicationCodeableConcept": concept(ATC, "L01EA02"), "subject": SUBJECT,
        "effectivePeriod": {"start": "2003-06-01"},
    },
    "transplant": {
        "resourceType": "Procedure", "id": "t1", "identifier": record(9), "status": "completed",
        "code": concept(SCT, "234336002"), "subject": SUBJECT, "performedDateTime": "2004-01-10",
    },
}

PROFILE_OF = {
    "center": "ifp-center", "patient": "ifp-patient", "diagnosis": "ifp-cml-diagnosis", "imatinib": "ifp-imatinib",
    "spleen": "ifp-baseline-lab", "platelets": "ifp-baseline-lab", "sokal": "ifp-risk-score",
    "response": "ifp-response", "registration": "ifp-registration", "decision": "ifp-decision",
    "dasatinib": "ifp-subsequent-therapy", "transplant": "ifp-transplant",
}


def resource(name: str) -> Json:
    return copy.deepcopy(_RESOURCES[name])


def all_resources() -> dict[str, Json]:
    return {name: resource(name) for name in _RESOURCES}


def profile_url(name: str) -> str:
    return f"{SD}/{PROFILE_OF[name]}"


def store() -> dict[str, Json]:
    """reference -> resource, for resolver callbacks."""
    return {f"{r['resourceType']}/{r['id']}": r for r in all_resources().values()}
