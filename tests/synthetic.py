"""A synthetic registry for the tests and benchmarks (not part of the server package).

``registry_bundle(index, rng)``: a deterministic synthetic patient distributed roughly like the registry letter
(567 patients, 55 % male, median age at diagnosis 51, 12 countries, Tab. 1 proportions), built into its
transaction Bundle by the production builder (:mod:`fhir_server.registry.form_a`), with its ground truth as
``PatientFacts`` so that tests can check reports independently. The synthetic registry has both forms of a
patient without a recorded reason (see :mod:`fhir_server.registry.form_a`), as the registry letter has 77 of 567
such patients.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from fhir_server.contract import BASE, DAYS_PER_MONTH, NOT_RECORDED, REASONS
from fhir_server.registry.form_a import (
    TOXICITY_TYPES,
    DosePeriod,
    PatientRecord,
    ResponseAssessment,
    build_bundle,
    uuid_factory,
)

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
