"""Registry submissions shaped exactly like the data contract, from synthetic or legacy data.

Two halves:

* ``PatientRecord`` + ``build_bundle``: one patient's Form A data turned into the transaction Bundle the
  contract describes ("A typical submission", data-contract.md): the center (conditional create on its
  identifier), the patient (conditional create on its pseudonym), the CML diagnosis, the imatinib periods,
  baseline labs, risk scores, response assessments, the registration observation and the decision, each
  with the center's record id (``{base}/sid/record``) and ``ifNoneExist`` on it. ``legacy_import`` uses the
  same builder for spreadsheet rows.
* ``registry_bundle(index, rng)``: a deterministic synthetic patient distributed roughly like the registry
  letter (567 patients, 55 % male, median age at diagnosis 51, 12 countries, Tab. 1 proportions), with its
  ground truth as ``PatientFacts`` so that tests can check reports independently.

A stopped imatinib period whose reason was not recorded has no ``statusReason`` (the patient counts as
``not-recorded`` in Tab. 1); its registration observation then has no value but ``dataAbsentReason``
``unknown`` (profile ifp-registration, invariant ifp-reg-3; mappings/form-a-columns.md), or there is no
registration observation at all (``PatientRecord.registration_observation``): the data contract v0.2 counts
such a patient all the same, registered at the end of its last stopped imatinib period ("Definitions"). The
synthetic registry has both forms, as the registry letter has 77 of 567 patients without a recorded reason.

Record ids are ``<pseudonym>/<n>`` with a fixed ``n`` per kind of record (mappings/form-a-columns.md): 1
diagnosis, 2 imatinib, 3-7 baseline spleen/platelets/blasts/eosinophils/basophils, 8 registration, 9 decision,
10 second-line therapy, 11 transplant; beyond Form A: 12-15 Sokal/Hasford/EUTOS/ELTS scores, 16+ response
assessments, 20+ further imatinib periods (a dose change).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from fhir_server.contract import (
    ATC,
    BASE,
    DATA_ABSENT,
    DAYS_PER_MONTH,
    DECISIONS,
    ICD10,
    LOINC,
    NOT_RECORDED,
    PHASES,
    REASONS,
    SNOMED,
    UCUM,
)
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


# -- the ground truth --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientFacts:
    """What a correct registry report must find for this patient (tests compare against it)."""

    pseudonym: str
    sex: str
    country: str
    center: str
    age_at_diagnosis: int
    prospective: str  # included | never-included | unknown
    reason: str  # leaf of ifp-registration-reason or not-recorded
    group: str | None  # failure | toxicity | None (reason not recorded)
    imatinib_months: float | None  # first start to stop, in months of 365.25/12 days
    dose_at_stop: float | None  # mg/day of the stopped period
    decision: str | None
    registration_date: date  # data contract v0.2: the registration Observation's date, else the imatinib stop
    phase_at_diagnosis: str
    sokal_group: str | None
    registration_observation: bool  # whether the Bundle has a registration Observation

    @property
    def registration_month(self) -> str:
        return self.registration_date.strftime("%Y-%m")


def facts_of(record: PatientRecord, first_stored: date | None = None) -> PatientFacts:
    """The ground truth of a record, computed in plain Python. ``first_stored``: the day the Patient was
    first stored, its registration date when it has neither a registration Observation nor a stopped imatinib
    period (data contract v0.2, "Definitions"); only known once submitted."""
    stopped = record.periods[-1] if record.periods and record.periods[-1].end else None
    months = dose = None
    if stopped is not None and stopped.end is not None:
        months = (stopped.end - record.periods[0].start).days / DAYS_PER_MONTH
        dose = float(stopped.daily_dose)
    registered = record.registration_date if record.registration_observation else (
        stopped.end if stopped is not None and stopped.end is not None else first_stored)
    if registered is None:
        raise ValueError(f"{record.pseudonym}: registered the day it is first stored, which is not known yet")
    prospective = {True: "included", False: "never-included", None: "unknown"}[record.prospective]
    sokal = record.risk().get("sokal")
    return PatientFacts(
        pseudonym=record.pseudonym, sex=record.sex, country=record.country, center=record.center,
        age_at_diagnosis=record.age_at_diagnosis, prospective=prospective,
        reason=record.stop_reason or NOT_RECORDED,
        group=REASONS[record.stop_reason][1] if record.stop_reason else None,
        imatinib_months=months, dose_at_stop=dose, decision=record.decision,
        registration_date=registered, phase_at_diagnosis=record.phase_at_diagnosis,
        sokal_group=sokal.group if sokal else None, registration_observation=record.registration_observation,
    )


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


# -- synthetic patients distributed like the registry letter -----------------------------------------------

# (center code, name, country, weight): the ASH 2006 snapshot by country, plus 3 more countries (12 in all)
CENTERS: tuple[tuple[str, str, str, int], ...] = (
    ("FR-POI", "CHU de Poitiers", "FR", 90), ("FR-PAR", "Hopital Saint-Louis", "FR", 80),
    ("FR-LYO", "Centre Leon Berard", "FR", 66), ("DE-MAN", "Universitaetsmedizin Mannheim", "DE", 24),
    ("DE-JEN", "Universitaetsklinikum Jena", "DE", 15),
    ("IL-TLV", "Tel Aviv Sourasky Medical Center", "IL", 34),
    ("FI-HEL", "Helsinki University Hospital", "FI", 18), ("DK-AAR", "Aarhus University Hospital", "DK", 13),
    ("ES-SAL", "Hospital Universitario de Salamanca", "ES", 13),
    ("NL-ROT", "Erasmus MC Rotterdam", "NL", 11), ("IT-BOL", "Policlinico S. Orsola Bologna", "IT", 10),
    ("AT-VIE", "Medizinische Universitaet Wien", "AT", 4),
    ("BE-BRU", "Cliniques universitaires Saint-Luc", "BE", 5),
    ("CH-BAS", "Universitaetsspital Basel", "CH", 4), ("PL-WAR", "Institute of Hematology Warsaw", "PL", 4),
)
# Tab. 1 counts (of 567; the 77 without a recorded reason are not-recorded)
REASON_WEIGHTS: dict[str, int] = {
    "no-chr-3m": 12, "no-cyr-6m": 56, "no-mcyr-12m": 90, "hematologic-relapse": 42, "cytogenetic-relapse": 65,
    "progression-ap-bc": 130, "toxicity": 95, NOT_RECORDED: 77}
DECISION_WEIGHTS: dict[str, int] = {
    "dasatinib": 30, "nilotinib": 22, "bosutinib": 3, "imatinib-dose-increase": 15, "allo-sct": 8,
    "hydroxyurea": 6, "interferon": 3, "chemotherapy": 2, "clinical-trial": 5, "palliative": 2, "other": 4}
# days on imatinib by reason for registration (min, max)
DURATION_DAYS: dict[str, tuple[int, int]] = {
    "no-chr-3m": (90, 200), "no-cyr-6m": (180, 300), "no-mcyr-12m": (365, 540),
    "hematologic-relapse": (300, 1800), "cytogenetic-relapse": (400, 1800), "progression-ap-bc": (180, 1800),
    "toxicity": (20, 700), NOT_RECORDED: (90, 1500),
}
PROSPECTIVE: dict[str, bool | None] = {"never-included": False, "included": True, "unknown": None}
REGISTRATION_START = date(2005, 1, 1)
REGISTRATION_DAYS = (date(2007, 12, 31) - REGISTRATION_START).days


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _registration_date(rng: random.Random) -> date:
    """Registrations grow over 2005-2007 (Fig. 1): density rising linearly."""
    return REGISTRATION_START + timedelta(days=int(REGISTRATION_DAYS * rng.random() ** 0.6))


def _age(rng: random.Random) -> int:
    """Median 51, range 18-80 (eligibility: age >= 18)."""
    return min(80, max(18, round(rng.gauss(51, 13))))


def _periods(rng: random.Random, start: date, stop: date, reason: str) -> tuple[DosePeriod, ...]:
    """One period of constant dose, or two when the dose was increased (failure) or reduced (toxicity)."""
    first_dose, first_freq = (Decimal(600), 1) if rng.random() < 0.1 else (Decimal(400), 1)
    days = (stop - start).days
    if days > 200 and rng.random() < 0.35:
        split = start + timedelta(days=rng.randint(90, days - 30))
        if reason == "toxicity":
            second = DosePeriod(split, stop, Decimal(300))
        else:
            second = DosePeriod(split, stop, Decimal(400), 2) if rng.random() < 0.6 else DosePeriod(
                split, stop, Decimal(600))
        return (DosePeriod(start, split, first_dose, first_freq), second)
    return (DosePeriod(start, stop, first_dose, first_freq),)


def _baseline(rng: random.Random) -> dict[str, Decimal]:
    return {
        "spleen": Decimal(max(0, round(rng.gauss(5, 5)))),
        "blasts": Decimal(f"{max(0.0, rng.gauss(2.0, 1.5)):.1f}"),
        "eosinophils": Decimal(f"{max(0.0, rng.gauss(2.5, 1.5)):.1f}"),
        "basophils": Decimal(f"{max(0.0, rng.gauss(3.0, 2.0)):.1f}"),
        "platelets": Decimal(max(80, round(rng.gauss(420, 200)))),
    }


def _responses(rng: random.Random, start: date, reason: str) -> tuple[ResponseAssessment, ...]:
    if reason == "no-chr-3m":
        return (ResponseAssessment("hematologic-response", start + timedelta(days=91), "no-chr"),)
    cyr = {"no-cyr-6m": "no-cyr", "no-mcyr-12m": rng.choice(["minor-cyr", "minimal-cyr"])}.get(
        reason, rng.choice(["ccyr", "pcyr"]))
    when = start + timedelta(days=365 if reason == "no-mcyr-12m" else 182)
    return (ResponseAssessment("cytogenetic-response", when, cyr),)


def synthetic_record(index: int, rng: random.Random) -> PatientRecord:
    """Patient ``index`` of a synthetic registry (deterministic for a given ``rng`` state)."""
    center, center_name, country, _ = rng.choices(CENTERS, weights=[c[3] for c in CENTERS])[0]
    reason = _pick(rng, REASON_WEIGHTS)
    registered = _registration_date(rng)
    low, high = DURATION_DAYS[reason]
    start = registered - timedelta(days=rng.randint(low, min(high, (registered - date(2001, 6, 1)).days)))
    diagnosed = start - timedelta(days=rng.choice([rng.randint(0, 60), rng.randint(60, 900)]))
    age = _age(rng)
    anniversary = date(diagnosed.year - age, diagnosed.month, min(diagnosed.day, 28))
    birth = anniversary - timedelta(days=rng.randint(0, 364))
    progression = reason == "progression-ap-bc"
    decided = registered + timedelta(days=rng.randint(0, 30))
    return PatientRecord(
        pseudonym=f"{center}-{index:04d}", center=center, center_name=center_name, country=country,
        sex="male" if rng.random() < 0.55 else "female", birth_date=birth.isoformat(),
        prospective=PROSPECTIVE[_pick(rng, {"never-included": 57, "included": 35, "unknown": 8})],
        diagnosis_date=diagnosed,
        phase_at_diagnosis=_pick(rng, {"chronic": 96, "accelerated": 3, "blast": 1}),
        periods=_periods(rng, start, registered, reason),
        stop_reason=None if reason == NOT_RECORDED else reason,
        registration_date=registered,
        phase_at_registration=rng.choice(["accelerated", "blast"]) if progression else "chronic",
        decision=_pick(rng, DECISION_WEIGHTS), decision_date=decided,
        baseline=_baseline(rng), responses=_responses(rng, start, reason),
        toxicity_type=rng.choice(list(TOXICITY_TYPES)) if reason == "toxicity" else None,
        toxicity_grade=rng.choice([3, 3, 3, 4, 2]) if reason == "toxicity" else None,
        # reason not recorded: every other such patient comes without a registration Observation (chosen by
        # index, not drawn, so that the rest of a seeded cohort stays what it was)
        registration_observation=reason != NOT_RECORDED or index % 2 == 1,
    )


def registry_bundle(index: int, rng: random.Random, *,
                    base: str = BASE) -> tuple[dict[str, Any], PatientFacts]:
    """A deterministic synthetic registry patient: its transaction Bundle and its ground truth."""
    record = synthetic_record(index, rng)
    return build_bundle(record, base=base, new_urn=uuid_factory(rng)), facts_of(record)


def registry_cohort(count: int, seed: int = 2008, *,
                    base: str = BASE) -> Iterator[tuple[dict[str, Any], PatientFacts]]:
    """``count`` synthetic patients from one seeded generator (benchmarks, tests)."""
    rng = random.Random(seed)
    for index in range(1, count + 1):
        yield registry_bundle(index, rng, base=base)
