"""One registry patient's Form A data as the transaction Bundle the data contract describes.

``PatientRecord`` + ``build_bundle`` ("A typical submission", data-contract.md): the center (conditional create
on its identifier), the patient (conditional create on its pseudonym), the CML diagnosis, the imatinib periods,
baseline labs, risk scores, response assessments, the registration observation and the decision, each with the
center's record id (``{base}/sid/record``) and ``ifNoneExist`` on it. ``fhir-server import-csv``
(:mod:`fhir_server.legacy_import`) builds its Bundles from spreadsheet rows with it; the synthetic registry of the
tests and benchmarks (``tests/synthetic.py``) from generated records.

A stopped imatinib period whose reason was not recorded has no ``statusReason`` (the patient counts as
``not-recorded`` in Tab. 1); its registration observation then has no value but ``dataAbsentReason``
``unknown`` (profile ifp-registration, invariant ifp-reg-3; mappings/form-a-columns.md), or there is no
registration observation at all (``PatientRecord.registration_observation``): the data contract v0.2 counts
such a patient all the same, registered at the end of its last stopped imatinib period ("Definitions").

Record ids are ``<pseudonym>/<n>`` with a fixed ``n`` per kind of record (mappings/form-a-columns.md): 1
diagnosis, 2 imatinib, 3-7 baseline spleen/platelets/blasts/eosinophils/basophils, 8 registration, 9 decision,
10 second-line therapy, 11 transplant; beyond Form A: 12-15 Sokal/Hasford/EUTOS/ELTS scores, 16+ response
assessments, 20+ further imatinib periods (a dose change).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from fhir_server.contract import ATC, BASE, DATA_ABSENT, DECISIONS, ICD10, LOINC, PHASES, REASONS, SNOMED, UCUM
from fhir_server.registry import risk_scores

STOP_REASON = {"failure": ("266721009", "No response to treatment"),
               "toxicity": ("407563006", "Treatment not tolerated")}
# baseline lab key -> (system, code, display, UCUM unit, record number)
LABS: dict[str, tuple[str, str, str, str, int]] = {
    "spleen": ("{base}/CodeSystem/ifp-concepts", "spleen-size", "Spleen size below costal margin", "cm", 3),
    "platelets": (LOINC, "777-3", "Platelets [#/volume] in Blood", "10*9/L", 4),
    "blasts": (LOINC, "26446-5", "Blasts/100 leukocytes in Blood", "%", 5),
    "eosinophils": (LOINC, "713-8", "Eosinophils/100 leukocytes in Blood", "%", 6),
    "basophils": (LOINC, "706-2", "Basophils/100 leukocytes in Blood", "%", 7),
}
RISK_RECORDS = {"sokal": 12, "hasford": 13, "eutos": 14, "elts": 15}
# record numbers (mappings/form-a-columns.md)
DIAGNOSIS, IMATINIB, REGISTRATION, DECISION, SECOND_LINE, TRANSPLANT, RESPONSES, MORE_PERIODS = (
    1, 2, 8, 9, 10, 11, 16, 20)
TOXICITY_TYPES: dict[str, str] = {
    "165517008": "Neutropenia", "302215000": "Thrombocytopenia", "271807003": "Skin rash",
    "267038008": "Edema", "422587007": "Nausea",
}


def partial_date(text: str) -> date:
    """The first day of a FHIR (partial) date: ``1960`` -> 1960-01-01, ``1960-04`` -> 1960-04-01."""
    parts = [int(p) for p in text[:10].split("-")]
    return date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)


def canonical(base: str, kind: str, name: str) -> str:
    """``{base}/CodeSystem/ifp-concepts`` etc. (data-contract.md, "Code systems")."""
    return f"{base}/{kind}/{name}"


# -- the input: one patient's Form A data ------------------------------------------------------------------


@dataclass(frozen=True)
class DosePeriod:
    """One period of constant imatinib dose (profile ifp-imatinib): ``dose_mg`` x ``frequency`` per
    ``period_days`` days."""

    start: date
    end: date | None
    dose_mg: Decimal
    frequency: int = 1
    period_days: int = 1

    @property
    def daily_dose(self) -> Decimal:
        """Daily dose = doseQuantity x frequency / period (data-contract.md, ifp-imatinib)."""
        return self.dose_mg * self.frequency / self.period_days


@dataclass(frozen=True)
class ResponseAssessment:
    """An ifp-response Observation: ``kind`` is hematologic-response or cytogenetic-response."""

    kind: str
    when: date
    value: str  # a code of ifp-response


@dataclass(frozen=True)
class PatientRecord:
    """What the contract's Bundle is built from (one registry patient, Form A)."""

    pseudonym: str
    center: str
    center_name: str
    country: str
    sex: str  # administrative gender
    birth_date: str  # FHIR date, possibly partial (YYYY, YYYY-MM)
    prospective: bool | None
    diagnosis_date: date
    phase_at_diagnosis: str
    periods: tuple[DosePeriod, ...]
    stop_reason: str | None  # a leaf of ifp-registration-reason, None = not recorded
    registration_date: date  # the registration Observation's effectiveDateTime
    phase_at_registration: str
    decision: str | None
    decision_date: date | None
    baseline: dict[str, Decimal] = field(default_factory=dict)
    responses: tuple[ResponseAssessment, ...] = ()
    toxicity_type: str | None = None  # SNOMED code of TOXICITY_TYPES, or free text
    toxicity_grade: int | None = None
    second_line_atc: str | None = None
    second_line_start: date | None = None
    transplant_date: date | None = None
    # False: the center submitted no registration Observation (only when the reason was not recorded)
    registration_observation: bool = True

    @property
    def age_at_diagnosis(self) -> int:
        """Completed years; a partial birth date counts from its first day (as the report does)."""
        return risk_scores.age_in_years(partial_date(self.birth_date), self.diagnosis_date)

    def risk(self) -> dict[str, risk_scores.RiskScore]:
        """Scores whose inputs are all present at diagnosis."""
        inputs: dict[str, Any] = {"age": self.age_at_diagnosis, **self.baseline}
        return risk_scores.all_scores(inputs)


