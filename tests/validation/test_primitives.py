"""Wire-format checks of fhir_server.validation.primitives (https://hl7.org/fhir/R4/json.html)."""

from __future__ import annotations

import copy
import decimal
import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.validation.primitives import check_primitive_types
from tests.conftest import OFFICIAL_EXAMPLE_COUNT, official_examples

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "https://cml-registry.eu/fhir/sid/patient", "value": "FR-POI-0042"}],
    "gender": "female",
    "birthDate": "1956-03-01",
    "active": True,
}
OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]},
    "valueQuantity": {"value": decimal.Decimal("350.0"), "unit": "10*9/L"},
    "component": [
        {"code": {"text": "a"}, "valueInteger": 3},
        {"code": {"text": "b"}, "valueQuantity": {"value": decimal.Decimal("1.50")}},
    ],
}


def patient(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(PATIENT)
    out.update(changes)
    return out


def observation(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(OBSERVATION)
    out.update(changes)
    return out


def expressions(resource: dict[str, Any]) -> list[str]:
    return [e for i in check_primitive_types(resource) for e in i.expression]


def codes(resource: dict[str, Any]) -> list[str]:
    return [i.code for i in check_primitive_types(resource)]


def test_valid_resources_have_no_issues() -> None:
    assert check_primitive_types(patient()) == []
    assert check_primitive_types(observation()) == []


def test_boolean_given_as_string_is_an_error() -> None:
    assert expressions(patient(active="true")) == ["Patient.active"]
    assert codes(patient(active="true")) == ["structure"]


def test_integer_given_as_string_is_an_error() -> None:
    obs = observation()
    obs["component"][0]["valueInteger"] = "3"
    assert expressions(obs) == ["Observation.component[0].valueInteger"]


def test_integer_given_as_boolean_is_an_error() -> None:
    obs = observation()
    obs["component"][0]["valueInteger"] = True
    assert expressions(obs) == ["Observation.component[0].valueInteger"]


def test_integer_given_as_decimal_is_an_error() -> None:
    obs = observation()
    obs["component"][0]["valueInteger"] = decimal.Decimal("3.0")
    assert expressions(obs) == ["Observation.component[0].valueInteger"]


def test_integer_out_of_range_is_an_error() -> None:
    obs = observation()
    obs["component"][0]["valueInteger"] = 2**31
    assert codes(obs) == ["value"]


def test_positive_int_zero_is_an_error() -> None:
    p = patient(multipleBirthInteger=0)
    assert check_primitive_types(p) == []  # integer allows 0
    group = {"resourceType": "Group", "type": "person", "actual": True, "quantity": -1}
    assert expressions(group) == ["Group.quantity"]  # unsignedInt


def test_decimal_given_as_string_is_an_error() -> None:
    obs = observation()
    obs["component"][1]["valueQuantity"]["value"] = "1.50"
    assert expressions(obs) == ["Observation.component[1].valueQuantity.value"]


def test_decimal_accepts_decimal_int_and_float() -> None:
    for v in (decimal.Decimal("1.50"), 2, 2.5):
        assert check_primitive_types(observation(valueQuantity={"value": v})) == []


def test_decimal_nan_is_an_error() -> None:
    assert codes(observation(valueQuantity={"value": decimal.Decimal("NaN")})) == ["value"]


def test_date_given_as_number_is_an_error() -> None:
    assert expressions(patient(birthDate=1956)) == ["Patient.birthDate"]


def test_malformed_date_is_an_error() -> None:
    assert codes(patient(birthDate="01/03/1956")) == ["value"]


def test_impossible_calendar_date_is_an_error() -> None:
    assert codes(patient(birthDate="1957-02-29")) == ["value"]
    assert check_primitive_types(patient(birthDate="1956-02-29")) == []


def test_partial_dates_are_valid() -> None:
    assert check_primitive_types(patient(birthDate="1956")) == []
    assert check_primitive_types(patient(birthDate="1956-03")) == []


def test_datetime_with_time_needs_a_timezone() -> None:
    assert codes(observation(effectiveDateTime="2007-05-01T10:00:00")) == ["value"]
    assert check_primitive_types(observation(effectiveDateTime="2007-05-01T10:00:00+02:00")) == []


def test_instant_needs_full_precision() -> None:
    assert expressions(observation(issued="2007-05-01")) == ["Observation.issued"]


def test_empty_string_is_an_error() -> None:
    p = patient()
    p["identifier"][0]["value"] = ""
    assert expressions(p) == ["Patient.identifier[0].value"]


def test_code_with_leading_whitespace_is_an_error() -> None:
    obs = observation()
    obs["code"]["coding"][0]["code"] = " 777-3"
    assert expressions(obs) == ["Observation.code.coding[0].code"]


def test_id_with_invalid_characters_is_an_error() -> None:
    assert expressions(patient(id="p_1")) == ["Patient.id"]


def test_uri_with_space_is_an_error() -> None:
    p = patient()
    p["identifier"][0]["system"] = "https://cml registry"
    assert codes(p) == ["value"]


def test_single_value_where_array_expected_is_an_error() -> None:
    p = patient(identifier={"value": "x"})
    assert expressions(p) == ["Patient.identifier"]


def test_array_where_single_value_expected_is_an_error() -> None:
    assert expressions(patient(gender=["female"])) == ["Patient.gender"]


def test_empty_array_is_an_error() -> None:
    assert codes(patient(identifier=[])) == ["structure"]


def test_empty_object_is_an_error() -> None:
    assert expressions(observation(valueQuantity={})) == ["Observation.valueQuantity"]


def test_null_value_is_an_error() -> None:
    assert codes(patient(gender=None)) == ["structure"]


def test_unknown_element_is_reported() -> None:
    assert expressions(patient(favouriteColour="blue")) == ["Patient.favouriteColour"]


def test_unknown_element_in_datatype_is_reported() -> None:
    p = patient()
    p["identifier"][0]["label"] = "x"
    assert expressions(p) == ["Patient.identifier[0].label"]


def test_two_choice_types_are_an_error() -> None:
    both = patient(deceasedBoolean=False, deceasedDateTime="2007")
    assert expressions(both) == ["Patient.deceasedDateTime"]


def test_missing_required_element_is_an_error() -> None:
    obs = observation()
    del obs["status"]
    assert expressions(obs) == ["Observation.status"]
    assert codes(obs) == ["required"]


def test_required_element_with_only_extension_is_accepted() -> None:
    obs = observation()
    del obs["status"]
    obs["_status"] = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                     "valueCode": "unknown"}]}
    assert check_primitive_types(obs) == []


