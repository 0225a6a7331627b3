"""The registry's data contract as constants (data-contract.md v0.1): canonical base, external code systems,
the Tab. 1 registration reasons, the decisions after imatinib and the disease phases. Used by the registry
report, the legacy importer and the synthetic data, so that all three speak the same contract."""

from __future__ import annotations

BASE = "https://cml-registry.eu/fhir"
CENTER_SYSTEM = f"{BASE}/sid/center"  # the identifier system of the registry's centers (their Organizations)
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
DAYS_PER_MONTH = 365.25 / 12

# Tab. 1 of the registry letter: leaf code -> (display, parent group)
REASONS: dict[str, tuple[str, str]] = {
    "no-chr-3m": ("No CHR (after 3 months)", "failure"),
    "no-cyr-6m": ("Not any CyR (after 6 months)", "failure"),
    "no-mcyr-12m": ("No MCyR (after 12 months)", "failure"),
    "hematologic-relapse": ("Hematological relapse", "failure"),
    "cytogenetic-relapse": ("Cytogenetic relapse or progression", "failure"),
    "progression-ap-bc": ("Progression to accelerated phase or blast crisis", "failure"),
    "toxicity": ("Toxicity (leading to discontinuation)", "toxicity"),
}
NOT_RECORDED = "not-recorded"
DECISIONS: dict[str, str] = {
    "dasatinib": "Dasatinib", "nilotinib": "Nilotinib", "bosutinib": "Bosutinib",
    "imatinib-dose-increase": "Imatinib dose increase", "allo-sct": "Allogeneic stem cell transplantation",
    "hydroxyurea": "Hydroxyurea", "interferon": "Interferon alfa", "chemotherapy": "Chemotherapy",
    "clinical-trial": "Inclusion in a clinical trial", "palliative": "Palliative care", "other": "Other",
}
PHASES: dict[str, str] = {"chronic": "Chronic phase", "accelerated": "Accelerated phase",
                          "blast": "Blast crisis"}
