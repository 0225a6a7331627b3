"""The extension context matcher (https://hl7.org/fhir/R4/defining-extensions.html#context) and the walk that
finds extensions, without HTTP."""

from __future__ import annotations

import logging

import pytest

from fhir_server.json_types import Json
from fhir_server.validation.conformance import ConformanceSnapshot
from fhir_server.validation.extension_context import (
    ExtensionUse,
    Host,
    allows,
    broken_invariants,
    core_extension_uses,
    element_names,
    extension_sites,
)
from fhir_server.validation.profile import ProfileValidator

CORE = "http://hl7.org/fhir/StructureDefinition/"


def element(*expressions: str) -> ExtensionUse:
    return ExtensionUse(tuple(("element", e) for e in expressions), modifier=False)


@pytest.mark.parametrize(("parts", "name"), [
    (("Patient",), "Patient"),
    (("Patient",), "DomainResource"),
    (("Patient",), "Resource"),
    (("Patient", "birthDate"), "Patient.birthDate"),
    (("Patient", "birthDate"), "date"),
    (("Patient", "gender"), "string"),  # code specialises string
    (("Patient", "name", "family"), "HumanName.family"),
    (("Patient", "name", "family"), "Patient.name.family"),
    (("Observation", "component"), "Observation.component"),
    (("Observation", "component"), "BackboneElement"),
    (("Observation", "valueQuantity"), "Observation.value[x]"),
    (("Observation", "valueQuantity"), "Observation.valueQuantity"),
    (("Observation", "valueQuantity"), "Quantity"),
    (("Condition", "onsetAge"), "Quantity"),  # Age specialises Quantity
    (("Observation", "component", "referenceRange"), "Observation.referenceRange"),  # content reference
    (("Observation", "code", "coding"), "Coding"),
    (("Observation", "code", "coding"), "Element"),
    # an element a resource inherits answers to its ancestor's path (HL7's validator suite, exta-ctxt-good-text)
    (("Patient", "text"), "DomainResource.text"),
    (("Patient", "text", "div"), "DomainResource.text.div"),
    (("Patient", "meta"), "Resource.meta"),
])
def test_element_answers_to(parts: tuple[str, ...], name: str) -> None:
    names = element_names(parts)
    assert names is not None and name in names


@pytest.mark.parametrize(("parts", "name"), [
    (("Observation",), "Patient"),
    (("Observation",), "Observation.component"),
    (("Observation", "component"), "Observation"),
    (("Patient", "birthDate"), "dateTime"),
    (("Patient", "name"), "HumanName.family"),
    (("Patient", "name", "family"), "Patient.name"),
    (("Patient", "name"), "DomainResource.name"),  # Patient's own element: no ancestor defines it
])
def test_element_does_not_answer_to(parts: tuple[str, ...], name: str) -> None:
    names = element_names(parts)
    assert names is not None and name not in names


def test_element_outside_the_known_types_is_not_judged() -> None:
    assert element_names(("SubscriptionStatus", "name", "family")) is None  # R4B, not an R4 type
    assert allows(element("HumanName.family"), Host(("SubscriptionStatus", "name", "family")))


def test_resource_context_admits_only_that_resource() -> None:
    assert allows(element("Patient"), Host(("Patient",)))
    assert not allows(element("Patient"), Host(("Observation",)))
    assert not allows(element("Patient"), Host(("Patient", "name")))


def test_element_context_admits_any_element() -> None:
    assert allows(element("Element"), Host(("Observation", "code", "coding")))


def test_datatype_context_admits_every_element_of_that_type() -> None:
    use = element("CodeableConcept")
    assert allows(use, Host(("Observation", "code")))
    assert allows(use, Host(("Condition", "stage", "summary")))
    assert not allows(use, Host(("Observation", "code", "coding")))


