"""The search rewrite pass over SearchParameter expressions, and failures that are logged rather than swallowed."""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import pytest

from fhir_server.fhirpath import parse
from fhir_server.fhirpath.syntax import Node
from fhir_server.search.expressions import compile_expression, evaluate, rewrite, root_of
from fhir_server.search.extract import extract_index_values
from fhir_server.search.registry import SearchParam, SearchParameterRegistry
from tests.conftest import load_example, official_examples

OBSERVATION = {
    "resourceType": "Observation", "id": "o1", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]},
    "subject": {"reference": "Patient/p1"},
    "valueQuantity": {"value": 4, "unit": "%"},
    "component": [{"code": {"text": "a"}, "valueQuantity": {"value": 1}}, {"code": {"text": "b"}, "valueString": "x"}],
}


def shape(node: Node) -> Any:
    """A tree without the parser's whitespace-free ``text`` of composite nodes: what evaluation depends on."""
    kept = node.get("text") if node.get("type") == "Identifier" or "Literal" in str(node.get("type")) else None
    return (node.get("type"), tuple(node.get("terminalNodeText", ())), kept,
            tuple(shape(child) for child in node.get("children", ())))


@pytest.mark.parametrize(("written", "meant"), [
    ("(Observation.component.value as Quantity)", "(Observation.component.value.ofType(Quantity))"),
    ("Observation.value.as(Quantity)", "Observation.value.ofType(Quantity)"),
    ("(Observation.value as CodeableConcept).text", "(Observation.value.ofType(CodeableConcept)).text"),
])
def test_as_becomes_of_type(written: str, meant: str) -> None:
    tree, restriction = rewrite(parse(written))
    assert shape(tree) == shape(parse(meant))
    assert restriction is None


def test_where_resolve_is_type_becomes_a_type_restriction() -> None:
    tree, restriction = rewrite(parse("Observation.subject.where(resolve() is Patient)"))
    assert shape(tree) == shape(parse("Observation.subject"))
    assert restriction == "Patient"


def test_other_where_clauses_are_kept() -> None:
    written = parse("Patient.telecom.where(system = 'email')")
    tree, restriction = rewrite(written)
    assert tree is written
    assert restriction is None


@pytest.mark.parametrize(("written", "meant"), [
    ("Resource.meta.tag", "meta.tag"),
    ("DomainResource.text", "text"),
    ("Resource.id.exists()", "id.exists()"),
])
def test_a_generic_root_is_dropped(written: str, meant: str) -> None:
    assert shape(rewrite(parse(written))[0]) == shape(parse(meant))


def test_the_pass_builds_new_trees_and_leaves_the_shared_parse_alone() -> None:
    text = "(Observation.value as Quantity)"
    before = json.dumps(parse(text), sort_keys=True)
    rewrite(parse(text))
    assert json.dumps(parse(text), sort_keys=True) == before


@pytest.mark.parametrize(("branch", "root"), [
    ("(Observation.value as Quantity)", "Observation"),
    ("Patient.deceased.exists() and Patient.deceased != false", "Patient"),
    ("value.as(Quantity)", "value"),
    ("resolve()", "resolve"),
    ("%resource.id", None),
    ("'x'", None),
])
def test_root_of_a_branch(branch: str, root: str | None) -> None:
    assert root_of(parse(branch)) == root


def test_a_relative_branch_applies_to_every_type_but_a_foreign_root_does_not() -> None:
    assert [b.source for b in compile_expression("code | Condition.code", "Observation")] == ["code"]


def test_the_rewritten_tree_feeds_both_the_native_engine_and_fhirpathpy() -> None:
    (branch,) = compile_expression("(Observation.component.value as Quantity)", "Observation")
    assert branch.expression.native
    native = branch.expression.evaluate(OBSERVATION, OBSERVATION)
    assert native == branch.expression.slow(OBSERVATION, OBSERVATION) == [{"value": 1}]