def test_required_choice_missing_is_an_error() -> None:
    ext = {"url": "https://cml-registry.eu/fhir/StructureDefinition/prospective-study"}
    # Extension.value[x] is 0..1, so an extension without value breaks no cardinality; ext-1 refuses it.
    assert [i.code for i in check_primitive_types(patient(extension=[ext]))] == ["invariant"]
    assert expressions(patient(extension=[{"valueBoolean": True}])) == ["Patient.extension[0].url"]


def test_extension_value_type_is_checked() -> None:
    ext = {"url": "https://cml-registry.eu/fhir/StructureDefinition/prospective-study", "valueBoolean": "yes"}
    assert expressions(patient(extension=[ext])) == ["Patient.extension[0].valueBoolean"]


def test_required_binding_on_code_is_checked() -> None:
    assert codes(patient(gender="F")) == ["code-invalid"]
    assert expressions(observation(status="done")) == ["Observation.status"]


def test_required_binding_on_codeable_concept_is_checked() -> None:
    cond: dict[str, Any] = {"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "cured"}]}}
    assert expressions(cond) == ["Condition.clinicalStatus.coding[0].code"]
    cond["clinicalStatus"]["coding"][0]["code"] = "resolved"
    assert check_primitive_types(cond) == []


def test_required_binding_ignores_codings_of_other_systems() -> None:
    cond = {"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
            "clinicalStatus": {"coding": [{"system": "http://example.org/local", "code": "cured"}]}}
    assert check_primitive_types(cond) == []


@pytest.mark.parametrize("code", [["active"], {"code": "active"}, 7])
def test_a_required_bound_coding_with_a_code_of_the_wrong_json_type_is_one_type_error(code: Any) -> None:
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/p"}, "clinicalStatus": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": code}]}}
    assert [(i.code, i.expression) for i in check_primitive_types(condition)] == [
        ("structure", ("Condition.clinicalStatus.coding[0].code",))]


def test_medication_statement_status_is_checked() -> None:
    ms = {"resourceType": "MedicationStatement", "status": "finished", "subject": {"reference": "Patient/p"},
          "medicationCodeableConcept": {"text": "imatinib"}}
    assert expressions(ms) == ["MedicationStatement.status"]


def test_primitive_extension_sibling_is_checked() -> None:
    p = patient(_birthDate={"extension": [{"url": "http://x", "valueDateTime": "1956-03-01T25:00:00Z"}]})
    assert expressions(p) == ["Patient.birthDate.extension[0].valueDateTime"]


def test_primitive_extension_of_unknown_element_is_an_error() -> None:
    assert codes(patient(_nickname={"id": "a"})) == ["structure"]


