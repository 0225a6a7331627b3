"""The rule table's selectors compiled to plain walks (``validation.rules.plain_selector``) answer exactly as
the FHIRPath engine does (https://hl7.org/fhir/R4/fhirpath.html), on the registry's resources and on codings
with a system or a code missing, other systems, several codings, a reference instead of a concept."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import pytest

from fhir_server.fhirpath import expression, is_true
from fhir_server.validation.rules import load_rules, plain_selector, profiles_required_for
from tests.synthetic import registry_cohort

RULES = load_rules(Path(__file__).parents[2] / "profiles" / "rules.json")
SELECTING = [r for r in RULES if r.get("selector") not in (None, "true")]


@functools.cache
def cohort_resources() -> list[dict[str, Any]]:
    procedure = {"resourceType": "Procedure", "status": "completed", "subject": {"reference": "Patient/p"},
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": "71388002"}]}}  # none in the cohort
    return [e["resource"] for bundle, _ in registry_cohort(60) for e in bundle["entry"]] + [procedure]


def variants(resource: dict[str, Any], selector: str) -> list[dict[str, Any]]:
    """``resource`` and copies with its concept's codings changed in the ways a selector must tell apart (one
    of them coded as the selector's first system and code: the cohort has no transplant, no second line)."""
    out = [resource]
    key = next((k for k in ("code", "medicationCodeableConcept") if isinstance(resource.get(k), dict)), None)
    codings = resource[key].get("coding") if key else None
    if not codings:
        return out
    first = codings[0]
    for change in ({"system": None}, {"code": None}, {"system": "http://example.org/other"},
                   {"code": "not-a-code"}):
        changed = copy.deepcopy(resource)
        coding = {k: v for k, v in {**first, **change}.items() if v is not None}
        changed[key]["coding"] = [coding]
        out.append(changed)
    two = copy.deepcopy(resource)
    two[key]["coding"] = [{"system": "http://example.org/other", "code": "x"}, first]
    out.append(two)
    system, code = (re.search(rf"{field} = '([^']*)'", selector) for field in ("system", "code"))
    if system and code:
        selected = copy.deepcopy(resource)
        selected[key]["coding"] = [{"system": system.group(1), "code": code.group(1)}]
        out.append(selected)
    if key == "medicationCodeableConcept":
        out.append({**{k: v for k, v in resource.items() if k != key}, "medicationReference": {"reference": "#m"}})
    return out


def test_every_selector_of_the_registry_is_compiled() -> None:
    assert all(plain_selector(r["resourceType"], r["selector"]) is not None for r in SELECTING)


@pytest.mark.parametrize("rule", SELECTING, ids=lambda r: r["profile"].rsplit("/", 1)[-1])
def test_a_compiled_selector_answers_as_fhirpath(rule: dict[str, Any]) -> None:
    compiled = plain_selector(rule["resourceType"], rule["selector"])
    assert compiled is not None
    checked = selected = 0
    for resource in cohort_resources():
        if resource["resourceType"] != rule["resourceType"]:
            continue
        for variant in variants(resource, rule["selector"]):
            expected = is_true(expression(rule["selector"]).evaluate(variant, variant))
            assert compiled(variant) == expected, (rule["selector"], variant)
            checked += 1
            selected += expected
    assert checked and selected, "the cohort should hold resources this rule selects"


@pytest.mark.parametrize("text", [
    "code.coding.where(system = 'a').exists() and true",  # more than the shape
    "code.coding.where(system = 'a' xor code = 'b').exists()",
    "code.coding.where(not(system = 'a')).exists()",
    "code.coding.where(system = 'it''s').exists()",
    "noSuchElement.coding.where(system = 'a').exists()",
    "code.coding.where((system = 'a').exists()",
])
def test_other_selectors_are_left_to_fhirpath(text: str) -> None:
    assert plain_selector("Observation", text) is None


@pytest.mark.parametrize("text", ["name.where(given = 'Ann').exists()",
                                  "name.where(given = 'Ann' or given = 'Bo' or family = 'X').exists()"])
@pytest.mark.parametrize("name", [["Ann"], ["Ann", "Bo"], ["Bo"], "Ann", None, [{"a": 1}]])
def test_a_repeating_field_compares_as_a_fhirpath_collection(text: str, name: Any) -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "X"} if name is None else {"given": name}]}
    compiled = plain_selector("Patient", text)
    assert compiled is not None
    assert compiled(patient) == is_true(expression(text).evaluate(patient, patient))


def test_an_uncompiled_selector_still_selects() -> None:
    rules = [{"resourceType": "Observation", "selector": "status = 'final'", "profile": "http://x/p"}]
    assert profiles_required_for({"resourceType": "Observation", "status": "final"}, rules) == ["http://x/p"]
    assert profiles_required_for({"resourceType": "Observation", "status": "draft"}, rules) == []
