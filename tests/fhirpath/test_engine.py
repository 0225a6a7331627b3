"""The native FHIRPath subset agrees with fhirpathpy on every registry invariant and rule selector."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest

from fhir_server.fhirpath import Expression, Unsupported, expression, is_true
from fhir_server.fhirpath.compiler import _date_order
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


# --- the R4 core invariants' functions and operators (validation evaluates them on every write) -------------------
def native(expr: Expression, focus: Any, resource: Any, type_path: str | None = None) -> list[Any]:
    """``expr``'s native answer: evaluate() with the fhirpathpy fallback replaced by Unsupported, so that a native
    refusal at run time surfaces instead of being answered by fhirpathpy."""
    assert expr.native, expr.unsupported
    with patch.object(expr, "slow", side_effect=Unsupported(f"{expr.text}: left to fhirpathpy")):
        return expr.evaluate(focus, resource, type_path)


PATIENTS: list[dict[str, Any]] = [
    {"resourceType": "Patient"},
    {"resourceType": "Patient", "id": "p1", "gender": "female", "name": [{"family": "Smith", "given": ["Sam"]}]},
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "Lee", "given": ["Bo", "Ann", "Bo"], "suffix": ["Jr"]}],
     "telecom": [{"system": "phone", "value": "1"}, {"system": "phone", "value": "1"},
                 {"system": "email", "value": "a@b"}]},
    {"resourceType": "Patient", "active": True, "multipleBirthInteger": 2,
     "name": [{"given": ["Cy"]}, {"family": "Ng"}]},
]

AGREEING = [
    # string functions: empty input -> empty, several items -> an error (native: left to fhirpathpy, which raises)
    "name.family.startsWith('Sm')", "name.family.endsWith('ee')", "name.family.contains('mit')",
    "name.family.startsWith('')", "id.contains('')", "name.given.startsWith('B')", "gender.upper() = 'FEMALE'",
    "name.family.substring(1)", "name.family.substring(1, 2)", "name.family.substring(2, 9)",
    "name.family.substring(5)", "name.family.substring(0, 0)", "name.family.length()", "name.family.upper()",
    "name.family.lower()", "name.given.select(substring(0, 1).lower())",
    "name.given.where(startsWith('A') or endsWith('o'))",
    # a value argument is evaluated on $this (the Patient here), not on the function's input
    "name.given.first().startsWith(name.family.substring(0, 1))",
    # collections (equality as =; complex values compare as JSON)
    "name.given.distinct()", "name.given.isDistinct()", "telecom.distinct().count()", "telecom.isDistinct()",
    "name.given.intersect('Ann' | 'Bo' | 'Zed')", "name.given.exclude('Bo')", "name.given.combine(name.family)",
    "name.given.combine(name.given).count()", "telecom.intersect(telecom.where(system = 'phone'))",
    "telecom.exclude(telecom.where(system = 'email')).value", "(1 | 2 | 3).exclude(2 | 4)", "(1 | 2).combine(2 | 3)",
    "name.given.tail()", "telecom.tail().value",
    # all(): true for an empty collection
    "name.all(family.exists())", "name.given.all($this.startsWith('A') or $this = 'Bo')",
    "telecom.all(system = 'phone')", "name.given.all(length() > 1)",
    # xor
    "name.exists() xor gender.exists()", "gender.exists() xor telecom.exists()", "active xor true",
    # + - &
    "name.given.count() + telecom.count()", "telecom.count() - name.count()", "multipleBirthInteger + 1.5",
    "1 + 2.5 - 0.5", "name.family + ', ' + name.given.first()", "name.family & '/' & name.suffix",
    "name.family + name.suffix", "name.given + 'x'",
    # constants, trace, iif, toInteger, children
    "%ucum", "gender.trace('gender') = 'female'", "name.trace('names', given).family",
    "iif(gender.exists(), gender, 'unknown')", "iif(name.exists(), name.count())",
    "name.given.select(iif($this = 'Bo', 1, 0))", "'12'.toInteger()", "'-3'.toInteger()", "'1.5'.toInteger()",
    "true.toInteger()", "(5).toInteger()", "Patient.multipleBirth.ofType(integer).toInteger()",
    "name.children()", "name.children().count()", "telecom.first().children()",
]


@pytest.mark.parametrize("text", AGREEING)
@pytest.mark.parametrize("patient", PATIENTS, ids=["empty", "one-name", "several-givens", "two-names"])
def test_new_native_functions_agree_with_fhirpathpy(text: str, patient: dict[str, Any]) -> None:
    expr = Expression(text)
    try:
        slow = expr.slow(patient, patient)
    except Exception:  # an error in the spec's terms (several items where one is expected): both refuse
        with pytest.raises(Unsupported):
            native(expr, patient, patient)
        return
    assert native(expr, patient, patient) == slow


@pytest.mark.parametrize(("text", "expected"), [
    # https://hl7.org/fhirpath/N1/ examples and tables
    ("'abcdefg'.substring(3)", ["defg"]), ("'abcdefg'.substring(1, 2)", ["bc"]), ("'abcdefg'.substring(6, 2)", ["g"]),
    ("'abcdefg'.substring(7, 1)", []), ("{}.substring(1)", []), ("'abc'.substring({})", []),
    ("'abc'.contains('bc')", [True]), ("'abc'.contains('d')", [False]), ("'abc'.contains({})", []),
    ("''.startsWith('')", [True]), ("''.endsWith('')", [True]), ("'abc'.endsWith('abc')", [True]),
    ("'AbC'.upper()", ["ABC"]), ("'AbC'.lower()", ["abc"]), ("''.length()", [0]), ("'\\u0041b'", ["Ab"]),
    ("'ABC' + 'DEF'", ["ABCDEF"]), ("'ABC' + {} + 'DEF'", []), ("'ABC' & 'DEF'", ["ABCDEF"]),
    ("'ABC' & {} & 'DEF'", ["ABCDEF"]), ("2 + 3", [5]), ("2 - 3.5", [Decimal("-1.5")]), ("{} - 1", []),
    ("true xor true", [False]), ("true xor false", [True]), ("false xor true", [True]), ("false xor false", [False]),
    ("true xor {}", []), ("{} xor false", []), ("{} xor {}", []),
    ("(1 | 2).intersect(2 | 3)", [2]), ("(1 | 2).intersect({})", []), ("{}.exclude(1)", []),
    ("(1).combine(1.0).distinct()", [1]), ("(1).combine(1).isDistinct()", [False]), ("{}.isDistinct()", [True]),
    ("{}.distinct()", []), ("{}.combine(1 | 2)", [1, 2]), ("{}.all(false)", [True]),
    ("(1 | 2).all($this > 1)", [False]),
    ("%ucum", ["http://unitsofmeasure.org"]), ("%sct", ["http://snomed.info/sct"]), ("%loinc", ["http://loinc.org"]),
    ("iif(true, 1, 2)", [1]), ("iif({}, 1, 2)", [2]), ("iif(false, 1)", []), ("iif(true, 1, 1 + 'a')", [1]),
    ("'+7'.toInteger()", [7]), ("'x'.toInteger()", []), ("false.toInteger()", [0]), ("{}.toInteger()", []),
    ("(1 | 2).trace('x')", [1, 2]), ("'a'.children()", []),
])
def test_new_native_functions_follow_the_spec(text: str, expected: list[Any]) -> None:
    # some of these differ from fhirpathpy (''.startsWith('') is false there, 'abc'.contains({}) raises, 1 and
    # 1.0 stay distinct): the native answer is the spec's
    assert native(Expression(text), {}, {}) == expected


def test_children_of_a_resource_are_its_elements() -> None:
    # resourceType names the type and is no element (fhirpathpy counts it)
    patient = PATIENTS[2]
    expr = Expression("children()")
    assert native(expr, patient, patient) == [patient["id"], patient["name"][0], *patient["telecom"]]
    assert [v for v in expr.slow(patient, patient) if v != "Patient"] == native(expr, patient, patient)


def test_trace_keeps_navigation_one_walk() -> None:
    assert expression("Patient.name.trace('n').given").top_keys == frozenset({"name"})


@pytest.mark.parametrize(("text", "resource"), [
    # dateTimes at different offsets may be equal, dates of different precision are neither equal nor unequal
    ("'2012-01-01T10:00:00Z' = '2012-01-01T11:00:00+01:00'", {}), ("'2012'.combine('2012-01').isDistinct()", {}),
    ("birthDate + 'x'", {"resourceType": "Patient", "birthDate": "1970-01-02"}),  # Date + String is no concatenation
    ("'2012'.toInteger()", {}),  # a year's toInteger() is empty, a string's is 2012
    ("multipleBirthInteger.toInteger()", PATIENTS[3]),  # a JSON number of unknown FHIR type (an integer? a decimal?)
    ("(1 | 'a')", {}), ("true in (1 | 2)", {}), ("(1 | 2).all($this)", {}),  # mixed types, a non-boolean criteria
    ("children()", {"resourceType": "Patient", "birthDate": "1970", "_birthDate": {"id": "b"}}),  # primitive's id
    ("{}.iif(true, 1)", {}), ("'abc'.substring(1, {})", {}), ("'abc'.substring(0, -1)", {}),
    ("name.startsWith('a')", PATIENTS[1]), ("1.5 + 'a'", {}),
    ("name.given.toInteger()", PATIENTS[2]),  # several items: an error in the spec, empty in fhirpathpy
])
def test_subtle_cases_are_left_to_fhirpathpy(text: str, resource: dict[str, Any]) -> None:
    expr = Expression(text)
    with pytest.raises(Unsupported):
        native(expr, resource, resource)


def test_fallback_answers_what_native_refuses() -> None:
    expr = expression("'2012-01-01T10:00:00Z' = '2012-01-01T10:00:00Z'.combine('x').first()")
    assert expr.evaluate({}, {}) == [True]  # identical strings are equal dates: native
    expr = Expression("'2012'.toInteger()")
    assert expr.evaluate({}, {}) == expr.slow({}, {}) == [2012]


REF_1 = ("reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
         "%rootResource.contained.id.trace('ids'))")
OBS_7 = "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()"
RAT_1 = "(numerator.empty() xor denominator.exists()) and (numerator.exists() or extension.exists())"
AGE_1 = ("(code.exists() or value.empty()) and (system.empty() or system = %ucum) and (value.empty() or "
         "value.hasValue().not() or value > 0)")
ORG_1 = "(identifier.count() + name.count()) > 0"
UCUM = "http://unitsofmeasure.org"
ORG = {"resourceType": "Organization", "id": "org", "name": "Hospital"}
LOINC_HB = {"system": "http://loinc.org", "code": "718-7"}
LOINC_HCT = {"system": "http://loinc.org", "code": "4544-3"}


def _patient(reference: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "contained": [ORG], "managingOrganization": {"reference": reference}}


def _observation(value: bool, component_code: dict[str, Any]) -> dict[str, Any]:
    obs: dict[str, Any] = {"resourceType": "Observation", "status": "final", "code": {"coding": [LOINC_HB]},
                           "component": [{"code": {"coding": [component_code]}, "valueString": "x"}]}
    if value:
        obs["valueQuantity"] = {"value": Decimal("13.5"), "unit": "g/dL"}
    return obs


def _on(resource: dict[str, Any], element: str) -> tuple[Any, dict[str, Any]]:
    return resource[element], resource


INVARIANTS = [
    # (expression, focus, resource, type path, holds)
    (REF_1, *_on(_patient("#org"), "managingOrganization"), "Reference", True),
    (REF_1, *_on(_patient("Organization/1"), "managingOrganization"), "Reference", True),
    (REF_1, *_on(_patient("#other"), "managingOrganization"), "Reference", False),
    (OBS_7, _observation(True, LOINC_HCT), _observation(True, LOINC_HCT), None, True),
    (OBS_7, _observation(False, LOINC_HB), _observation(False, LOINC_HB), None, True),
    (OBS_7, _observation(True, LOINC_HB), _observation(True, LOINC_HB), None, False),
    (RAT_1, {"numerator": {"value": 1}, "denominator": {"value": 2}}, {}, "Ratio", True),
    (RAT_1, {"extension": [{"url": "u", "valueString": "x"}]}, {}, "Ratio", True),
    (RAT_1, {"numerator": {"value": 1}}, {}, "Ratio", False),
    (RAT_1, {}, {}, "Ratio", False),
    (AGE_1, {"value": 45, "system": UCUM, "code": "a"}, {}, "Age", True),
    (AGE_1, {"value": Decimal("0.5"), "system": UCUM, "code": "a"}, {}, "Age", True),
    (AGE_1, {"value": -1, "system": UCUM, "code": "a"}, {}, "Age", False),
    (AGE_1, {"value": 45, "system": "http://example.org/units"}, {}, "Age", False),
    (ORG_1, ORG, ORG, None, True),
    (ORG_1, {"resourceType": "Organization", "identifier": [{"value": "1"}, {"value": "2"}]}, None, None, True),
    (ORG_1, {"resourceType": "Organization", "active": True}, None, None, False),
]


@pytest.mark.parametrize(("text", "focus", "resource", "type_path", "holds"), INVARIANTS)
def test_r4_invariants_are_native_and_agree_with_fhirpathpy(text: str, focus: Any, resource: Any,
                                                            type_path: str | None, holds: bool) -> None:
    resource = focus if resource is None else resource
    expr = Expression(text)
    result = native(expr, focus, resource, type_path)
    # fhirpathpy has no hasValue(); on a JSON number (Quantity.value) it is exists()
    slow = Expression(text.replace("hasValue()", "exists()")).slow(focus, resource, type_path)
    assert result == slow
    assert is_true(result) is holds


TST_5 = ("extension.exists() or (contentType.count() + expression.count() + headerField.count() + minimumId.count() + "
         "navigationLinks.count() + path.count() + requestMethod.count() + resource.count() + responseCode.count() + "
         "response.count()  + validateProfileId.count() <=1)")


@pytest.mark.parametrize(("assertion", "holds"), [
    ({"direction": "response", "operator": "in", "responseCode": "200,204", "warningOnly": False}, True),
    ({"response": "okay", "responseCode": "200", "warningOnly": False}, False),
])
def test_a_name_that_is_no_choice_element_reads_its_own_key_only(assertion: dict[str, Any], holds: bool) -> None:
    # on items of unknown type, navigation guesses that responseCode is a choice response[x]: response is no choice
    # element anywhere in R4, so the compiler reads the key response alone
    expr = Expression(TST_5)
    result = native(expr, assertion, {}, "TestScript.setup.action.assert")
    assert result == expr.slow(assertion, {}, "TestScript.setup.action.assert")
    assert is_true(result) is holds
    assert native(Expression("response.count()"), {"responseCode": "200"}, {}) == [0]
    assert expression("response.value").top_keys == frozenset({"response"})
    obs = {"resourceType": "Observation", "valueQuantity": {"value": 1}}
    assert native(Expression("value.ofType(Quantity).value"), obs, obs) == [1]  # a choice name is still guessed
    assert native(Expression("contained.ofType(Patient)"), obs, obs) == []  # ofType narrows as it did


@pytest.mark.parametrize(("start", "end", "holds"), [
    ("2020-01-01", "2020-02-01", True),
    ("2020-02-01", "2020-01-01", False),
    ("2020-02", "2020-01-15", False),  # February ends after 15 January: before it whatever the precisions
    ("2020", "2020", True),
    ("2020-01-01T10:00:00Z", "2020-01-01T11:00:00+02:00", False),  # 11:00+02:00 is 09:00Z
    ("2020-01-01T10:00:00+01:00", "2020-01-01T09:30:00Z", True),
])
def test_per_1_orders_dates_and_datetimes_natively(start: str, end: str, holds: bool) -> None:
    """per-1 (Period): ``start <= end`` on two dateTimes, compared as the instants or ranges they name."""
    expr = expression("start.hasValue().not() or end.hasValue().not() or (start <= end)")
    period = {"start": start, "end": end}
    assert expr.native
    assert expr.evaluate(period, {"resourceType": "Encounter", "period": period}, "Period") == [holds]


@pytest.mark.parametrize(("start", "end"), [
    ("2020-01", "2020-01-15"),  # the same month, of strings not known to be dates: left to fhirpathpy
    ("2020-01-01", "2020-01-01T10:00:00Z"),  # a date beside a time with its zone
    ("10:00:00", "11:00:00"),  # times
    ("2020-01-01T10:00:00.5Z", "2020-01-01T10:00:01Z"),  # fractional seconds
])
def test_date_orderings_the_native_code_does_not_decide_are_unsupported(start: str, end: str) -> None:
    with pytest.raises(Unsupported):
        _date_order(start, end)


@pytest.mark.parametrize(("start", "end"), [("2020-01-15", "2020-01"), ("2020-01", "2020-01-15"),
                                            ("2020", "2020-06-01")])
def test_per_1_compiled_for_period_leaves_dates_of_different_precision_unordered(start: str, end: str) -> None:
    # N1 comparison: the same up to the coarser precision is empty; start and end are dateTimes (the model says
    # so when the expression is compiled for Period), not strings to order as text ('2020-01-15' > '2020-01')
    per_1 = expression("start.hasValue().not() or end.hasValue().not() or (start <= end)", "Period")
    period = {"start": start, "end": end}
    assert native(per_1, period, {"resourceType": "Encounter", "period": period}, "Period") == []
    assert _date_order(start, end, dates=True) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("Patient.text.div", ["<div>x</div>"]),  # a member name after a dot (FHIR's patch test cases write it so)
    ("Patient.text.`div`", ["<div>x</div>"]),  # as R4's dom-6 writes it
    ("7 div 2", [3]),  # still the operators elsewhere
    ("7 mod 2", [1]),
])
def test_div_and_mod_after_a_dot_are_member_names(text: str, expected: list[Any]) -> None:
    patient = {"resourceType": "Patient", "text": {"status": "generated", "div": "<div>x</div>"}}
    assert Expression(text).evaluate(patient, patient, "Patient") == expected


@pytest.mark.parametrize(("text", "focus_type", "focus", "expected"), [
    # que-7 (as R5 reads it) and ras-2: the JSON name of a choice value says its type
    ("operator = 'exists' implies (answer is boolean)", "Questionnaire.item.enableWhen",
     {"operator": "exists", "answerBoolean": True}, [True]),
    ("operator = 'exists' implies (answer is boolean)", "Questionnaire.item.enableWhen",
     {"operator": "exists", "answerString": "y"}, [False]),
    ("probability is decimal implies (probability as decimal) <= 100", "RiskAssessment.prediction",
     {"probabilityDecimal": 150}, [False]),
    ("probability is decimal implies (probability as decimal) <= 100", "RiskAssessment.prediction",
     {"probabilityRange": {"low": {"value": 1}}}, [True]),
    ("probability is decimal", "RiskAssessment.prediction", {}, []),
    # as: the value of that type, typed: a date beside a dateTime of the same day is unordered (empty)
    ("recordedDate >= (onset as dateTime)", "Condition",
     {"resourceType": "Condition", "recordedDate": "2020-01", "onsetDateTime": "2020-01-15"}, []),
    ("recordedDate >= (onset as dateTime)", "Condition",
     {"resourceType": "Condition", "recordedDate": "2020-02", "onsetDateTime": "2020-01-15"}, [True]),
    ("(onset as dateTime)", "Condition", {"resourceType": "Condition", "onsetString": "spring"}, []),
])
def test_is_and_as_on_a_choice_element_are_native(text: str, focus_type: str, focus: dict[str, Any],
                                                  expected: list[Any]) -> None:
    assert native(expression(text, focus_type), focus, focus) == expected


@pytest.mark.parametrize(("text", "focus"), [
    ("value is Quantity", {"resourceType": "Observation", "valueAge": {"value": 1}}),  # Age is a Quantity too
    ("value as string", {"resourceType": "Observation", "valueString": "x"}),  # a code is a string too
    ("component.value is string", {"resourceType": "Observation",
                                   "component": [{"valueString": "a"}, {"valueString": "b"}]}),  # several items
    ("answer is System.Boolean", {"answerBoolean": True}),  # a qualified type
])
def test_is_and_as_the_native_subset_leaves_to_fhirpathpy(text: str, focus: dict[str, Any]) -> None:
    expr = expression(text, "Observation" if "resourceType" in focus else "Questionnaire.item.enableWhen")
    if expr.native:
        with pytest.raises(Unsupported):
            native(expr, focus, focus)


@pytest.mark.parametrize(("recorded", "onset", "equal"), [
    ("2020-01-15", "2020-01-15", [True]),
    ("2020-01", "2020-01-15", []),  # the same up to the coarser precision: unknown (N1 equality)
    ("2020-02", "2020-01-15", [False]),
    ("2020-01-15T10:00:00Z", "2020-01-15T11:00:00+01:00", [True]),  # the same instant
])
def test_equality_of_two_dates_of_the_model_is_the_equality_of_dates(recorded: str, onset: str,
                                                                     equal: list[Any]) -> None:
    condition = {"resourceType": "Condition", "recordedDate": recorded, "onsetDateTime": onset}
    expr = expression("recordedDate = (onset as dateTime)", "Condition")
    assert native(expr, condition, condition) == equal
    assert native(expression("recordedDate != (onset as dateTime)", "Condition"), condition, condition) == (
        [not equal[0]] if equal else [])