def test_primitive_extension_array_may_carry_nulls() -> None:
    p = patient(name=[{"given": ["Ann", None], "_given": [None, {"extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}]}]}])
    assert check_primitive_types(p) == []


def test_null_in_primitive_array_without_extension_is_an_error() -> None:
    p = patient(name=[{"given": ["Ann", None]}])
    assert expressions(p) == ["Patient.name[0].given[1]"]


def test_contained_resources_are_checked() -> None:
    med = {"resourceType": "Medication", "id": "m", "status": "in-use"}
    ms = {"resourceType": "MedicationStatement", "status": "active", "subject": {"reference": "Patient/p"},
          "medicationReference": {"reference": "#m"}, "contained": [med]}
    assert expressions(ms) == ["MedicationStatement.contained[0].status"]


def test_contained_resource_without_type_is_an_error() -> None:
    assert codes(patient(contained=[{"id": "x"}])) == ["structure"]


@pytest.mark.parametrize("kind", ["Foo", "HumanName", "patient"])
def test_a_contained_resource_of_no_r4_resource_type_is_an_error(kind: str) -> None:
    assert expressions(patient(contained=[{"resourceType": kind, "id": "x"}])) == ["Patient.contained[0].resourceType"]


def test_narrative_div_must_be_xhtml() -> None:
    assert expressions(patient(text={"status": "generated", "div": "hello"})) == ["Patient.text.div"]


def test_resource_without_resource_type_is_an_error() -> None:
    assert codes({"id": "x"}) == ["structure"]


def test_every_issue_is_an_error_with_an_expression() -> None:
    issues = check_primitive_types(patient(active="true", gender="F", birthDate=3))
    assert len(issues) == 3
    assert all(i.severity == "error" and len(i.expression) == 1 for i in issues)


@pytest.mark.parametrize("path", official_examples(), ids=lambda p: p.name)
def test_official_examples_have_no_errors(path: Path) -> None:
    with path.open() as f:
        resource = json.load(f, parse_float=decimal.Decimal)
    assert [i for i in check_primitive_types(resource) if i.severity == "error"] == []


def test_all_138_official_examples_are_present() -> None:
    assert len(official_examples()) == OFFICIAL_EXAMPLE_COUNT == 138


@pytest.mark.parametrize("character", ["\x00", "\x01", "\x1b", "\x0b", "\x0c", "\x1f"])
def test_a_string_holding_a_control_character_is_an_error_at_the_element(character: str) -> None:
    # datatypes.html#string: no code points below 32 but tab, CR and LF, in every string-based primitive
    p = patient(language=f"fr{character}")
    p["identifier"][0]["value"] = f"FR{character}42"
    assert sorted(expressions(p)) == ["Patient.identifier[0].value", "Patient.language"]


def test_tab_carriage_return_and_line_feed_are_allowed_in_strings() -> None:
    p = patient()
    p["identifier"][0]["value"] = "FR\t42\r\nsecond line"
    assert check_primitive_types(p) == []


def test_a_decimal_beyond_the_range_of_a_float_is_finite() -> None:
    for value in ("1E+6000", "-1.5E+400", "1E-6000"):
        assert check_primitive_types(observation(valueQuantity={"value": decimal.Decimal(value)})) == [], value


def test_a_coding_system_given_as_an_array_in_a_bound_element_is_an_error_not_a_crash() -> None:
    # found by tests/fuzz/: the required-binding check looked the list up as a dict key (a 500)
    condition = {"resourceType": "Condition", "subject": {"display": "x"}, "clinicalStatus": {"coding": [
        {"system": ["http://terminology.hl7.org/CodeSystem/condition-clinical"], "code": "active"}]}}
    assert expressions(condition) == ["Condition.clinicalStatus.coding[0].system"]


@pytest.mark.parametrize(("extension", "ok"), [
    ({"url": "http://example.org/x", "valueString": "a"}, True),
    ({"url": "http://example.org/x", "extension": [{"url": "y", "valueBoolean": True}]}, True),
    ({"url": "http://example.org/x"}, False),  # neither
    ({"url": "http://example.org/x", "valueString": "a", "extension": [{"url": "y", "valueBoolean": True}]}, False),
])
def test_ext_1_an_extension_has_a_value_or_extensions_not_both(extension: dict[str, object], ok: bool) -> None:
    """extensibility.html, ext-1: checked by the wire walk wherever an extension is, inside datatypes too."""
    patient = {"resourceType": "Patient", "name": [{"family": "X", "extension": [extension]}]}
    issues = check_primitive_types(patient)
    expected = [] if ok else [("invariant", ("Patient.name[0].extension[0]",))]
    assert [(i.code, i.expression) for i in issues] == expected


@pytest.mark.parametrize(("resource", "expected"), [
    ({"extension": [{"url": "http://example.org/x", "valueString": "a"}]}, []),
    ({"extension": [{"url": "urn:oid:1.2.3", "valueString": "a"}]}, []),
    # the parts of a complex extension are named relative to it (patient-animal's species)
    ({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-animal",
                     "extension": [{"url": "species", "valueCodeableConcept": {"text": "dog"}}]}]}, []),
    ({"modifierExtension": [{"url": "http://example.org/x", "extension": [{"url": "y", "valueBoolean": True}]}]},
     []),
    # HL7's validator suite, patient-extension-bad: a top-level extension named by a relative url
    ({"extension": [{"url": "animal", "valueString": "a"}]}, ["Patient.extension[0].url"]),
    ({"modifierExtension": [{"url": "x", "valueString": "a"}]}, ["Patient.modifierExtension[0].url"]),
    # an extension of a primitive, or of an extension's value, is an extension of its own: not a part
    ({"birthDate": "1956", "_birthDate": {"extension": [{"url": "age", "valueInteger": 3}]}},
     ["Patient.birthDate.extension[0].url"]),
    ({"extension": [{"url": "http://example.org/x", "valueString": "a",
                     "_valueString": {"extension": [{"url": "y", "valueBoolean": True}]}}]},
     ["Patient.extension[0].valueString.extension[0].url"]),
])
def test_an_extension_is_named_by_the_absolute_url_of_its_definition(resource: dict[str, Any],
                                                                     expected: list[str]) -> None:
    """extensibility.html#extension: the url SHALL be the canonical URL of the StructureDefinition defining it."""
    issues = check_primitive_types({"resourceType": "Patient", **resource})
    assert [i.expression[0] for i in issues] == expected
    assert all(i.code == "value" and "absolute URL" in i.diagnostics for i in issues)


@pytest.mark.parametrize(("url", "ok"), [
    ("urn:uuid:6a2ee390-978e-42c6-8f88-c17dff3bd8ab", True),
    ("urn:oid:2.16.840.1.113883.6.57", True),
    ("urn:ietf:rfc:3986", True),  # another URN namespace: its own rules
    ("http://example.org/fhir/ValueSet/x", True),
    # HL7's validator suite, vs-canonical-urn-bad: the last group has 11 digits
    ("urn:uuid:6a2ee390-978e-42c6-8f88-c17dff3bd8a", False),
    ("urn:uuid::6a2ee390", False),
    ("urn:oid:2.16.08", False),  # an arc with a leading zero
    ("urn:oid:37843577-95fb-4adb-84c0-8837188a7bf3", False),  # a UUID is no OID
])
def test_uuid_and_oid_urns_carry_a_uuid_and_an_oid(url: str, ok: bool) -> None:
    """datatypes.html#uri, RFC 4122 and the R4 oid type: a ``urn:uuid:``/``urn:oid:`` uri says what it is."""
    issues = check_primitive_types({"resourceType": "ValueSet", "status": "draft", "url": url})
    assert [i.expression[0] for i in issues] == ([] if ok else ["ValueSet.url"])


@pytest.mark.parametrize(("system", "ok"), [
    ("http://loinc.org", True), ("urn:oid:2.16.840.1.113883.6.1", True),
    ("#local", False), ("loinc", False),
    # HL7's validator suite, code-wrong-system-vs: a value set's url is no code system's
    ("http://hl7.org/fhir/ValueSet/account-type", False), ("http://hl7.org/fhir/account-status", True),
])
def test_a_codings_system_is_an_absolute_uri_naming_no_value_set(system: str, ok: bool) -> None:
    """datatypes.html#Coding: the system identifies the code system; a relative URI identifies none, and neither
    does the url of one of R4's value sets."""
    observation = {**OBSERVATION, "code": {"coding": [{"system": system, "code": "777-3"}]}}
    issues = check_primitive_types(observation)
    expected = [] if ok else [("error", "Observation.code.coding[0].system")]
    assert [(i.severity, i.expression[0]) for i in issues] == expected


@pytest.mark.parametrize(("value", "ok"), [
    ("urn:oid:2.16.840.1.113883.6.57", True),
    ("2.16.840.1.113883.6.57", False),  # HL7's validator suite, cs-bad-oid: the OID without its urn:oid:
])
def test_an_identifier_of_the_uri_system_has_a_uri_for_its_value_or_is_warned(value: str, ok: bool) -> None:
    """identifier-registry.html, urn:ietf:rfc:3986: the identifier is a URI. A warning: HL7's own examples break
    it, and the identifier is still matched as it is."""
    patient = {**PATIENT, "identifier": [{"system": "urn:ietf:rfc:3986", "value": value}]}
    issues = check_primitive_types(patient)
    expected = [] if ok else [("warning", "Patient.identifier[0].value")]
    assert [(i.severity, i.expression[0]) for i in issues] == expected