def test_profile_qualified_and_sliced_element_ids_match_their_base_path() -> None:
    use = element("https://example.org/StructureDefinition/p#Observation.component:phase")
    assert allows(use, Host(("Observation", "component")))
    assert not allows(use, Host(("Observation",)))


def test_extension_context_admits_only_inside_that_extension() -> None:
    use = ExtensionUse((("extension", "https://example.org/outer"),), modifier=False)
    assert allows(use, Host(("Patient", "extension"), ("https://example.org/outer",)))
    assert not allows(use, Host(("Patient", "extension"), ("https://example.org/other",)))
    assert not allows(use, Host(("Patient",)))


def test_extension_context_with_a_sub_extension_name() -> None:
    use = ExtensionUse((("extension", "https://example.org/outer#part"),), modifier=False)
    assert allows(use, Host(("Patient", "extension", "extension"), ("part", "https://example.org/outer")))
    assert not allows(use, Host(("Patient", "extension", "extension"), ("part", "https://example.org/x")))


def test_fhirpath_context_admits_the_selected_elements() -> None:
    first, second = {"family": "A"}, {"family": "B"}
    patient = {"resourceType": "Patient", "name": [first, second]}
    use = ExtensionUse((("fhirpath", "Patient.name.where(family = 'A')"),), modifier=False)
    assert allows(use, Host(("Patient", "name"), value=first, resource=patient))
    assert not allows(use, Host(("Patient", "name"), value=second, resource=patient))


def test_fhirpath_context_that_cannot_be_evaluated_admits() -> None:
    use = ExtensionUse((("fhirpath", "Patient.name.("),), modifier=False)
    assert allows(use, Host(("Patient",), value={}, resource={"resourceType": "Patient"}))


def test_fhirpath_context_that_cannot_be_compiled_or_evaluated_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    patient = {"resourceType": "Patient", "birthDate": "1970"}
    with caplog.at_level(logging.WARNING):
        for broken in ("Patient.name.where(", "Patient.birthDate > 5"):  # not FHIRPath; a date against a number
            assert allows(ExtensionUse((("fhirpath", broken),), modifier=False),
                          Host(("Patient",), value={}, resource=patient))
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Patient.name.where(" in m for m in logged)
    assert any("Patient.birthDate > 5" in m and "extension is admitted" in m for m in logged)


def test_r4_extension_table_holds_the_specification_contexts() -> None:
    uses = core_extension_uses()
    assert uses[CORE + "patient-birthPlace"].contexts == (("element", "Patient"),)
    assert uses[CORE + "patient-birthTime"].contexts == (("element", "Patient.birthDate"),)
    # corrected as HL7's validator corrects it: R4's own definitions use it on ElementDefinition.type
    assert ("element", "ElementDefinition.type") in uses[CORE + "structuredefinition-fhir-type"].contexts


def test_extension_sites_are_found_everywhere_in_document_order() -> None:
    resource: Json = {
        "resourceType": "Patient",
        "extension": [{"url": "a", "extension": [{"url": "b"}]}],
        "_birthDate": {"extension": [{"url": "c"}]},
        "name": [{"family": "X"}, {"_family": {"extension": [{"url": "d"}]}}],
        "contained": [{"resourceType": "Organization", "modifierExtension": [{"url": "e"}]}],
    }
    sites = extension_sites(resource)
    assert [(s.extension["url"], s.path, s.host.parts) for s in sites] == [
        ("a", "Patient.extension[0]", ("Patient",)),
        ("b", "Patient.extension[0].extension[0]", ("Patient", "extension")),
        ("c", "Patient.birthDate.extension[0]", ("Patient", "birthDate")),
        ("d", "Patient.name[1].family.extension[0]", ("Patient", "name", "family")),
        ("e", "Patient.contained[0].modifierExtension[0]", ("Organization",)),
    ]
    assert sites[1].host.extension_urls == ("a",)


def test_value_of_an_extension_is_inside_it() -> None:
    resource: Json = {"resourceType": "Patient", "extension": [
        {"url": "outer", "valueAddress": {"extension": [{"url": "inner"}]}}]}
    inner = extension_sites(resource)[1]
    assert inner.host.parts == ("Patient", "extension", "valueAddress")
    assert inner.host.extension_urls == ("outer",)


@pytest.fixture(scope="module")
def validator() -> ProfileValidator:
    return ProfileValidator(ConformanceSnapshot.from_package_dir("profiles"))


def test_primitive_extension_is_on_the_primitive(validator: ProfileValidator) -> None:
    birth_time = {"url": CORE + "patient-birthTime", "valueDateTime": "1960-04-02T10:30:00+02:00"}
    on_birth_date = {"resourceType": "Patient", "birthDate": "1960-04-02", "_birthDate": {"extension": [birth_time]}}
    assert validator.validate_all(on_birth_date, []) == []
    on_patient = {"resourceType": "Patient", "extension": [birth_time]}
    issues = validator.validate_all(on_patient, [])
    assert [(i.code, i.expression) for i in issues] == [("structure", ("Patient.extension[0]",))]


def test_extension_in_a_contained_resource_is_judged_on_that_resource(validator: ProfileValidator) -> None:
    birth_place = {"url": CORE + "patient-birthPlace", "valueAddress": {"city": "Lyon"}}
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "contained": [{"resourceType": "Patient", "id": "p", "extension": [birth_place]}]}
    assert validator.validate_all(observation, []) == []


