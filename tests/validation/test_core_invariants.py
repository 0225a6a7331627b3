"""The invariants of R4 itself (conformance-rules.html#constraints), checked on every resource: each rule below is
broken once and kept once, as the base StructureDefinitions word it; HL7's own examples break none."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from fhir_server import fhirjson
from fhir_server.validation.core_invariants import core_invariant_issues, invariant_table

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "fhir-r4-examples-all"
OBSERVATION: dict[str, Any] = {"resourceType": "Observation", "status": "final", "code": {"text": "BCR-ABL1"}}
UCUM = "http://unitsofmeasure.org"


def broken(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(rule, FHIRPath) of every error."""
    return [(i.diagnostics.split(": ")[1], i.expression[0]) for i in core_invariant_issues(resource)
            if i.severity == "error"]


@pytest.mark.parametrize(("resource", "expected"), [
    # obs-6: dataAbsentReason only when there is no value
    ({**OBSERVATION, "valueString": "x", "dataAbsentReason": {"text": "lost"}}, [("obs-6", "Observation")]),
    ({**OBSERVATION, "dataAbsentReason": {"text": "lost"}}, []),
    # obs-7: a value and a component of the Observation's own code
    ({**OBSERVATION, "code": {"coding": [{"system": "http://loinc.org", "code": "1"}]}, "valueString": "x",
      "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "1"}]}, "valueString": "y"}]},
     [("obs-7", "Observation")]),
    # obs-3 on a backbone element
    ({**OBSERVATION, "referenceRange": [{"type": {"text": "normal"}}]}, [("obs-3", "Observation.referenceRange[0]")]),
    # per-1: a Period starts before it ends, wherever it is
    ({**OBSERVATION, "effectivePeriod": {"start": "2020-02-01", "end": "2020-01-01"}},
     [("per-1", "Observation.effectivePeriod")]),
    ({**OBSERVATION, "effectivePeriod": {"start": "2020-01-01", "end": "2020-02-01"}}, []),
    # qty-3: a unit code needs its system
    ({**OBSERVATION, "valueQuantity": {"value": 1, "code": "mg"}}, [("qty-3", "Observation.valueQuantity")]),
    ({**OBSERVATION, "valueQuantity": {"value": 1, "code": "mg", "system": UCUM}}, []),
    # rng-2: a Range's low is not above its high, compared in common UCUM units
    ({**OBSERVATION, "valueRange": {"low": {"value": 800, "system": UCUM, "code": "mg"},
                                    "high": {"value": 400, "system": UCUM, "code": "mg"}}},
     [("rng-2", "Observation.valueRange")]),
    ({**OBSERVATION, "valueRange": {"low": {"value": 1, "system": UCUM, "code": "g"},
                                    "high": {"value": 500, "system": UCUM, "code": "mg"}}},
     [("rng-2", "Observation.valueRange")]),
    ({**OBSERVATION, "valueRange": {"low": {"value": 400, "system": UCUM, "code": "mg"},
                                    "high": {"value": 0.8, "system": UCUM, "code": "g"}}}, []),
    # the same unit of another system compares as it is (HL7's MedicationStatement example: 1 to 2 TAB)
    ({**OBSERVATION, "valueRange": {"low": {"value": 9, "system": "urn:x", "code": "tab"},
                                    "high": {"value": 1, "system": "urn:x", "code": "tab"}}},
     [("rng-2", "Observation.valueRange")]),
    # units of different kinds, or different units outside UCUM: nothing to compare, nothing broken
    ({**OBSERVATION, "valueRange": {"low": {"value": 9, "system": UCUM, "code": "g"},
                                    "high": {"value": 1, "system": UCUM, "code": "m"}}}, []),
    ({**OBSERVATION, "valueRange": {"low": {"value": 9, "system": "urn:x", "code": "tab"},
                                    "high": {"value": 1, "system": "urn:x", "code": "cap"}}}, []),
    # ref-1: a local reference names a contained resource
    ({**OBSERVATION, "subject": {"reference": "#p1"}}, [("ref-1", "Observation.subject")]),
    ({**OBSERVATION, "subject": {"reference": "#p1"}, "contained": [{"resourceType": "Patient", "id": "p1"}]}, []),
    # pat-1 on a backbone element of a Patient
    ({"resourceType": "Patient", "contact": [{"gender": "female"}]}, [("pat-1", "Patient.contact[0]")]),
    # org-1 on the resource
    ({"resourceType": "Organization", "active": True}, [("org-1", "Organization")]),
    # tim-* inside a MedicationStatement's dosage
    ({"resourceType": "MedicationStatement", "status": "active", "medicationCodeableConcept": {"text": "imatinib"},
      "subject": {"reference": "Patient/1"}, "dosage": [{"timing": {"repeat": {"duration": 1}}}]},
     [("tim-1", "MedicationStatement.dosage[0].timing.repeat")]),
    # con-4: an abatement needs a resolved, remitted or inactive clinical status
    ({"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "abatementString": "gone",
      "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                     "code": "active"}]}}, [("con-4", "Condition")]),
])
def test_each_rule_is_broken_where_the_spec_puts_it(resource: dict[str, Any], expected: list[Any]) -> None:
    assert broken(resource) == expected


@pytest.mark.parametrize(("contained", "expected"), [
    ([{"resourceType": "Patient", "id": "p1", "contained": [{"resourceType": "Patient", "id": "p2"}]}],
     ["dom-2"]),
    ([{"resourceType": "Patient", "id": "p1"}, {"resourceType": "Patient", "id": "p2"}], ["dom-3"]),  # p2: by none
    ([{"resourceType": "Patient", "id": "p1", "meta": {"versionId": "2"}}], ["dom-4"]),
    ([{"resourceType": "Patient", "id": "p1", "meta": {"security": [{"code": "R"}]}}], ["dom-5"]),
    ([{"resourceType": "Patient", "id": "p1"}], []),
    # a contained resource may refer to its container instead
    ([{"resourceType": "Patient", "id": "p1"}, {"resourceType": "Provenance", "id": "v",
                                               "target": [{"reference": "#"}]}], []),
])
def test_contained_resources_follow_the_domain_resource_rules(contained: list[Any], expected: list[str]) -> None:
    resource = {**OBSERVATION, "subject": {"reference": "#p1"}, "contained": contained}
    assert [rule for rule, _ in broken(resource)] == expected


def test_a_contained_resource_checks_its_own_invariants_with_the_container_as_root_resource() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "managingOrganization": {"reference": "#o1"}}
    resource = {**OBSERVATION, "subject": {"reference": "#p1"},
                "contained": [patient, {"resourceType": "Organization", "id": "o1", "name": "CHU"}]}
    assert broken(resource) == []  # ref-1 of the contained Patient finds #o1 in the container
    bad = {**resource, "contained": [{**patient, "contact": [{"gender": "male"}]}, resource["contained"][1]]}
    assert broken(bad) == [("pat-1", "Observation.contained[0].contact[0]")]


def test_the_resources_of_a_bundle_are_checked_as_resources_of_their_own() -> None:
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": {**OBSERVATION, "valueString": "x", "dataAbsentReason": {"text": "y"}}}]}
    assert broken(bundle) == [("obs-6", "Bundle.entry[0].resource")]


def test_warnings_are_issues_of_severity_warning() -> None:
    """con-3 (a problem-list Condition has a clinical status) is a warning in R4."""
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/1"},
                 "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                           "code": "problem-list-item"}]}]}
    issues = core_invariant_issues(condition)
    assert [(i.severity, i.diagnostics.split(": ")[1]) for i in issues] == [("warning", "con-3")]


def test_que_7_reads_a_boolean_answer_as_the_rule_means() -> None:
    when = {"question": "q", "operator": "exists", "answerBoolean": True}
    questionnaire = {"resourceType": "Questionnaire", "status": "active",
                     "item": [{"linkId": "q", "type": "boolean"},
                              {"linkId": "r", "type": "string", "enableWhen": [when]}]}
    assert broken(questionnaire) == []
    wrong = {**questionnaire, "item": [questionnaire["item"][0], {**questionnaire["item"][1], "enableWhen": [
        {"question": "q", "operator": "exists", "answerString": "yes"}]}]}
    assert broken(wrong) == [("que-7", "Questionnaire.item[1].enableWhen[0]")]


def test_que_12_asks_for_enable_behavior_from_two_conditions_on_as_its_rule_says() -> None:
    """R4 words que-12 "if there are more than one enableWhen"; its R4 expression counts from three."""
    when = [{"question": "q", "operator": "=", "answerBoolean": True},
            {"question": "q", "operator": "exists", "answerBoolean": True}]
    questionnaire = {"resourceType": "Questionnaire", "status": "active",
                     "item": [{"linkId": "q", "type": "boolean"},
                              {"linkId": "r", "type": "string", "enableWhen": when}]}
    assert broken(questionnaire) == [("que-12", "Questionnaire.item[1]")]
    questionnaire["item"][1]["enableBehavior"] = "all"
    assert broken(questionnaire) == []
    questionnaire["item"][1] = {"linkId": "r", "type": "string", "enableWhen": when[:1]}
    assert broken(questionnaire) == []


@pytest.mark.parametrize(("when", "expected"), [
    (["ACM", "ACV"], []),  # before breakfast and dinner, 30 minutes each
    (["C", "ACV"], [("tim-9", "CarePlan.activity[0].detail.scheduledTiming.repeat")]),  # "at a meal" takes none
    (None, [("tim-9", "CarePlan.activity[0].detail.scheduledTiming.repeat")]),
])
def test_tim_9_judges_every_when_of_a_timing_with_an_offset(when: list[str] | None,
                                                            expected: list[tuple[str, str]]) -> None:
    """R4's tim-9 tests ``when in (...)``, which takes one item: two ``when`` could not be evaluated."""
    repeat: dict[str, Any] = {"offset": 30, **({"when": when} if when else {})}
    care_plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                 "subject": {"reference": "Patient/1"},
                 "activity": [{"detail": {"status": "scheduled", "scheduledTiming": {"repeat": repeat}}}]}
    assert broken(care_plan) == expected


HELLO = base64.b64encode(b"Hello, world!!").decode()  # 14 bytes
HELLO_SHA1 = base64.b64encode(hashlib.sha1(b"Hello, world!!", usedforsecurity=False).digest()).decode()


@pytest.mark.parametrize(("stated", "expected"), [
    ({}, []),
    ({"size": 14, "hash": HELLO_SHA1}, []),
    # HL7's validator suite, attachment-with-wrong-size: "Stated Attachment Size 100 does not match ... 14"
    ({"size": 100}, [("error", "Media.content.size")]),
    ({"hash": base64.b64encode(hashlib.sha1(b"other", usedforsecurity=False).digest()).decode()},
     [("error", "Media.content.hash")]),
    # a hash in hex (HL7's DiagnosticReport-example-pgx) is no base64 SHA-1: said, not refused
    ({"hash": "571ef9c5655840f324e679072ed62b1b95eef8a0"}, [("warning", "Media.content.hash")]),
])
def test_an_attachments_stated_size_and_hash_are_those_of_its_data(stated: dict[str, Any],
                                                                   expected: list[tuple[str, str]]) -> None:
    """datatypes.html#Attachment: size is the number of bytes of the data, hash its SHA-1 in base64."""
    media = {"resourceType": "Media", "status": "completed",
             "content": {"contentType": "text/plain", "data": HELLO, **stated}}
    assert [(i.severity, i.expression[0]) for i in core_invariant_issues(media)] == expected


@pytest.mark.parametrize(("url", "contained_url", "expected"), [
    ("http://example.org/fhir/ValueSet/x", "http://example.org/fhir/CodeSystem/c1", []),
    ("urn:uuid:6a2ee390-978e-42c6-8f88-c17dff3bd8ab", "urn:oid:1.2.3", []),
    # HL7's validator suite, vs-canonical-bad: a relative url on the value set and on its contained code system
    ("ValueSet/vs-canonical-bad", "c1", ["ValueSet.url", "ValueSet.contained[0].url"]),
])
def test_a_canonical_resources_url_is_an_absolute_uri(url: str, contained_url: str, expected: list[str]) -> None:
    """valueset.html#ValueSet.url (every canonical resource's): "An absolute URI that is used to identify this"."""
    value_set = {"resourceType": "ValueSet", "status": "draft", "url": url,
                 "contained": [{"resourceType": "CodeSystem", "id": "c1", "url": contained_url, "status": "draft",
                                "content": "complete"}],
                 "compose": {"include": [{"system": contained_url}]}}
    issues = [i for i in core_invariant_issues(value_set) if i.expression[0].endswith(".url")]
    assert sorted(i.expression[0] for i in issues) == sorted(expected)


def test_the_table_skips_what_other_checks_own() -> None:
    table = invariant_table()
    keys = {i.key for found in (*table.by_type.values(), *table.by_element.values()) for i in found}
    assert {"obs-6", "per-1", "ref-1", "org-3"} <= keys
    assert not keys & {"ele-1", "ext-1", "txt-1", "txt-2", "dom-6"}
    assert "CodeableConcept" not in table.visited  # nothing to check inside: not walked


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_hl7_examples_break_no_invariant(path: Path) -> None:
    assert broken(fhirjson.loads(path.read_bytes())) == []