# -- building the Bundle (data-contract.md, "Profiles" and "A typical submission") --------------------------


UuidFactory = Callable[[], str]


def uuid_factory(rng: random.Random) -> UuidFactory:
    """Deterministic ``urn:uuid:`` fullUrls drawn from ``rng``."""
    def make() -> str:
        return f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
    return make


class _BundleWriter:
    """Accumulates the entries of one patient's transaction Bundle."""

    def __init__(self, record: PatientRecord, base: str, new_urn: UuidFactory) -> None:
        self.record = record
        self.base = base
        self.new_urn = new_urn
        self.entries: list[dict[str, Any]] = []
        self.patient_urn = ""

    def concept(self, name: str, code: str, display: str | None = None) -> dict[str, Any]:
        coding: dict[str, Any] = {"system": canonical(self.base, "CodeSystem", name), "code": code}
        if display:
            coding["display"] = display
        return {"coding": [coding]}

    def add(self, resource: dict[str, Any], profile: str, if_none_exist: str) -> str:
        urn = self.new_urn()
        meta = {"profile": [canonical(self.base, "StructureDefinition", profile)]}
        resource = {"resourceType": resource.pop("resourceType"), "meta": meta, **resource}
        self.entries.append({
            "fullUrl": urn, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"], "ifNoneExist": if_none_exist},
        })
        return urn

    def add_record(self, resource: dict[str, Any], profile: str, suffix: int) -> str:
        """A resource identified by the center's record id ``{pseudonym}/{suffix}``, about the patient."""
        value = f"{self.record.pseudonym}/{suffix}"
        system = f"{self.base}/sid/record"
        resource["identifier"] = [{"system": system, "value": value}]
        resource["subject"] = {"reference": self.patient_urn}
        return self.add(resource, profile, f"identifier={system}|{value}")

    def bundle(self) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}


