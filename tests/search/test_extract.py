"""Golden extraction table: resource -> expected ``sp`` entries, derived by hand from search.html#ptypes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bson.decimal128 import Decimal128

from fhir_server.search.extract import extract_index_values
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.search.values import MAX_DATETIME, MIN_DATETIME

B = "https://cml-registry.eu/fhir"
PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def D(text: str) -> Decimal128:
    return Decimal128(text)


@pytest.fixture(scope="module")
def registry() -> SearchParameterRegistry:
    return SearchParameterRegistry.load_default()


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {
        "profile": [f"{B}/StructureDefinition/ifp-patient"],
        "tag": [{"system": "urn:t", "code": "test"}],
        "security": [{"system": "urn:s", "code": "R"}],
    },
    "identifier": [
        {
            "system": f"{B}/sid/patient",
            "value": "FR-POI-0042",
            "type": {"coding": [{"system": "urn:idtype", "code": "PSEUDO"}], "text": "Pseudonym"},
        }
    ],
    "active": True,
    "gender": "female",
    "birthDate": "1956-04",
    "name": [{"family": "Lévêque", "given": ["Anne Marie"]}],
    "telecom": [{"system": "phone", "value": "+33 1 23"}],
    "address": [{"city": "Poitiers", "country": "FR"}],
    "managingOrganization": {"reference": "Organization/c1"},
}

# 1.50 % in UCUM's canonical form: % is 10*-2, the unity divided by 100
PERCENT_150_CANONICAL = {"k": {"u": "1", "v": D("0.0150")}}

OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "69380-4", "display": "BCR-ABL1/ABL1 IS"}],
        "text": "BCR-ABL ratio",
    },
    "subject": {"reference": "Patient/p1"},
    "effectivePeriod": {"start": "2007-03-04T10:00:00+01:00"},
    "valueQuantity": {
        "value": Decimal("1.50"),
        "unit": "%",
        "system": "http://unitsofmeasure.org",
        "code": "%",
    },
    "component": [
        {
            "code": {"coding": [{"system": f"{B}/CodeSystem/ifp-concepts", "code": "toxicity-grade"}]},
            "valueQuantity": {"value": 3},
        },
    ],
}

GOLDEN: list[tuple[str, dict[str, Any], str, list[Any]]] = [
    (
        "identifier is a token with system, value and type codings",
        PATIENT,
        "identifier",
        [
            {
                "s": f"{B}/sid/patient",
                "c": "FR-POI-0042",
                "ty": [{"s": "urn:idtype", "c": "PSEUDO"}],
                "t": "pseudonym",
            }
        ],
    ),
    ("boolean is a token true/false", PATIENT, "active", [{"c": "true"}]),
    ("code is a token without system", PATIENT, "gender", [{"c": "female"}]),
    (
        "partial date is the range of its month",
        PATIENT,
        "birthdate",
        [{"lo": utc(1956, 4, 1), "hi": utc(1956, 5, 1)}],
    ),
    (
        "HumanName expands to its parts, normalized",
        PATIENT,
        "name",
        [{"n": "leveque", "x": "Lévêque"}, {"n": "anne marie", "x": "Anne Marie"}],
    ),
    ("family is a string", PATIENT, "family", [{"n": "leveque", "x": "Lévêque"}]),
    (
        "Address expands to its parts",
        PATIENT,
        "address",
        [{"n": "poitiers", "x": "Poitiers"}, {"n": "fr", "x": "FR"}],
    ),
    ("ContactPoint is a token of its value", PATIENT, "phone", [{"s": "phone", "c": "+33 1 23"}]),
    (
        "reference gives Type/id, type and id",
        PATIENT,
        "organization",
        [{"r": "Organization/c1", "t": "Organization", "i": "c1"}],
    ),
    ("meta.profile is a uri", PATIENT, "_profile", [f"{B}/StructureDefinition/ifp-patient"]),
    ("meta.tag is a token", PATIENT, "_tag", [{"s": "urn:t", "c": "test"}]),
    ("meta.security is a token", PATIENT, "_security", [{"s": "urn:s", "c": "R"}]),
    (
        "CodeableConcept gives each coding and its text",
        OBSERVATION,
        "code",
        [{"s": "http://loinc.org", "c": "69380-4", "t": "bcr-abl1/abl1 is"}, {"t": "bcr-abl ratio"}],
    ),
    (
        "subject.where(resolve() is Patient) keeps Patient references",
        OBSERVATION,
        "patient",
        [{"r": "Patient/p1", "t": "Patient", "i": "p1"}],
    ),
    (
        "Period with open end runs to the maximum date, offsets go to UTC",
        OBSERVATION,
        "date",
        [{"lo": utc(2007, 3, 4, 9), "hi": MAX_DATETIME}],
    ),
    (
        # and, the unit being UCUM, the same in canonical units: 1.50 % is 0.0150 of the unity
        "Quantity keeps the exact value and its precision range",
        OBSERVATION,
        "value-quantity",
        [
            {
                "lo": D("1.495"),
                "hi": D("1.505"),
                "vl": D("1.50"),
                "vh": D("1.50"),
                "s": "http://unitsofmeasure.org",
                "c": "%",
                "u": "%",
                **PERCENT_150_CANONICAL,
            }
        ],
    ),
    (
        "component quantity of an integer",
        OBSERVATION,
        "component-value-quantity",
        [{"lo": D("2.5"), "hi": D("3.5"), "vl": D("3"), "vh": D("3")}],
    ),
    (
        "composite pairs the code and the value of the same element",
        OBSERVATION,
        "code-value-quantity",
        [
            {
                "k0": {"s": "http://loinc.org", "c": "69380-4", "t": "bcr-abl1/abl1 is"},
                "k1": {
                    "lo": D("1.495"),
                    "hi": D("1.505"),
                    "vl": D("1.50"),
                    "vh": D("1.50"),
                    "s": "http://unitsofmeasure.org",
                    "c": "%",
                    "u": "%",
                    **PERCENT_150_CANONICAL,
                },
            },
            {
                "k0": {"t": "bcr-abl ratio"},
                "k1": {
                    "lo": D("1.495"),
                    "hi": D("1.505"),
                    "vl": D("1.50"),
                    "vh": D("1.50"),
                    "s": "http://unitsofmeasure.org",
                    "c": "%",
                    "u": "%",
                    **PERCENT_150_CANONICAL,
                },
            },
        ],
    ),
    (
        "component composite pairs each component's own code and value",
        OBSERVATION,
        "component-code-value-quantity",
        [
            {
                "k0": {"s": f"{B}/CodeSystem/ifp-concepts", "c": "toxicity-grade"},
                "k1": {"lo": D("2.5"), "hi": D("3.5"), "vl": D("3"), "vh": D("3")},
            }
        ],
    ),
]


@pytest.mark.parametrize(("case", "resource", "code", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_extraction_golden(
    registry: SearchParameterRegistry, case: str, resource: dict[str, Any], code: str, expected: list[Any]
) -> None:
    assert extract_index_values(registry, resource)[code] == expected


def test_id_and_last_updated_are_not_extracted(registry: SearchParameterRegistry) -> None:
    sp = extract_index_values(registry, {**PATIENT, "meta": {"lastUpdated": "2020-01-01T00:00:00Z"}})
    assert "_id" not in sp
    assert "_lastUpdated" not in sp


def test_only_parameters_with_values_get_keys(registry: SearchParameterRegistry) -> None:
    assert extract_index_values(registry, {"resourceType": "Organization", "id": "x"}) == {}


def test_deceased_is_false_when_absent_as_its_r4_expression_says(registry: SearchParameterRegistry) -> None:
    assert extract_index_values(registry, {"resourceType": "Patient"})["deceased"] == [{"c": "false"}]


def test_reference_to_group_is_not_a_patient_reference(registry: SearchParameterRegistry) -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Group/g1"},
    }
    sp = extract_index_values(registry, obs)
    assert sp["subject"] == [{"r": "Group/g1", "t": "Group", "i": "g1"}]
    assert "patient" not in sp


def test_absolute_and_canonical_references(registry: SearchParameterRegistry) -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "http://other.org/fhir/Patient/9"},
    }
    assert extract_index_values(registry, obs)["subject"] == [{"u": "http://other.org/fhir/Patient/9", "t": "Patient"}]
    sd = {
        "resourceType": "StructureDefinition",
        "url": f"{B}/StructureDefinition/ifp-patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient|4.0.1",
    }
    sp = extract_index_values(registry, sd)
    assert sp["url"] == [f"{B}/StructureDefinition/ifp-patient"]
    sd_type = "StructureDefinition"
    assert sp["base"] == [
        {"u": "http://hl7.org/fhir/StructureDefinition/Patient|4.0.1", "t": sd_type},
        {"u": "http://hl7.org/fhir/StructureDefinition/Patient", "t": sd_type},
    ]


def test_reference_identifier_is_indexed_for_the_identifier_modifier(
    registry: SearchParameterRegistry,
) -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"identifier": {"system": f"{B}/sid/patient", "value": "FR-1"}},
    }
    assert extract_index_values(registry, obs)["subject"] == [{"is": f"{B}/sid/patient", "ic": "FR-1"}]


def test_open_start_period_starts_at_the_minimum_date(registry: SearchParameterRegistry) -> None:
    ms = {
        "resourceType": "MedicationStatement",
        "status": "stopped",
        "subject": {"reference": "Patient/p"},
        "medicationCodeableConcept": {"text": "x"},
        "effectivePeriod": {"end": "2007-12"},
    }
    assert extract_index_values(registry, ms)["effective"] == [{"lo": MIN_DATETIME, "hi": utc(2008, 1, 1)}]


def test_sort_keys_are_scalars_per_parameter(registry: SearchParameterRegistry) -> None:
    sp = extract_index_values(registry, OBSERVATION)
    assert sp["_sort"]["date"] == {"a": utc(2007, 3, 4, 9), "d": MAX_DATETIME}
    assert sp["_sort"]["code"] == {"a": "69380-4", "d": "69380-4"}
    assert sp["_sort"]["value-quantity"] == {"a": D("1.50"), "d": D("1.50")}


def test_registry_specific_search_parameter_is_extracted() -> None:
    registry = SearchParameterRegistry.load_default()
    registry.add_or_replace(
        {
            "resourceType": "SearchParameter",
            "url": f"{B}/SearchParameter/prospective",
            "code": "prospective-study",
            "base": ["Patient"],
            "type": "token",
            "expression": f"Patient.extension('{B}/StructureDefinition/prospective-study').value",
        }
    )
    patient = {
        "resourceType": "Patient",
        "extension": [{"url": f"{B}/StructureDefinition/prospective-study", "valueBoolean": False}],
    }
    assert extract_index_values(registry, patient)["prospective-study"] == [{"c": "false"}]


def test_registry_dose_is_indexed_from_the_choice_of_the_dosage_datatype() -> None:
    """``MedicationStatement.dosage.doseAndRate.dose``: ``dose[x]`` is a choice of the Dosage datatype
    (``Dosage.doseAndRate.dose``), which navigation finds through the element's type."""
    registry = SearchParameterRegistry.load_default()
    registry.add_or_replace(json.loads((PROFILES / "SearchParameter-MedicationStatement-dose.json").read_text()))
    statement = {"resourceType": "MedicationStatement", "status": "active",
                 "dosage": [{"doseAndRate": [{"doseQuantity": {"value": 400, "unit": "mg",
                                                               "system": "http://unitsofmeasure.org", "code": "mg"}}]}]}
    (entry,) = extract_index_values(registry, statement)["dose"]
    assert (entry["vl"], entry["c"]) == (D("400"), "mg")


