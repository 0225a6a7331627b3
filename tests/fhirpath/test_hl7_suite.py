"""HL7's FHIRPath test suite for R4, run against the server's FHIRPath engine.

The engine decides, on every write, whether a resource keeps R4's invariants and the registry's profiles, which rule
applies to it and what its search parameters index; a wrong answer stores a bad resource or refuses a good one. The
suite (https://github.com/HL7/FHIRPath, ``tests/r4/tests-fhir-r4.xml``) is the FHIRPath authors' own: each case is
run through :class:`fhir_server.fhirpath.Expression` as the server runs it (the native subset, fhirpathpy for the
rest), and separately through the native subset alone, which must never disagree with the suite.

Cases not run, where the suite contradicts the FHIRPath specification (N1, https://hl7.org/fhirpath/N1/), and where
fhirpathpy (the fallback) answers otherwise are listed below with the reason; the fhirpathpy ones are strict xfails,
so an upgrade that fixes one makes the list shorter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest.mock import patch

import pytest

from fhir_server.fhirpath import Expression, Unsupported
from tests.fhirpath.hl7_suite import INPUT_FILES, Item, SuiteCase, load_cases, observed

CASES = load_cases()


def not_run_reason(case: SuiteCase) -> str | None:
    if case.strict:
        return "strict mode: the engine does not type-check expressions against the model before running them"
    if case.inputfile not in INPUT_FILES:
        return f"{case.inputfile} is not among the R4 examples the repository holds"
    if '%"' in case.expression:
        return "%\"name\" is not FHIRPath N1 grammar (an external constant is %name, %`name` or %'name')"
    return None


# Where the suite's expected output contradicts the specification, the answer the specification gives.
SUITE_ERRATA: dict[str, tuple[str, Callable[[SuiteCase], list[Item]]]] = {
    "({} implies true).empty()": (
        "N1 6.5.5: {} implies true is true (the truth table's empty row), so .empty() is false",
        lambda case: [("boolean", "false")]),
    **{text: ("N1 5.2 ofType(): the Patient itself; the suite lists the boolean true for it",
              lambda case: observed([case.resource()]))
       for text in ("Patient.ofType(Patient)", "Patient.ofType(FHIR.Patient)", "Patient.ofType(FHIR.`Patient`)")},
}

_DATE_LITERAL = "fhirpathpy 2.2.4: convertsToDateTime()/convertsToTime() of a date or time literal is false"
_DATE_PRECISION = "fhirpathpy 2.2.4: a date against a dateTime gives empty (the suite: not equal, equivalent)"
_QUANTITY = "fhirpathpy 2.2.4: arithmetic on quantities, and toString() of a calendar duration"
_TO_STRING = "fhirpathpy 2.2.4: toString() of a decimal or boolean literal prints Python's text (1, True)"
_EMPTY_EQUIVALENCE = "fhirpathpy 2.2.4: {} ~ {} is true (the suite: empty)"
_SET_EQUIVALENCE = "fhirpathpy 2.2.4: ~ of collections compares them in order (the suite: as sets)"
_SINGLETON = "fhirpathpy 2.2.4: a collection of several items in a boolean context is not an error"
FHIRPATHPY_GAPS: dict[str, str] = {
    **dict.fromkeys([
        "@2015-02-04.convertsToDateTime()", "@2015-02-04T14:34:28.convertsToDateTime()",
        "@2015-02-04T14:34:28.123.convertsToDateTime()", "@2015-02-04T14:34:28Z.convertsToDateTime()",
        "@2015-02-04T14:34:28+10:00.convertsToDateTime()", "@T14:34:28.convertsToTime()",
        "@T14:34:28.123.convertsToTime()", "@T14:34:28Z.convertsToTime()", "@T14:34:28+10:00.convertsToTime()",
    ], _DATE_LITERAL),
    **dict.fromkeys([
        "Patient.birthDate != @1974-12-25T12:34:00", "@2012-04-15 = @2012-04-15T10:00:00",
        "@2012-04-15 != @2012-04-15T10:00:00", "@2012-04-15 ~ @2012-04-15T10:00:00",
        "@2012-04-15 !~ @2012-04-15T10:00:00",
    ], _DATE_PRECISION),
    **dict.fromkeys([
        "1 week.toString()", "2.0 'cm' * 2.0 'm' = 0.040 'm2'"], _QUANTITY),
    **dict.fromkeys(["1.0.toString()", "true.toString()", "0.0.toString() = '0.0'"], _TO_STRING),
    **dict.fromkeys(["{} ~ {}", "{} !~ {}"], _EMPTY_EQUIVALENCE),
    **dict.fromkeys([
        "name.take(2).given ~ name.take(2).last().given | name.take(2).first().given",
        "name.take(2).given !~ name.take(2).last().given | name.take(2).first().given",
    ], _SET_EQUIVALENCE),
    **dict.fromkeys(["(1|2).not() = false", "iif(1 | 2 | 3, true, false)", "Patient.name.single().exists()"],
                    _SINGLETON),
    "1.0.is(Decimal)": "fhirpathpy 2.2.4: a decimal literal with a zero fraction is an Integer",
    "1.2 / 1.8 = 0.67": "fhirpathpy 2.2.4: = of decimals does not round to the less precise operand",
    "Patient.ofType(System.Patient).not()": "fhirpathpy 2.2.4: ofType(System.Patient) is not empty",
    "conformsTo('http://hl7.org/fhir/StructureDefinition/Patient')": "fhirpathpy 2.2.4: no conformsTo()",
    "conformsTo('http://hl7.org/fhir/StructureDefinition/Person')": "fhirpathpy 2.2.4: no conformsTo()",
}


def expected(case: SuiteCase) -> list[Item]:
    if case.expression in SUITE_ERRATA:
        return SUITE_ERRATA[case.expression][1](case)
    return list(case.outputs)


def answer(case: SuiteCase, evaluate: Callable[[Expression, dict[str, Any]], list[Any]]) -> list[Item] | Exception:
    """What ``evaluate`` makes of the case: its result in the suite's terms, or the error it raised."""
    try:
        expr = Expression(case.expression)
        resource = case.resource()
        result = evaluate(expr, resource)
    except Unsupported:
        raise
    except Exception as error:  # any error is an answer: the suite's invalid cases expect one
        return error
    return [("boolean", "true" if result else "false")] if case.predicate else observed(result)


