"""The R4 vital signs profiles (https://hl7.org/fhir/R4/observation.html#vitals) with the ProfileValidator:
the LOINC code table, the invariants (vs-1, vs-2, vs-3), the UCUM bindings, fixed units, the type slicing of
``value[x]`` and the code slicing of blood pressure components."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from fhir_server import fhirjson
from fhir_server.errors import Issue
from fhir_server.json_types import Json
from fhir_server.validation.conformance import ConformanceSnapshot
from fhir_server.validation.core import vital_signs
from fhir_server.validation.profile import ProfileValidator
from tests.conftest import EXAMPLES

CORE = "http://hl7.org/fhir/StructureDefinition/"
LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
VITAL = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                      "code": "vital-signs"}]}]


@pytest.fixture(scope="module")
def validator() -> ProfileValidator:
    return ProfileValidator(ConformanceSnapshot.from_package_dir("profiles"))


def vital(code: str, **extra: Any) -> Json:
    return {"resourceType": "Observation", "status": "final", "category": copy.deepcopy(VITAL),
            "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": "Patient/p"},
            "effectiveDateTime": "2020-03-01T10:00:00Z", **extra}


def quantity(value: Any, code: str) -> Json:
    return {"value": Decimal(str(value)), "unit": code, "system": UCUM, "code": code}


def heart_rate(**extra: Any) -> Json:
    return vital("8867-4", valueQuantity=quantity(72, "/min"), **extra)


def blood_pressure(systolic: str = "mm[Hg]", diastolic: str = "mm[Hg]") -> Json:
    return vital("85354-9", component=[
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": quantity(120, systolic)},
        {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": quantity(80, diastolic)}])


def errors(validator: ProfileValidator, resource: Json) -> list[Issue]:
    issues = validator.validate_all(resource, vital_signs().profiles_for(resource))
    return [i for i in issues if i.severity == "error"]


def where(issues: list[Issue]) -> list[str]:
    return [e for i in issues for e in i.expression]


def test_the_table_of_observation_html_maps_each_code_to_its_profile() -> None:
    assert {k.split("|")[1]: v.rsplit("/", 1)[1] for k, v in vital_signs().codes.items()} == {
        "85353-1": "vitalspanel", "9279-1": "resprate", "8867-4": "heartrate", "2708-6": "oxygensat",
        "8310-5": "bodytemp", "8302-2": "bodyheight", "9843-4": "headcircum", "29463-7": "bodyweight",
        "39156-5": "bmi", "85354-9": "bp"}


def test_profiles_come_from_any_coding_of_the_code() -> None:
    observation = vital("8867-4")
    observation["code"]["coding"].insert(0, {"system": "http://acme.lab", "code": "HR"})
    assert vital_signs().profiles_for(observation) == [CORE + "heartrate"]
    assert vital_signs().profiles_for(vital("718-7")) == []
    assert vital_signs().profiles_for({"resourceType": "Condition", "code": vital("8867-4")["code"]}) == []


VITAL_EXAMPLES = ["Observation-blood-pressure.json", "Observation-blood-pressure-cancel.json",
                  "Observation-blood-pressure-dar.json", "Observation-bmi.json", "Observation-body-height.json",
                  "Observation-body-length.json", "Observation-body-temperature.json", "Observation-example.json",
                  "Observation-head-circumference.json", "Observation-heart-rate.json",
                  "Observation-respiratory-rate.json", "Observation-satO2.json", "Observation-vitals-panel.json",
                  "Observation-bmi-using-related.json"]


@pytest.mark.parametrize("name", VITAL_EXAMPLES)
def test_official_vital_sign_example_conforms(validator: ProfileValidator, name: str) -> None:
    example = fhirjson.loads((EXAMPLES / name).read_bytes())
    assert vital_signs().profiles_for(example)
    assert validator.validate_all(example, vital_signs().profiles_for(example)) == []


def test_official_example_f202_has_no_effective_time(validator: ProfileValidator) -> None:
    example = fhirjson.loads((EXAMPLES / "Observation-f202.json").read_bytes())
    assert vital_signs().profiles_for(example) == [CORE + "bodytemp"]
    assert where(errors(validator, example)) == ["Observation.effective"]


def test_conforming_heart_rate(validator: ProfileValidator) -> None:
    assert errors(validator, heart_rate()) == []


def test_heart_rate_unit_is_fixed(validator: ProfileValidator) -> None:
    assert where(errors(validator, vital("8867-4", valueQuantity=quantity(72, "beats/min")))) == [
        "Observation.valueQuantity.code"]


def test_heart_rate_unit_must_be_ucum(validator: ProfileValidator) -> None:
    value = {"value": 72, "unit": "/min", "code": "/min"}
    assert where(errors(validator, vital("8867-4", valueQuantity=value))) == ["Observation.valueQuantity.system"]


def test_heart_rate_value_is_a_quantity(validator: ProfileValidator) -> None:
    found = errors(validator, vital("8867-4", valueString="72"))
    assert set(where(found)) == {"Observation.valueString"}
    assert any("closed" in i.diagnostics for i in found)


def test_value_or_data_absent_reason_is_required_vs_2(validator: ProfileValidator) -> None:
    found = errors(validator, vital("8867-4"))
    assert [(i.code, i.expression) for i in found] == [("invariant", ("Observation",))]
    assert "vs-2" in found[0].diagnostics
    absent = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "error"}]}
    assert errors(validator, vital("8867-4", dataAbsentReason=absent)) == []


@pytest.mark.parametrize("when", ["2020", "2020-03"])
def test_effective_date_time_is_precise_to_the_day_vs_1(validator: ProfileValidator, when: str) -> None:
    found = errors(validator, heart_rate(effectiveDateTime=when))
    assert [(i.code, i.expression) for i in found] == [("invariant", ("Observation.effectiveDateTime",))]
    assert "vs-1" in found[0].diagnostics


def test_effective_period_is_not_judged_by_vs_1(validator: ProfileValidator) -> None:
    observation = heart_rate()
    observation["effectivePeriod"] = {"start": observation.pop("effectiveDateTime")}
    assert errors(validator, observation) == []


def test_vital_sign_needs_the_vital_signs_category(validator: ProfileValidator) -> None:
    observation = heart_rate(category=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                               "observation-category", "code": "laboratory"}]}])
    found = errors(validator, observation)
    assert where(found) == ["Observation.category"]
    assert "VSCat" in found[0].diagnostics


def test_vital_sign_subject_must_be_a_patient(validator: ProfileValidator) -> None:
    assert where(errors(validator, heart_rate(subject={"reference": "Group/g"}))) == ["Observation.subject.reference"]


def test_body_weight_unit_must_be_from_its_value_set(validator: ProfileValidator) -> None:
    assert errors(validator, vital("29463-7", valueQuantity=quantity(70, "kg"))) == []
    found = errors(validator, vital("29463-7", valueQuantity=quantity(70, "mg")))
    assert [(i.code, i.expression) for i in found] == [("code-invalid", ("Observation.valueQuantity.code",))]
    assert "ucum-bodyweight" in found[0].diagnostics


def test_conforming_blood_pressure(validator: ProfileValidator) -> None:
    assert errors(validator, blood_pressure()) == []


def test_blood_pressure_without_components(validator: ProfileValidator) -> None:
    observation = blood_pressure()
    del observation["component"]
    found = errors(validator, observation)
    assert set(where(found)) == {"Observation", "Observation.component"}
    assert {"SystolicBP", "DiastolicBP"} <= {w for i in found for w in i.diagnostics.split("'")}


def test_blood_pressure_component_is_told_by_its_code(validator: ProfileValidator) -> None:
    # bp.html slices component by code.coding.code, which only the SBPCode/DBPCode coding slices fix: the
    # second component is the diastolic slice, whose unit is fixed (Cel is a common vital signs unit)
    found = errors(validator, blood_pressure(diastolic="Cel"))
    assert where(found) == ["Observation.component[1].valueQuantity.code"]
    assert "mm[Hg]" in found[0].diagnostics


def test_component_unit_must_be_a_common_vital_signs_unit(validator: ProfileValidator) -> None:
    observation = blood_pressure()
    observation["component"].append({"code": {"coding": [{"system": LOINC, "code": "8478-0"}]},
                                     "valueQuantity": quantity(93, "mmHg")})
    found = errors(validator, observation)
    assert [(i.code, i.expression) for i in found] == [("code-invalid", ("Observation.component[2].valueQuantity",))]
    assert "ucum-vitals-common" in found[0].diagnostics


def test_component_needs_a_value_or_data_absent_reason_vs_3_once(validator: ProfileValidator) -> None:
    observation = blood_pressure()
    del observation["component"][0]["valueQuantity"]
    found = errors(validator, observation)
    assert [(i.code, i.expression) for i in found] == [("invariant", ("Observation.component[0]",))]
    assert "vs-3" in found[0].diagnostics


def test_claimed_vital_signs_profile_is_known(validator: ProfileValidator) -> None:
    assert validator.conformance.structure_definition(CORE + "vitalsigns") is not None
    assert validator.validate(heart_rate(), CORE + "heartrate") == []
