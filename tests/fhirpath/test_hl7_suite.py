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
from tests.fhirpath.hl7_suite import INPUT_FILES, NO_INPUT, Item, SuiteCase, load_cases, observed, same_items

CASES = load_cases()


def not_run_reason(case: SuiteCase) -> str | None:
    if case.strict:
        return "strict mode: the engine does not type-check expressions against the model before running them"
    if case.version is not None:
        return f"a function of FHIRPath {case.version}, after N1 (2.0.0), the release FHIR R4 uses"
    if case.group in NEWER_FUNCTIONS:
        return NEWER_FUNCTIONS[case.group]
    if ".matchesFull(" in case.expression:
        return "matchesFull() is FHIRPath 2.1 (R5), after N1"
    if case.inputfile != NO_INPUT and case.inputfile not in INPUT_FILES:
        return f"{case.inputfile} is not among the R4 examples the repository holds"
    if "patient-age" in case.expression:
        return "the suite's observation-example.xml has a patient-age extension that R4's published example lacks"
    return None


# Groups testing functions that came after N1 without a version attribute (FHIRPath 2.1/3.0, as R5 uses).
NEWER_FUNCTIONS = {
    "LowBoundary": "lowBoundary() is FHIRPath 2.1 (R5), after N1",
    "HighBoundary": "highBoundary() is FHIRPath 2.1 (R5), after N1",
    "Comparable": "comparable() is FHIRPath 2.1 (R5), after N1",
    "Precision": "precision() is FHIRPath 2.1 (R5), after N1",
    "testSort": "sort() is FHIRPath 3.0, after N1",
}

# Where the engine answers otherwise on purpose, and what it answers.
LENIENCIES: dict[str, tuple[str, Callable[[SuiteCase], list[Item]]]] = {
    "Observation.valueQuantity.exists()": (
        "a choice element is also read by its JSON name (valueQuantity): expressions in the wild are written so",
        lambda case: [("boolean", "true")]),
}