def is_right(case: SuiteCase, got: list[Item] | Exception) -> bool:
    if case.invalid is not None:  # an error; a semantic error may also surface as the empty collection
        return isinstance(got, Exception) or (case.invalid == "semantic" and got == [])
    return got == expected(case)


def engine(expr: Expression, resource: dict[str, Any]) -> list[Any]:
    return expr.evaluate(resource, resource, resource["resourceType"])


def native_only(expr: Expression, resource: dict[str, Any]) -> list[Any]:
    """The native subset's answer; Unsupported where it hands the expression (or this evaluation) to fhirpathpy."""
    if not expr.native:
        raise Unsupported(expr.unsupported)
    with patch.object(expr, "slow", side_effect=Unsupported(f"{expr.text}: left to fhirpathpy")):
        return engine(expr, resource)


RUN = [c for c in CASES if not_run_reason(c) is None]


def _marks(case: SuiteCase) -> list[pytest.MarkDecorator]:
    if case.expression in FHIRPATHPY_GAPS:
        return [pytest.mark.xfail(strict=True, reason=FHIRPATHPY_GAPS[case.expression])]
    return []


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in RUN])
def test_engine_answers_as_the_hl7_fhirpath_suite(case: SuiteCase) -> None:
    got = answer(case, engine)
    assert is_right(case, got), (case.expression, got, expected(case))


def test_native_subset_never_disagrees_with_the_suite() -> None:
    answered, wrong = 0, []
    for case in RUN:
        try:
            got = answer(case, native_only)
        except Unsupported:
            continue  # fhirpathpy's case: the test above
        answered += 1
        if not is_right(case, got):
            wrong.append((case.id, case.expression, got, expected(case)))
    assert wrong == []
    assert answered > len(RUN) // 3  # not vacuous: the native subset answers a good part of the suite


def test_native_subset_reads_extensions_of_primitives() -> None:
    # birthDate.extension is in _birthDate, out of reach of the birthDate string: the native subset must not
    # answer "no extension" (suite case testExtension), it hands the evaluation to fhirpathpy
    case = next(c for c in RUN if c.expression.startswith("Patient.birthDate.extension('"))
    with pytest.raises(Unsupported):
        answer(case, native_only)
    assert answer(case, engine) == [("boolean", "true")]


def test_suite_cases_not_run_are_few_and_named() -> None:
    skipped = {c.id: not_run_reason(c) for c in CASES if not_run_reason(c) is not None}
    assert len(CASES) == 578 and len(skipped) == 8, skipped
    assert not set(SUITE_ERRATA) & set(FHIRPATHPY_GAPS)
    assert set(SUITE_ERRATA) | set(FHIRPATHPY_GAPS) <= {c.expression for c in RUN}