def test_value_string_reads_codeable_concept_text_without_fhirpathpy(registry: SearchParameterRegistry) -> None:
    """``(Observation.value as CodeableConcept).text`` runs on the native engine and finds the text."""
    param = registry.get("Observation", "value-string")
    assert param is not None
    assert all(b.expression.native for b in registry.branches(param, "Observation"))
    sp = extract_index_values(registry, {"resourceType": "Observation",
                                         "valueCodeableConcept": {"text": "Échec", "coding": [{"code": "x"}]}})
    assert sp["value-string"] == [{"n": "echec", "x": "Échec"}]


def test_the_extraction_plan_gives_what_each_parameter_alone_gives(registry: SearchParameterRegistry) -> None:
    """The cached per-type plan (keys index, composite memo, caches) changes nothing: compare with evaluating
    every parameter of the type on its own, over synthetic registry patients."""
    from fhir_server.search.extract import SORT_KEY, parameter_entries, sort_key
    from tests.synthetic import registry_cohort

    resources = [e["resource"] for bundle, _ in registry_cohort(15, seed=7) for e in bundle["entry"]]
    resources.append(PATIENT)
    for resource in resources:
        kind = resource["resourceType"]
        expected: dict[str, Any] = {}
        for code, param in registry.for_type(kind).items():
            values = parameter_entries(registry, param, kind, resource) if param.indexed else []
            if values:
                expected[code] = values
        sorts = {c: k for c, v in expected.items() if (k := sort_key(registry.for_type(kind)[c].type, v))}
        if sorts:
            expected[SORT_KEY] = sorts
        assert extract_index_values(registry, resource) == expected