def test_navigation_branches_tell_the_resource_keys_they_read() -> None:
    def keys(expression: str, resource_type: str) -> list[frozenset[str] | None]:
        return [b.top_keys for b in compile_expression(expression, resource_type)]

    assert keys("(Observation.value as Quantity)", "Observation") == [frozenset({"valueQuantity"})]
    assert keys("Resource.meta.tag", "Patient") == [frozenset({"meta"})]
    assert keys("Patient.deceased.exists() and Patient.deceased != false", "Patient") == [None]


def test_a_choice_inside_a_datatype_is_found() -> None:
    # Dosage.doseAndRate.dose[x] is a choice of the Dosage datatype, not of MedicationStatement's own paths
    (branch,) = compile_expression("MedicationStatement.dosage.doseAndRate.dose", "MedicationStatement")
    statement = {"resourceType": "MedicationStatement",
                 "dosage": [{"doseAndRate": [{"doseQuantity": {"value": 400, "code": "mg"}}]}]}
    assert branch.expression.native
    assert evaluate([branch], statement) == [({"value": 400, "code": "mg"}, None)]


@pytest.mark.parametrize("example", [p.name for p in official_examples()])
def test_every_search_branch_evaluates_as_fhirpathpy_does_on_the_official_examples(example: str) -> None:
    """The engine's native shortcuts change nothing: every branch of every R4 parameter of the example's type,
    rewritten by the pass, gives fhirpathpy's answer on the same tree."""
    resource = load_example(example)
    registry = default_registry()
    kind = resource["resourceType"]
    for parameter in registry.for_type(kind).values():
        for branch in registry.branches(parameter, kind) if parameter.indexed else []:
            expected = branch.expression.slow(resource, resource)
            assert branch.expression.evaluate(resource, resource) == expected, branch.source


@functools.cache
def default_registry() -> SearchParameterRegistry:
    return SearchParameterRegistry.load_default()


# --- failures are logged, not swallowed; the write goes on ------------------------------------------------------
BROKEN_URL = "https://example.org/SearchParameter/broken"


def test_an_expression_that_does_not_compile_is_logged_when_the_registry_is_built(
        caplog: pytest.LogCaptureFixture) -> None:
    broken = SearchParam(url=BROKEN_URL, code="broken", base=("Patient",), type="token",
                         expression="Patient.name.where(")
    with caplog.at_level(logging.WARNING, logger="fhir_server.search.registry"):
        registry = SearchParameterRegistry([broken])
    (record,) = [r for r in caplog.records if BROKEN_URL in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "(broken)" in record.getMessage()
    assert "Patient.name.where(" in record.getMessage()
    assert registry.branches(broken, "Patient") == []


def test_an_evaluation_error_is_logged_once_and_the_other_parameters_are_still_extracted(
        caplog: pytest.LogCaptureFixture) -> None:
    registry = SearchParameterRegistry([
        SearchParam(url="https://example.org/SearchParameter/gender", code="gender", base=("Patient",),
                    type="token", expression="Patient.gender"),
        # a date compared with a number: FHIRPath refuses it at run time, on data only
        SearchParam(url=BROKEN_URL, code="broken", base=("Patient",), type="token",
                    expression="Patient.birthDate > 5"),
    ])
    patients = [{"resourceType": "Patient", "id": f"p{i}", "gender": "female", "birthDate": "1970-01-01"}
                for i in range(3)]
    with caplog.at_level(logging.DEBUG, logger="fhir_server.fhirpath"):
        extracted = [extract_index_values(registry, patient) for patient in patients]
    assert all(sp["gender"] == [{"c": "female"}] and "broken" not in sp for sp in extracted)
    records = [r for r in caplog.records if "Patient.birthDate > 5" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert BROKEN_URL in records[0].getMessage() and "Patient/p0" in records[0].getMessage()


def test_a_failing_branch_does_not_hide_the_other_branches() -> None:
    branches = compile_expression("Patient.birthDate > 5 | Patient.gender", "Patient")
    patient = {"resourceType": "Patient", "gender": "male", "birthDate": "1970"}
    assert evaluate(branches, patient) == [("male", None)]