# fhirpathpy (the fallback for what the native subset does not evaluate) answers these otherwise: strict xfails,
# so an upgrade that fixes one shows. None of these constructs is in R4's invariants, search parameters or the
# registry's profiles (those are all native, or answered right: tests/validation, tests/fhirpath/test_engine.py).
_PARSER = "the parser (fhirpathpy's ANTLR grammar) refuses a dateTime literal ending in T (@2015T)"
_DATE_TYPES = "fhirpathpy 2.2.4: a date literal is not of type Date for is(); a time literal may carry a zone"
_DATE_PRECISION = "fhirpathpy 2.2.4: dateTimes of different precision or zone compare as unequal, not empty"
_DATE_ARITHMETIC = "fhirpathpy 2.2.4: date arithmetic answers in UTC, not in the zone it was given"
_QUANTITY = "fhirpathpy 2.2.4: arithmetic on quantities and calendar durations"
_TO_STRING = "fhirpathpy 2.2.4: toString() of a decimal or boolean prints Python's text (1, True)"
_SET_EQUIVALENCE = "fhirpathpy 2.2.4: ~ of collections compares them in order (the suite: as sets)"
_SINGLETON = "fhirpathpy 2.2.4: several items where one is expected is not an error"
_EMPTY_ARGUMENT = "fhirpathpy 2.2.4: a string function given an empty argument raises a TypeError"
_TYPES = "fhirpathpy 2.2.4: as()/ofType() follow no FHIR type hierarchy (a code is taken as a string)"
FHIRPATHPY_GAPS: dict[str, str] = {
    **dict.fromkeys(["@2015T.is(DateTime)", "@2015-02T.is(DateTime)", "@2015-02-04T.is(DateTime)"], _PARSER),
    **dict.fromkeys(["@2015.is(Date)", "@2015-02.is(Date)", "@2015-02-04.is(Date)", "@T14:34:28Z.is(Time)",
                     "@T14:34:28+10:00.is(Time)"], _DATE_TYPES),
    **dict.fromkeys([
        "Patient.birthDate != @1974-12-25T12:34:00-10:00", "Patient.birthDate != @1974-12-25T12:34:00+10:00",
        "Patient.birthDate != @1974-12-25T12:34:00Z", "now() > today()",
        "@2012-04-15T15:00:00Z = @2012-04-15T10:00:00", "@2012-04-15T15:00:00Z != @2012-04-15T10:00:00",
    ], _DATE_PRECISION),
    **dict.fromkeys([
        "@1973-12-25T00:00:00.000+10:00 + 7 days", "@1973-12-25T00:00:00.000+10:00 + 7.7 days",
        "@1973-12-25T00:00:00.000+10:00 + 1 second", "@1973-12-25T00:00:00.000+10:00 + 10 millisecond",
        "@1973-12-25T00:00:00.000+10:00 + 1 minute", "@1973-12-25T00:00:00.000+10:00 + 1 hour",
        "@1973-12-25T00:00:00.000+10:00 + 1 's'", "@1973-12-25T00:00:00.000+10:00 + 0.1 's'",
        "@1973-12-25T00:00:00.000+10:00 + 10 'ms'", "@1973-12-25T00:00:00.000+10:00 + 1 'min'",
        "@1973-12-25T00:00:00.000+10:00 + 1 'h'", "@1974-12-25 - 1 'month'",
    ], _DATE_ARITHMETIC),
    **dict.fromkeys([
        "'1 \\'mo\\''.toQuantity() = 1 month", "'1 \\'a\\''.toQuantity() = 1 year", "2.0 'cm' * 2.0 'm' = 0.040 'm2'",
        "4.0 'g' / 2.0 'm' = 2 'g/m'", "1.0 'm' / 1.0 'm' = 1 '1'", "(-5.5 'mg').abs() = 5.5 'mg'",
    ], _QUANTITY),
    **dict.fromkeys(["1.0.toString()", "true.toString()", "0.0.toString() = '0.0'"], _TO_STRING),
    **dict.fromkeys([
        "name.take(2).given ~ name.take(2).last().given | name.take(2).first().given",
        "name.take(2).given !~ name.take(2).last().given | name.take(2).first().given", "(1 | 2 | 3) ~ (3 | 2 | 1)",
    ], _SET_EQUIVALENCE),
    **dict.fromkeys(["(1|2).not() = false", "iif(1 | 2 | 3, true, false)", "Patient.name.single().exists()",
                     "('item1' | 'item2').iif(true, 'true-result', 'false-result')"], _SINGLETON),
    **dict.fromkeys(["'LogicalModel-Person'.indexOf({}).empty() = true", "'123'.replace('2', {}).empty() = true"],
                    _EMPTY_ARGUMENT),
    **dict.fromkeys(["Patient.gender.as(string)", "Patient.gender.ofType(string)", "Patient.gender.as(string1)",
                     "Patient.gender.ofType(string1)"], _TYPES),
    "1.0.is(Decimal)": "fhirpathpy 2.2.4: a decimal literal with a zero fraction is an Integer",
    "'abc'.replaceMatches('', 'x')": "fhirpathpy 2.2.4: replaceMatches() with an empty pattern inserts everywhere",
    "1.round() = 1": "fhirpathpy 2.2.4: round() needs its precision argument",
    "conformsTo('http://hl7.org/fhir/StructureDefinition/Patient')": "fhirpathpy 2.2.4: no conformsTo()",
    "conformsTo('http://hl7.org/fhir/StructureDefinition/Person')": "fhirpathpy 2.2.4: no conformsTo()",
}


def expected(case: SuiteCase) -> list[Item]:
    if case.expression in LENIENCIES:
        return LENIENCIES[case.expression][1](case)
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
    # an invalid expression is an error; a semantic one may also surface as the empty collection
    if case.invalid is not None and case.expression not in LENIENCIES:
        return isinstance(got, Exception) or (case.invalid == "semantic" and got == [])
    return not isinstance(got, Exception) and same_items(got, expected(case), case.ordered)


def engine(expr: Expression, resource: dict[str, Any]) -> list[Any]:
    return expr.evaluate(resource, resource, resource.get("resourceType"))


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
        if FHIRPATHPY_GAPS.get(case.expression) == _PARSER:
            continue  # the parser is shared with fhirpathpy: the test above
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


def test_suite_cases_not_run_are_named_and_the_lists_are_live() -> None:
    not_run = [c for c in CASES if not_run_reason(c) is not None]
    assert len(CASES) == 934 and len(RUN) == len(CASES) - len(not_run) > 800
    run_expressions = {c.expression for c in RUN}
    assert not set(LENIENCIES) & set(FHIRPATHPY_GAPS)
    assert set(LENIENCIES) | set(FHIRPATHPY_GAPS) <= run_expressions  # no stale entry
