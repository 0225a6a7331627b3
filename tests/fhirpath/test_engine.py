"""The native FHIRPath subset agrees with fhirpathpy on every registry invariant and rule selector."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fhir_server.fhirpath import Expression, expression, is_true
from fhir_server.validation.rules import load_rules
from tests.validation.registry_data import CONCEPTS, REASON, all_resources, concept

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def registry_expressions() -> list[tuple[str, str]]:
    """(expression, element path) of every profile invariant and (selector, resource type) of every rule."""
    out = []
    for p in sorted(PROFILES.glob("StructureDefinition-*.json")):
        sd = json.loads(p.read_text())
        for element in sd["differential"]["element"]:
            for c in element.get("constraint", []):
                out.append((c["expression"], element["path"]))
    out += [(r["selector"], r["resourceType"]) for r in load_rules(PROFILES / "rules.json")]
    return out


def focuses(resource: dict[str, Any], path: str) -> list[Any]:
    """Values at a simple element path (``Observation.component.value[x]``) of a resource."""
    items: list[Any] = [resource]
    for part in path.split(".")[1:]:
        nxt: list[Any] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            keys = [k for k in item if k.startswith(part[:-3])] if part.endswith("[x]") else [part]
            for k in keys:
                v = item.get(k)
                nxt.extend(v if isinstance(v, list) else [v] if v is not None else [])
        items = nxt
    return items


def variants() -> list[dict[str, Any]]:
    base = all_resources()
    out = list(base.values())
    reg = json.loads(json.dumps(base["registration"]))
    reg["valueCodeableConcept"] = concept(REASON, "toxicity")
    out.append(json.loads(json.dumps(reg)))
    reg["component"] += [{"code": concept(CONCEPTS, "toxicity-grade"), "valueInteger": 9}]
    out.append(reg)
    stopped = json.loads(json.dumps(base["imatinib"]))
    stopped["status"] = "completed"
    stopped["effectivePeriod"].pop("end")
    out.append(stopped)
    return out


CASES = [(expr, path, r) for expr, path in registry_expressions() for r in variants()
         if r["resourceType"] == path.split(".")[0]]


def test_all_registry_expressions_are_native() -> None:
    assert [e for e, _ in registry_expressions() if not expression(e).native] == []


@pytest.mark.parametrize(("text", "path", "resource"), CASES)
def test_native_agrees_with_fhirpathpy(text: str, path: str, resource: dict[str, Any]) -> None:
    expr = Expression(text)
    type_path = path.replace("[x]", "")
    for focus in focuses(resource, path):
        try:
            slow = expr.slow(focus, resource, type_path)
        except Exception:
            # e.g. a slice's invariant on another slice's value: both paths must refuse it
            with pytest.raises(Exception):  # noqa: B017
                expr.evaluate(focus, resource, type_path)
            continue
        assert is_true(expr.evaluate(focus, resource, type_path)) == is_true(slow), (text, focus)


@pytest.mark.parametrize(("text", "expected"), [
    ("true and {}", []), ("false and {}", [False]), ("true or {}", [True]), ("{} implies false", []),
    ("false implies {}", [True]), ("(1 | 2 | 2).count()", [2]), ("'a' in ('a' | 'b')", [True]),
    ("('a' | 'b') contains 'c'", [False]), ("-1 < 2.5", [True]), ("{}.empty()", [True]),
])
def test_logic_and_collections(text: str, expected: list[Any]) -> None:
    assert expression(text).evaluate({}, {}) == expected


def test_choice_types_resolve_without_a_model() -> None:
    obs = {"resourceType": "Observation", "valueQuantity": {"value": Decimal("4.5"), "code": "cm"}}
    assert expression("Observation.value.code = 'cm'").evaluate(obs, obs) == [True]
    assert expression("value.value > 4").evaluate(obs, obs) == [True]


def test_unsupported_constructs_fall_back_to_fhirpathpy() -> None:
    expr = expression("effective.ofType(dateTime) >= @2003-01-01")
    assert not expr.native
    obs = {"resourceType": "Observation", "effectiveDateTime": "2003-05-20"}
    assert expr.evaluate(obs, obs) == [True]


def test_runtime_fallback_for_dates() -> None:
    expr = expression("effective > '2003'")  # string ordering is not native: fhirpathpy decides
    obs = {"resourceType": "Observation", "effectiveDateTime": "2003-05-20"}
    assert expr.native
    assert expr.evaluate(obs, obs) == expr.slow(obs, obs)


def test_type_operators_on_a_primitive_focus_use_its_fhir_type() -> None:
    # vs-1 (vitalsigns): a bare JSON string is not known to be a dateTime; the validator passes the type
    expr = expression("($this as dateTime).toString().length() >= 8")
    obs = {"resourceType": "Observation", "effectiveDateTime": "2020-03"}
    assert expr.evaluate("2020-03", obs) == []
    assert expr.evaluate("2020-03", obs, "Observation.effective", "dateTime") == [False]
    assert expr.evaluate("2020-03-01", obs, "Observation.effective", "dateTime") == [True]
    assert expr.evaluate("2020-03-01", obs, "Observation.effective", "date") == []


PROSPECTIVE = "https://cml-registry.eu/fhir/StructureDefinition/prospective-study"
TIM_9 = "offset.empty() or (when.exists() and when.select($this in ('C' | 'CM' | 'CD' | 'CV')).allFalse())"


@pytest.mark.parametrize("text", [f"Patient.extension('{PROSPECTIVE}').value", TIM_9, "when.select($this = 'C')",
                                  "(true | false).allTrue()", "{}.allFalse()"])
def test_extension_select_all_true_and_all_false_are_native(text: str) -> None:
    # the registry's prospective-study SearchParameter and R4's tim-9, evaluated on every Patient and dosage
    assert expression(text).native


@pytest.mark.parametrize("patient", [
    {"resourceType": "Patient"},
    {"resourceType": "Patient", "extension": [{"url": PROSPECTIVE, "valueBoolean": True}]},
    {"resourceType": "Patient", "extension": [{"url": "other", "valueString": "x"},
                                              {"url": PROSPECTIVE, "valueBoolean": False}]},
    {"resourceType": "Patient", "extension": [{"url": "other", "valueString": "x"}]},
    {"resourceType": "Patient", "birthDate": "1970", "_birthDate": {"extension": [{"url": PROSPECTIVE}]}},
])
def test_extension_agrees_with_fhirpathpy(patient: dict[str, Any]) -> None:
    expr = Expression(f"Patient.extension('{PROSPECTIVE}').value")
    assert expr.evaluate(patient, patient) == expr.slow(patient, patient)


def test_extension_keeps_every_extension_of_the_url() -> None:
    # fhirpath.html#functions: a shortcut for .extension.where(url = ...); fhirpathpy 2.x keeps the first only
    patient = {"resourceType": "Patient",
               "extension": [{"url": "u", "valueInteger": 1}, {"url": "u", "valueInteger": 2}]}
    assert expression("Patient.extension('u').value").evaluate(patient, patient) == [1, 2]
    assert expression("Patient.extension('u').value").evaluate(patient, patient) == \
        expression("Patient.extension.where(url = 'u').value").slow(patient, patient)


@pytest.mark.parametrize("repeat", [{}, {"offset": 30}, {"offset": 30, "when": ["C"]}, {"offset": 30, "when": ["MORN"]},
                                    {"offset": 30, "when": ["MORN", "CV"]}, {"when": ["CD"]}])
def test_tim_9_agrees_with_fhirpathpy(repeat: dict[str, Any]) -> None:
    expr = Expression(TIM_9)
    assert expr.evaluate(repeat, {}) == expr.slow(repeat, {}, "Timing.repeat")


def test_all_false_of_items_that_are_not_booleans_is_left_to_fhirpathpy() -> None:
    expr = expression("when.allFalse()")
    with pytest.raises(TypeError):  # fhirpathpy's answer: an error (a broken invariant is then a warning)
        expr.evaluate({"when": ["C"]}, {}, "Timing.repeat")
