"""Small registry-shaped resources for the bulk and cohort tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

BASE = "https://cml-registry.eu/fhir"
REASON = f"{BASE}/CodeSystem/ifp-registration-reason"
CONCEPTS = f"{BASE}/CodeSystem/ifp-concepts"


def organization(code: str = "FR-POI") -> dict[str, Any]:
    return {"resourceType": "Organization", "name": code,
            "identifier": [{"system": f"{BASE}/sid/center", "value": code}]}


def patient(pseudonym: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "gender": "female", "birthDate": "1960-04-02",
            "identifier": [{"system": f"{BASE}/sid/patient", "value": pseudonym}]}


def registration(patient_id: str, reason: str) -> dict[str, Any]:
    """ifp-registration: why the patient entered the registry (value from ifp-registration-reason)."""
    return {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": CONCEPTS, "code": "registration-reason"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2007-03-01",
        "valueCodeableConcept": {"coding": [{"system": REASON, "code": reason}]},
    }


def lab(patient_id: str, code: str = "777-3", value: str = "1.50") -> dict[str, Any]:
    return {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2006-01-15",
        "valueQuantity": {"value": Decimal(value), "unit": "10*9/L", "system": "http://unitsofmeasure.org",
                          "code": "10*9/L"},
    }


def diagnosis(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "92818009"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "onsetDateTime": "2005-06-01",
    }
