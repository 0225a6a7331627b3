"""The engine's syntax check, model-aware navigation, failure reports, and its place in the layers."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

import fhir_server.fhirpath
from fhir_server.fhirpath import Expression, FhirPathSyntaxError

CONCEPT_MAP = {"resourceType": "ConceptMap", "sourceCanonical": "http://example.org/vs"}


@pytest.mark.parametrize("text", ["Patient.name)", "Patient.name.where(", "a b", "Patient..name", "", "  "])
def test_text_that_is_not_fhirpath_is_refused_not_repaired(text: str) -> None:
    # fhirpathpy's own parser recovers silently: "Patient.name)" would evaluate as "Patient.name"
    with pytest.raises(FhirPathSyntaxError):
        Expression(text)


def test_of_type_on_a_choice_selects_the_variant_the_json_name_says() -> None:
    as_uri = Expression("ConceptMap.source.ofType(uri)")
    as_canonical = Expression("ConceptMap.source.ofType(canonical)")
    assert as_uri.native and as_canonical.native
    assert as_uri.evaluate(CONCEPT_MAP, CONCEPT_MAP) == []
    assert as_canonical.evaluate(CONCEPT_MAP, CONCEPT_MAP) == ["http://example.org/vs"]


def test_members_after_of_type_use_the_chosen_type() -> None:
    obs = {"resourceType": "Observation", "valueCodeableConcept": {"text": "chronic"}}
    expr = Expression("Observation.value.ofType(CodeableConcept).text")
    assert expr.native
    assert expr.top_keys == frozenset({"valueCodeableConcept"})
    assert expr.evaluate(obs, obs) == ["chronic"]


def test_a_relative_path_is_resolved_from_the_focus_type_when_it_is_known() -> None:
    patient = {"resourceType": "Patient", "deceasedDateTime": "2020-01-01"}
    typed = Expression("deceased", focus_type="Patient")
    assert typed.top_keys == frozenset({"deceasedBoolean", "deceasedDateTime"})
    assert typed.evaluate(patient, patient) == ["2020-01-01"]
    assert Expression("deceased").top_keys is None  # found at run time, by name


def test_of_type_on_an_element_of_unknown_type_that_is_no_choice_defers_to_fhirpathpy() -> None:
    # "code" could be a choice code[x] or a plain element: with a plain "code" key only the model can tell
    obs = {"resourceType": "Observation", "code": {"text": "x"}, "valueQuantity": {"value": 1}}
    assert Expression("value.ofType(Quantity)").evaluate(obs, obs) == [{"value": 1}]
    expr = Expression("code.ofType(CodeableConcept)")
    assert expr.evaluate(obs, obs) == expr.slow(obs, obs)


def test_a_failure_is_logged_once_per_expression_then_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    expr = Expression("Patient.birthDate > 5")
    with caplog.at_level(logging.DEBUG, logger="fhir_server.fhirpath"):
        for _ in range(3):
            expr.log_failure(TypeError("date against number"), "Patient/p1", "nothing indexed")
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    message = caplog.records[0].getMessage()
    assert "Patient.birthDate > 5" in message and "Patient/p1" in message and "nothing indexed" in message


def test_the_engine_imports_no_search_validation_storage_or_api() -> None:
    """A kernel package: search and validation import it, never the reverse (function-level imports count). Its one
    import from elsewhere is UCUM (a code system, pure), which quantity comparisons convert units with."""
    package = Path(fhir_server.fhirpath.__file__).parent
    imported: set[str] = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    ours = {name for name in imported if name.startswith("fhir_server")}
    assert ours and all(name.startswith("fhir_server.fhirpath") or name == "fhir_server.terminology.ucum"
                        for name in ours), ours