def build_bundle(record: PatientRecord, *, base: str = BASE,
                 new_urn: UuidFactory | None = None) -> dict[str, Any]:
    """The transaction Bundle of one patient (data-contract.md, "A typical submission")."""
    writer = _BundleWriter(record, base, new_urn or (lambda: f"urn:uuid:{uuid.uuid4()}"))
    center_urn = _add_center(writer)
    writer.patient_urn = _add_patient(writer, center_urn)
    _add_diagnosis(writer)
    _add_imatinib(writer)
    _add_baseline(writer)
    _add_risk_scores(writer)
    _add_responses(writer)
    _add_registration(writer)
    _add_decision(writer)
    _add_second_line(writer)
    _add_transplant(writer)
    return writer.bundle()


def _add_center(w: _BundleWriter) -> str:
    r = w.record
    system = f"{w.base}/sid/center"
    org = {"resourceType": "Organization", "identifier": [{"system": system, "value": r.center}],
           "name": r.center_name, "address": [{"country": r.country}]}
    return w.add(org, "ifp-center", f"identifier={system}|{r.center}")


def _add_patient(w: _BundleWriter, center_urn: str) -> str:
    r = w.record
    system = f"{w.base}/sid/patient"
    patient: dict[str, Any] = {"resourceType": "Patient"}
    if r.prospective is not None:
        patient["extension"] = [{"url": canonical(w.base, "StructureDefinition", "prospective-study"),
                                 "valueBoolean": r.prospective}]
    patient.update({"identifier": [{"system": system, "value": r.pseudonym}], "gender": r.sex,
                    "birthDate": r.birth_date, "managingOrganization": {"reference": center_urn}})
    return w.add(patient, "ifp-patient", f"identifier={system}|{r.pseudonym}")


def _add_diagnosis(w: _BundleWriter) -> None:
    r = w.record
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": [
            {"system": SNOMED, "code": "92818009", "display": "Chronic myeloid leukemia"},
            {"system": ICD10, "code": "C92.1", "display": "Chronic myeloid leukaemia, BCR/ABL-positive"}]},
        "onsetDateTime": r.diagnosis_date.isoformat(),
        "stage": [{"summary": w.concept("ifp-disease-phase", r.phase_at_diagnosis,
                                        PHASES[r.phase_at_diagnosis])}],
    }
    w.add_record(condition, "ifp-cml-diagnosis", DIAGNOSIS)


def _add_imatinib(w: _BundleWriter) -> None:
    r = w.record
    last = len(r.periods) - 1
    for i, period in enumerate(r.periods):
        number = IMATINIB if i == 0 else MORE_PERIODS + i - 1
        w.add_record(_imatinib_statement(w, period, i == last), "ifp-imatinib", number)


def _imatinib_statement(w: _BundleWriter, period: DosePeriod, is_last: bool) -> dict[str, Any]:
    r = w.record
    status = "completed" if not is_last else ("stopped" if period.end else "active")
    effective: dict[str, str] = {"start": period.start.isoformat()}
    if period.end:
        effective["end"] = period.end.isoformat()
    statement: dict[str, Any] = {"resourceType": "MedicationStatement", "status": status}
    if status == "stopped" and r.stop_reason:
        group = REASONS[r.stop_reason][1]
        snomed_code, snomed_display = STOP_REASON[group]
        statement["statusReason"] = [{"coding": [
            {"system": SNOMED, "code": snomed_code, "display": snomed_display},
            {"system": canonical(w.base, "CodeSystem", "ifp-registration-reason"), "code": r.stop_reason,
             "display": REASONS[r.stop_reason][0]}]}]
    statement.update({
        "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "L01EA01", "display": "imatinib"}]},
        "effectivePeriod": effective,
        "dosage": [{
            "timing": {"repeat": {"frequency": period.frequency, "period": period.period_days,
                                  "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": period.dose_mg, "unit": "mg", "system": UCUM,
                                              "code": "mg"}}],
        }],
    })
    return statement


def _add_baseline(w: _BundleWriter) -> None:
    r = w.record
    for key, value in sorted(r.baseline.items(), key=lambda kv: LABS[kv[0]][4]):
        system, code, display, unit, number = LABS[key]
        obs = {
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory" if key != "spleen" else "exam"}]}],
            "code": {"coding": [{"system": system.format(base=w.base), "code": code, "display": display}]},
            "effectiveDateTime": r.diagnosis_date.isoformat(),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        }
        w.add_record(obs, "ifp-baseline-lab", number)