def test_plain_extension_in_modifier_extension_is_an_error(validator: ProfileValidator) -> None:
    birth_place = {"url": CORE + "patient-birthPlace", "valueAddress": {"city": "Lyon"}}
    issues = validator.validate_all({"resourceType": "Patient", "modifierExtension": [birth_place]}, [])
    assert [(i.code, i.expression) for i in issues] == [("structure", ("Patient.modifierExtension[0]",))]
    assert "not a modifier extension" in issues[0].diagnostics


def test_unknown_extension_is_allowed_anywhere(validator: ProfileValidator) -> None:
    resource = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "extension": [{"url": "https://example.org/anything", "valueString": "x"}]}
    assert validator.validate_all(resource, []) == []


def test_unknown_modifier_extension_is_an_error_only_against_profiles(validator: ProfileValidator) -> None:
    modifier = {"url": "https://example.org/m", "valueBoolean": True}
    resource = {"resourceType": "Patient", "modifierExtension": [modifier]}
    assert validator.validate_all(resource, []) == []
    issues = validator.validate_all(resource, [CORE + "Patient"])
    assert [(i.code, i.expression) for i in issues] == [("extension", ("Patient.modifierExtension[0]",))]


def test_modifier_extension_in_extension_is_an_error(validator: ProfileValidator) -> None:
    prohibited = {"url": CORE + "capabilitystatement-prohibited", "valueBoolean": True}  # R4's modifier, Element
    assert validator.validate_all({"resourceType": "Patient", "modifierExtension": [prohibited]}, []) == []
    issues = validator.validate_all({"resourceType": "Patient", "extension": [prohibited]}, [])
    assert [(i.code, i.expression) for i in issues] == [("structure", ("Patient.extension[0]",))]
    assert "is a modifier extension" in issues[0].diagnostics


@pytest.mark.parametrize(("active", "broken"), [(None, []), (False, []), (True, ["Patient.active.not()"])])
def test_a_context_invariant_must_be_true_of_the_element_the_extension_is_on(active: bool | None,
                                                                            broken: list[str]) -> None:
    """StructureDefinition.contextInvariant (HL7's validator suite, extb-ctxt-bad): "All the rules must be true"."""
    use = ExtensionUse((("element", "Patient"),), modifier=False, invariants=("Patient.active.not()",))
    patient: Json = {"resourceType": "Patient", **({} if active is None else {"active": active})}
    assert broken_invariants(use, Host(("Patient",), (), patient, patient)) == broken
