"""ProfileValidator with the registry's profiles: one test per rule, each checking the issue's FHIRPath."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fhir_server.errors import Issue
from fhir_server.json_types import Json
from fhir_server.validation.conformance import ConformanceSnapshot
from fhir_server.validation.profile import ProfileValidator, matches_pattern
from tests.validation.registry_data import (
    ATC,
    CONCEPTS,
    PHASE,
    REASON,
    RESPONSE,
    SCT,
    all_resources,
    concept,
    profile_url,
    resource,
    store,
)


@pytest.fixture(scope="module")
def validator() -> ProfileValidator:
    return ProfileValidator(ConformanceSnapshot.from_package_dir("profiles"))


def errors(validator: ProfileValidator, name: str, change: Callable[[Json], Any]) -> list[Issue]:
    r = resource(name)
    change(r)
    return [i for i in validator.validate(r, profile_url(name), store().get) if i.severity == "error"]


def where(issues: list[Issue]) -> list[str]:
    return [e for i in issues for e in i.expression]


@pytest.mark.parametrize("name", sorted(all_resources()))
def test_registry_submission_conforms(validator: ProfileValidator, name: str) -> None:
    assert validator.validate(resource(name), profile_url(name), store().get) == []


def test_unknown_profile_is_reported(validator: ProfileValidator) -> None:
    issues = validator.validate(resource("patient"), "https://example.org/nope")
    assert [i.code for i in issues] == ["not-found"]


def test_profile_of_another_type_is_reported(validator: ProfileValidator) -> None:
    issues = validator.validate(resource("center"), profile_url("patient"))
    assert [i.code for i in issues] == ["invalid"]


# --- ifp-patient -------------------------------------------------------------------------------------------
def test_patient_name_is_prohibited(validator: ProfileValidator) -> None:
    issues = errors(validator, "patient", lambda r: r.update(name=[{"family": "Martin"}]))
    assert where(issues) == ["Patient.name"]


@pytest.mark.parametrize("element", ["telecom", "address", "photo", "contact"])
def test_patient_direct_identifiers_are_prohibited(validator: ProfileValidator, element: str) -> None:
    values = {"telecom": {"system": "phone", "value": "1"}, "address": {"city": "Poitiers"},
              "photo": {"url": "http://x"}, "contact": {"gender": "male"}}
    issues = errors(validator, "patient", lambda r: r.update({element: [values[element]]}))
    assert where(issues) == [f"Patient.{element}"]


def test_patient_birth_date_is_required(validator: ProfileValidator) -> None:
    assert where(errors(validator, "patient", lambda r: r.pop("birthDate"))) == ["Patient.birthDate"]


def test_patient_gender_is_required(validator: ProfileValidator) -> None:
    assert where(errors(validator, "patient", lambda r: r.pop("gender"))) == ["Patient.gender"]


def test_patient_pseudonym_is_required(validator: ProfileValidator) -> None:
    issues = errors(validator, "patient", lambda r: r["identifier"][0].update(system="urn:other"))
    assert where(issues) == ["Patient.identifier"]
    assert "pseudonym" in issues[0].diagnostics


def test_patient_pseudonym_at_most_once(validator: ProfileValidator) -> None:
    issues = errors(validator, "patient", lambda r: r["identifier"].append(dict(r["identifier"][0], value="2")))
    assert where(issues) == ["Patient.identifier"]


def test_patient_managing_organization_must_be_an_organization(validator: ProfileValidator) -> None:
    issues = errors(validator, "patient", lambda r: r.update(managingOrganization={"reference": "Patient/p1"}))
    assert where(issues) == ["Patient.managingOrganization.reference"]


def test_patient_managing_organization_must_be_a_center(validator: ProfileValidator) -> None:
    stored = store()
    stored["Organization/c1"]["identifier"][0]["system"] = "urn:not-a-center"
    issues = validator.validate(resource("patient"), profile_url("patient"), stored.get)
    assert [(i.code, i.expression) for i in issues] == [("invalid", ("Patient.managingOrganization.reference",))]


def test_a_referenced_resource_is_judged_by_its_content_each_time(validator: ProfileValidator) -> None:
    """The validator remembers a referenced resource's conformance by content: the same center changed in
    place is judged again, and judged as before once changed back."""
    stored = store()
    center = stored["Organization/c1"]

    def reference_issues() -> list[tuple[str, tuple[str, ...]]]:
        issues = validator.validate(resource("patient"), profile_url("patient"), stored.get)
        return [(i.code, i.expression) for i in issues]

    assert reference_issues() == reference_issues() == []
    system = center["identifier"][0]["system"]
    center["identifier"][0]["system"] = "urn:not-a-center"
    assert reference_issues() == reference_issues() == [("invalid", ("Patient.managingOrganization.reference",))]
    center["identifier"][0]["system"] = system
    assert reference_issues() == []


def test_unresolvable_reference_is_a_warning(validator: ProfileValidator) -> None:
    r = resource("patient")
    r["managingOrganization"]["reference"] = "Organization/unknown"
    issues = validator.validate(r, profile_url("patient"), store().get)
    assert [(i.severity, i.code) for i in issues] == [("warning", "not-found")]


def test_prospective_study_extension_value_must_be_boolean(validator: ProfileValidator) -> None:
    def change(r: Json) -> None:
        r["extension"][0] = {"url": r["extension"][0]["url"], "valueString": "yes"}

    assert where(errors(validator, "patient", change)) == ["Patient.extension[0].valueString"]


def test_prospective_study_extension_at_most_once(validator: ProfileValidator) -> None:
    issues = errors(validator, "patient", lambda r: r["extension"].append(dict(r["extension"][0])))
    assert where(issues) == ["Patient.extension"]


def test_prospective_study_extension_context_is_patient(validator: ProfileValidator) -> None:
    ext = resource("patient")["extension"][0]
    issues = errors(validator, "diagnosis", lambda r: r.update(extension=[ext]))
    assert where(issues) == ["Condition.extension[0]"]
    assert issues[0].code == "structure"
    assert "context: element Patient" in issues[0].diagnostics


def test_unknown_modifier_extension_is_an_error(validator: ProfileValidator) -> None:
    mod = [{"url": "https://example.org/mod", "valueBoolean": True}]
    issues = errors(validator, "patient", lambda r: r.update(modifierExtension=mod))
    assert where(issues) == ["Patient.modifierExtension[0]"]


# --- ifp-center ---------------------------------------------------------------------------------------------
def test_center_country_must_be_iso_alpha2(validator: ProfileValidator) -> None:
    issues = errors(validator, "center", lambda r: r["address"][0].update(country="France"))
    assert where(issues) == ["Organization.address[0].country"]
    assert "ifp-center-1" in issues[0].diagnostics


def test_center_country_is_required(validator: ProfileValidator) -> None:
    issues = errors(validator, "center", lambda r: r["address"][0].pop("country"))
    assert where(issues) == ["Organization.address[0].country"]


def test_center_name_is_required(validator: ProfileValidator) -> None:
    assert where(errors(validator, "center", lambda r: r.pop("name"))) == ["Organization.name"]


def test_center_code_format(validator: ProfileValidator) -> None:
    issues = errors(validator, "center", lambda r: r["identifier"][0].update(value="poitiers"))
    assert where(issues) == ["Organization.identifier[0].value"]


# --- ifp-cml-diagnosis --------------------------------------------------------------------------------------
def test_diagnosis_code_must_be_cml(validator: ProfileValidator) -> None:
    issues = errors(validator, "diagnosis", lambda r: r.update(code=concept(SCT, "1234")))
    assert where(issues) == ["Condition"]
    assert "ifp-dx-1" in issues[0].diagnostics


def test_diagnosis_icd10_alone_is_enough(validator: ProfileValidator) -> None:
    assert errors(validator, "diagnosis", lambda r: r["code"]["coding"].pop(0)) == []


def test_diagnosis_snomed_slice_at_most_once(validator: ProfileValidator) -> None:
    issues = errors(validator, "diagnosis", lambda r: r["code"]["coding"].append(dict(r["code"]["coding"][0])))
    assert where(issues) == ["Condition.code.coding"]


def test_diagnosis_phase_must_be_from_value_set(validator: ProfileValidator) -> None:
    issues = errors(validator, "diagnosis", lambda r: r.update(stage=[{"summary": concept(PHASE, "bogus")}]))
    assert where(issues) == ["Condition.stage[0].summary"]
    assert issues[0].code == "code-invalid"


def test_diagnosis_phase_is_required(validator: ProfileValidator) -> None:
    assert where(errors(validator, "diagnosis", lambda r: r.pop("stage"))) == ["Condition.stage"]


def test_diagnosis_must_be_confirmed(validator: ProfileValidator) -> None:
    status = concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", "provisional")
    issues = errors(validator, "diagnosis", lambda r: r.update(verificationStatus=status))
    assert where(issues) == ["Condition.verificationStatus"]


def test_diagnosis_date_must_be_a_date_time(validator: ProfileValidator) -> None:
    def change(r: Json) -> None:
        r["onsetString"] = r.pop("onsetDateTime")

    assert where(errors(validator, "diagnosis", change)) == ["Condition.onsetString"]


def test_diagnosis_date_is_required(validator: ProfileValidator) -> None:
    assert where(errors(validator, "diagnosis", lambda r: r.pop("onsetDateTime"))) == ["Condition.onset"]


def test_diagnosis_subject_must_be_a_patient(validator: ProfileValidator) -> None:
    issues = errors(validator, "diagnosis", lambda r: r.update(subject={"reference": "Group/g1"}))
    assert where(issues) == ["Condition.subject.reference"]


def test_record_identifier_is_required(validator: ProfileValidator) -> None:
    issues = errors(validator, "diagnosis", lambda r: r.pop("identifier"))
    assert where(issues) == ["Condition.identifier", "Condition.identifier"]  # element and slice 'record'


# --- ifp-imatinib -------------------------------------------------------------------------------------------
def test_imatinib_status_reason_only_when_stopped(validator: ProfileValidator) -> None:
    issues = errors(validator, "imatinib", lambda r: r.update(status="completed"))
    assert where(issues) == ["MedicationStatement"]
    assert "ifp-imat-1" in issues[0].diagnostics


def test_imatinib_stopped_period_has_an_end(validator: ProfileValidator) -> None:
    issues = errors(validator, "imatinib", lambda r: r["effectivePeriod"].pop("end"))
    assert where(issues) == ["MedicationStatement"]
    assert "ifp-imat-2" in issues[0].diagnostics


def test_imatinib_stop_reason_matches_registration_reason(validator: ProfileValidator) -> None:
    issues = errors(validator, "imatinib", lambda r: r["statusReason"][0]["coding"][1].update(code="toxicity"))
    assert where(issues) == ["MedicationStatement.statusReason[0]"]
    assert "ifp-imat-3" in issues[0].diagnostics


def test_imatinib_stop_reason_must_be_snomed_value(validator: ProfileValidator) -> None:
    issues = errors(validator, "imatinib", lambda r: r["statusReason"][0]["coding"][0].update(code="182992009"))
    assert "MedicationStatement.statusReason[0].coding[0]" in where(issues)


def test_imatinib_status_reason_needs_both_codings(validator: ProfileValidator) -> None:
    issues = errors(validator, "imatinib", lambda r: r["statusReason"][0]["coding"].pop(1))
    assert set(where(issues)) == {"MedicationStatement.statusReason[0].coding"}


def test_imatinib_stopped_without_recorded_reason_is_valid(validator: ProfileValidator) -> None:
    assert errors(validator, "imatinib", lambda r: r.pop("statusReason")) == []


def test_imatinib_dose_must_be_in_mg(validator: ProfileValidator) -> None:
    issues = errors(validator, "imatinib",
                    lambda r: r["dosage"][0]["doseAndRate"][0]["doseQuantity"].update(code="g"))
    assert where(issues) == ["MedicationStatement.dosage[0].doseAndRate[0].doseQuantity.code"]


def test_imatinib_frequency_is_required(validator: ProfileValidator) -> None:
    issues = errors(validator, "imatinib", lambda r: r["dosage"][0]["timing"]["repeat"].pop("frequency"))
    assert where(issues) == ["MedicationStatement.dosage[0].timing.repeat.frequency"]


def test_imatinib_dosage_is_required(validator: ProfileValidator) -> None:
    assert where(errors(validator, "imatinib", lambda r: r.pop("dosage"))) == ["MedicationStatement.dosage"]


def test_imatinib_start_is_required(validator: ProfileValidator) -> None:
    issues = errors(validator, "imatinib", lambda r: r.update(status="active", effectivePeriod={"end": "2003"})
                    or r.pop("statusReason"))
    assert where(issues) == ["MedicationStatement.effectivePeriod.start"]


def test_imatinib_code_must_be_imatinib(validator: ProfileValidator) -> None:
    issues = errors(validator, "imatinib", lambda r: r.update(medicationCodeableConcept=concept(ATC, "L01EA02")))
    assert where(issues) == ["MedicationStatement.medicationCodeableConcept"]
    assert issues[0].code == "code-invalid"


def test_imatinib_pre_2022_atc_code_is_accepted_through_concept_map(validator: ProfileValidator) -> None:
    r = resource("imatinib")
    r["medicationCodeableConcept"] = concept(ATC, "L01XE01")
    issues = validator.validate(r, profile_url("imatinib"), store().get)
    assert [(i.severity, i.expression) for i in issues] == [
        ("information", ("MedicationStatement.medicationCodeableConcept",))]


def test_subsequent_therapy_pre_2022_code_is_accepted(validator: ProfileValidator) -> None:
    issues = errors(validator, "dasatinib", lambda r: r.update(medicationCodeableConcept=concept(ATC, "L01XE06")))
    assert issues == []


def test_subsequent_therapy_must_be_a_second_line_drug(validator: ProfileValidator) -> None:
    issues = errors(validator, "dasatinib", lambda r: r.update(medicationCodeableConcept=concept(ATC, "L01EA01")))
    assert where(issues) == ["MedicationStatement.medicationCodeableConcept"]


# --- ifp-registration ---------------------------------------------------------------------------------------
def test_registration_reason_must_be_a_leaf(validator: ProfileValidator) -> None:
    issues = errors(validator, "registration", lambda r: r.update(valueCodeableConcept=concept(REASON, "failure")))
    assert where(issues) == ["Observation.valueCodeableConcept"]


def test_registration_phase_component_is_required(validator: ProfileValidator) -> None:
    issues = errors(validator, "registration", lambda r: r.pop("component"))
    assert where(issues) == ["Observation.component"]
    assert "phaseAtRegistration" in issues[0].diagnostics


def test_registration_phase_must_be_from_value_set(validator: ProfileValidator) -> None:
    issues = errors(validator, "registration",
                    lambda r: r["component"][0].update(valueCodeableConcept=concept(PHASE, "remission")))
    assert where(issues) == ["Observation.component[0].valueCodeableConcept"]


def test_registration_toxicity_needs_type_and_grade(validator: ProfileValidator) -> None:
    issues = errors(validator, "registration", lambda r: r.update(valueCodeableConcept=concept(REASON, "toxicity")))
    assert where(issues) == ["Observation"]
    assert "ifp-reg-1" in issues[0].diagnostics


def test_registration_toxicity_grade_is_1_to_5(validator: ProfileValidator) -> None:
    grade = {"code": concept(CONCEPTS, "toxicity-grade"), "valueInteger": 7}
    issues = errors(validator, "registration", lambda r: r["component"].append(grade))
    assert where(issues) == ["Observation.component[1].valueInteger"]


def test_registration_toxicity_grade_is_an_integer(validator: ProfileValidator) -> None:
    grade = {"code": concept(CONCEPTS, "toxicity-grade"), "valueString": "3"}
    issues = errors(validator, "registration", lambda r: r["component"].append(grade))
    assert "Observation.component[1].valueString" in where(issues)


def test_registration_complete_toxicity_is_valid(validator: ProfileValidator) -> None:
    def change(r: Json) -> None:
        r["valueCodeableConcept"] = concept(REASON, "toxicity")
        r["component"] += [{"code": concept(CONCEPTS, "toxicity-type"), "valueCodeableConcept": {"text": "rash"}},
                           {"code": concept(CONCEPTS, "toxicity-grade"), "valueInteger": 3}]

    assert errors(validator, "registration", change) == []


def test_registration_effective_date_is_required(validator: ProfileValidator) -> None:
    issues = errors(validator, "registration", lambda r: r.pop("effectiveDateTime"))
    assert where(issues) == ["Observation.effective"]


# --- labs, responses, scores, decisions, transplants ----------------------------------------------------------
def test_baseline_lab_spleen_in_cm(validator: ProfileValidator) -> None:
    issues = errors(validator, "spleen", lambda r: r["valueQuantity"].update(code="mm"))
    assert where(issues) == ["Observation"]
    assert "ifp-lab-1" in issues[0].diagnostics


def test_baseline_lab_quantity_must_be_ucum(validator: ProfileValidator) -> None:
    issues = errors(validator, "platelets", lambda r: r["valueQuantity"].update(system="urn:units"))
    assert where(issues) == ["Observation.valueQuantity.system"]


def test_baseline_lab_code_must_be_a_baseline_value(validator: ProfileValidator) -> None:
    issues = errors(validator, "platelets", lambda r: r.update(code=concept("http://loinc.org", "718-7")))
    assert where(issues) == ["Observation.code"]


def test_response_value_must_be_a_response(validator: ProfileValidator) -> None:
    issues = errors(validator, "response", lambda r: r.update(valueCodeableConcept=concept(RESPONSE, "low")))
    assert where(issues) == ["Observation.valueCodeableConcept"]


def test_response_coded_assessment_needs_a_code(validator: ProfileValidator) -> None:
    def change(r: Json) -> None:
        r.pop("valueCodeableConcept")
        r["valueQuantity"] = {"value": 3, "system": "http://unitsofmeasure.org", "code": "%"}

    issues = errors(validator, "response", change)
    assert where(issues) == ["Observation"]
    assert "ifp-resp-1" in issues[0].diagnostics


def test_risk_score_group_must_be_a_risk_group(validator: ProfileValidator) -> None:
    issues = errors(validator, "sokal", lambda r: r.update(interpretation=[concept(RESPONSE, "chr")]))
    assert where(issues) == ["Observation.interpretation[0]"]


def test_risk_score_eutos_has_no_intermediate_group(validator: ProfileValidator) -> None:
    issues = errors(validator, "sokal", lambda r: r.update(code=concept(CONCEPTS, "eutos-score")))
    assert where(issues) == ["Observation"]
    assert "ifp-risk-1" in issues[0].diagnostics


def test_risk_score_group_is_required(validator: ProfileValidator) -> None:
    assert where(errors(validator, "sokal", lambda r: r.pop("interpretation"))) == ["Observation.interpretation"]


def test_decision_must_be_from_value_set(validator: ProfileValidator) -> None:
    issues = errors(validator, "decision", lambda r: r.update(valueCodeableConcept=concept(REASON, "toxicity")))
    assert where(issues) == ["Observation.valueCodeableConcept"]


def test_decision_code_is_fixed_by_pattern(validator: ProfileValidator) -> None:
    issues = errors(validator, "decision", lambda r: r.update(code=concept(CONCEPTS, "registration-reason")))
    assert where(issues) == ["Observation.code"]


def test_transplant_performed_must_be_a_date_time(validator: ProfileValidator) -> None:
    def change(r: Json) -> None:
        r["performedPeriod"] = {"start": r.pop("performedDateTime")}

    assert where(errors(validator, "transplant", change)) == ["Procedure.performedPeriod"]


def test_transplant_code_must_be_a_transplant(validator: ProfileValidator) -> None:
    issues = errors(validator, "transplant", lambda r: r.update(code=concept(SCT, "80146002")))
    assert where(issues) == ["Procedure.code"]


def test_contained_reference_is_resolved(validator: ProfileValidator) -> None:
    def change(r: Json) -> None:
        r["contained"] = [{"resourceType": "Organization", "id": "x", "name": "not a center"}]
        r["managingOrganization"] = {"reference": "#x"}

    issues = errors(validator, "patient", change)
    assert where(issues) == ["Patient.managingOrganization.reference"]


def test_every_issue_has_an_expression(validator: ProfileValidator) -> None:
    r = resource("patient")
    r.pop("gender")
    r["name"] = [{"family": "X"}]
    assert all(i.expression for i in validator.validate(r, profile_url("patient"), store().get))


def test_pattern_matching_is_a_subset_match() -> None:
    pattern = {"coding": [{"system": "s", "code": "c"}]}
    assert matches_pattern({"coding": [{"system": "x", "code": "y"}, {"system": "s", "code": "c", "display": "C"}],
                            "text": "t"}, pattern)
    assert not matches_pattern({"coding": [{"system": "s", "code": "d"}]}, pattern)


def test_base_resource_profile_validates(validator: ProfileValidator) -> None:
    issues = validator.validate(resource("patient"), "http://hl7.org/fhir/StructureDefinition/Patient")
    assert issues == []


def test_registration_reason_not_recorded_uses_data_absent_reason(validator: ProfileValidator) -> None:
    absent = concept("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown")
    assert errors(validator, "registration",
                  lambda r: r.pop("valueCodeableConcept") and r.update(dataAbsentReason=absent)) == []


def test_registration_reason_missing_without_data_absent_reason(validator: ProfileValidator) -> None:
    issues = errors(validator, "registration", lambda r: r.pop("valueCodeableConcept"))
    assert where(issues) == ["Observation"]
    assert "ifp-reg-3" in issues[0].diagnostics


# --- absent elements (the walk skips those whose absence breaks nothing) -----------------------------------------
def test_a_required_element_given_only_by_its_extensions_is_present(validator: ProfileValidator) -> None:
    absent = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                             "valueCode": "unknown"}]}
    issues = errors(validator, "patient", lambda r: r.pop("birthDate") and r.update(_birthDate=absent))
    assert "Patient.birthDate" not in where(issues)


def test_the_walk_skips_only_elements_whose_absence_breaks_nothing(validator: ProfileValidator) -> None:
    patient = validator.tree(profile_url("patient"))
    assert patient is not None
    by_name = {child.name: child for child in patient.children}
    assert not by_name["birthDate"].silent_when_absent  # min 1
    assert not by_name["identifier"].silent_when_absent  # its slice 'pseudonym' has min 1
    assert by_name["deceased[x]"].silent_when_absent  # optional, no slices
    assert by_name["birthDate"].shadow_key == "_birthDate"


def _list_sliced_by_referenced_type() -> ProfileValidator:
    """HL7's validator suite, profile-slicing-type-resolve: List.entry sliced by ``item.resolve()``'s type."""
    entry = "List.entry"

    def slice_of(name: str, target: str, low: int, high: str) -> list[Json]:
        return [{"id": f"{entry}:{name}", "path": entry, "sliceName": name, "min": low, "max": high},
                {"id": f"{entry}:{name}.item", "path": f"{entry}.item",
                 "type": [{"code": "Reference", "targetProfile": [f"http://hl7.org/fhir/StructureDefinition/{target}"]}]}]

    sd: Json = {"resourceType": "StructureDefinition", "url": "https://example.org/sd/list-by-type", "name": "X",
                "status": "draft", "kind": "resource", "abstract": False, "type": "List",
                "baseDefinition": "http://hl7.org/fhir/StructureDefinition/List", "derivation": "constraint",
                "differential": {"element": [
                    {"id": entry, "path": entry, "slicing": {"discriminator": [{"type": "type",
                                                                                "path": "item.resolve()"}],
                                                             "rules": "closed"}},
                    *slice_of("conditions", "Condition", 1, "1"), *slice_of("observations", "Observation", 1, "3")]}}
    return ProfileValidator(ConformanceSnapshot([sd]))


@pytest.mark.parametrize(("items", "expected"), [
    (["#c", "#o"], []),
    (["Condition/1", "Observation/2", "Observation/3"], []),  # a literal reference names its type
    (["#o", "#o"], ["List.entry"]),  # no Condition: the conditions slice has none of its one
    # closed slicing: a Patient matches no slice, and the observations slice has none of its one
    (["#c", "Patient/1"], ["List.entry", "List.entry[1]"]),
])
def test_a_type_discriminator_through_resolve_reads_the_type_of_the_referenced_resource(
        items: list[str], expected: list[str]) -> None:
    """profiling.html#discriminator: ``type`` on ``item.resolve()`` slices by the type of what the item names."""
    contained = [{"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/1"}},
                 {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}}]
    resource: Json = {"resourceType": "List", "status": "current", "mode": "working", "contained": contained,
                      "entry": [{"item": {"reference": r}} for r in items]}
    issues = _list_sliced_by_referenced_type().validate(resource, "https://example.org/sd/list-by-type")
    assert sorted({i.expression[0] for i in issues if i.severity == "error"}) == expected