def _add_risk_scores(w: _BundleWriter) -> None:
    r = w.record
    for name, score in r.risk().items():
        obs = {
            "resourceType": "Observation", "status": "final",
            "code": w.concept("ifp-concepts", f"{name}-score"),
            "effectiveDateTime": r.diagnosis_date.isoformat(),
            "valueQuantity": {"value": Decimal(f"{score.value:.4f}")},
            "interpretation": [w.concept("ifp-response", score.group)],
        }
        w.add_record(obs, "ifp-risk-score", RISK_RECORDS[name])


def _add_responses(w: _BundleWriter) -> None:
    for i, response in enumerate(w.record.responses):
        obs = {
            "resourceType": "Observation", "status": "final",
            "code": w.concept("ifp-concepts", response.kind),
            "effectiveDateTime": response.when.isoformat(),
            "valueCodeableConcept": w.concept("ifp-response", response.value),
        }
        w.add_record(obs, "ifp-response", RESPONSES + i)


def _add_registration(w: _BundleWriter) -> None:
    r = w.record
    if not r.registration_observation:
        return
    value: dict[str, Any]
    if r.stop_reason:
        value = {"valueCodeableConcept": w.concept("ifp-registration-reason", r.stop_reason,
                                                   REASONS[r.stop_reason][0])}
    else:
        value = {"dataAbsentReason": {"coding": [{"system": DATA_ABSENT, "code": "unknown"}]}}
    components = [{"code": w.concept("ifp-concepts", "phase-at-registration"),
                   "valueCodeableConcept": w.concept("ifp-disease-phase", r.phase_at_registration)}]
    if r.stop_reason == "toxicity":
        components += _toxicity_components(w)
    obs = {"resourceType": "Observation", "status": "final",
           "code": w.concept("ifp-concepts", "registration-reason", "Reason for registration"),
           "effectiveDateTime": r.registration_date.isoformat(), **value, "component": components}
    w.add_record(obs, "ifp-registration", REGISTRATION)


def _toxicity_components(w: _BundleWriter) -> list[dict[str, Any]]:
    r = w.record
    kind = r.toxicity_type or "unspecified"
    type_value: dict[str, Any] = {"text": TOXICITY_TYPES.get(kind, kind)}
    if kind in TOXICITY_TYPES:
        type_value["coding"] = [{"system": SNOMED, "code": kind, "display": TOXICITY_TYPES[kind]}]
    return [{"code": w.concept("ifp-concepts", "toxicity-type"), "valueCodeableConcept": type_value},
            {"code": w.concept("ifp-concepts", "toxicity-grade"), "valueInteger": r.toxicity_grade or 3}]


def _add_decision(w: _BundleWriter) -> None:
    r = w.record
    if not r.decision:
        return
    obs = {"resourceType": "Observation", "status": "final",
           "code": w.concept("ifp-concepts", "decision-after-imatinib", "Decision after imatinib"),
           "effectiveDateTime": (r.decision_date or r.registration_date).isoformat(),
           "valueCodeableConcept": w.concept("ifp-decision", r.decision, DECISIONS[r.decision])}
    w.add_record(obs, "ifp-decision", DECISION)


def _add_second_line(w: _BundleWriter) -> None:
    r = w.record
    if not r.second_line_atc:
        return
    statement = {"resourceType": "MedicationStatement", "status": "active",
                 "medicationCodeableConcept": {"coding": [{"system": ATC, "code": r.second_line_atc}]},
                 "effectivePeriod": {"start": (r.second_line_start or r.registration_date).isoformat()}}
    w.add_record(statement, "ifp-subsequent-therapy", SECOND_LINE)


def _add_transplant(w: _BundleWriter) -> None:
    r = w.record
    if not r.transplant_date:
        return
    procedure = {"resourceType": "Procedure", "status": "completed",
                 "code": {"coding": [{"system": SNOMED, "code": "234336002",
                                      "display": "Hemopoietic stem cell transplant"}]},
                 "performedDateTime": r.transplant_date.isoformat()}
    w.add_record(procedure, "ifp-transplant", TRANSPLANT)
