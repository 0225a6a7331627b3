"""Quantities in the native subset (https://hl7.org/fhirpath/N1/#quantity, #comparison, #equals), derived by hand:
a literal is a number and a UCUM unit or a calendar duration keyword, and two quantities compare in common units."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from fhir_server.fhirpath import Expression, Unsupported
from fhir_server.fhirpath.quantities import QuantityLiteral, is_quantity, parse_literal
from tests.fhirpath.test_engine import native

UCUM = "http://unitsofmeasure.org"


def dose(value: Any, code: str, system: str = UCUM, **more: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationStatement",
            "dosage": [{"doseAndRate": [{"doseQuantity": {"value": value, "unit": code, "system": system,
                                                          "code": code, **more}}]}]}


@pytest.mark.parametrize(("text", "expected"), [
    ("1 'g' = 1000 'mg'", [True]),
    ("1 'g' != 1000 'mg'", [False]),
    ("1 'g' = 1 'mg'", [False]),
    ("4 'g' > 200 'mg'", [True]),
    ("1.5 'g' <= 1500 'mg'", [True]),
    ("37 'Cel' > 98 '[degF]'", [True]),  # 37 Cel is 98.6 [degF]
    ("6 days < 1 week", [True]),
    ("1 week = 7 days", [True]),
    ("1 'g' < 1 'm'", []),  # units of different kinds: empty
    ("(1 'g' | 1000 'mg').count()", [1]),  # a union keeps one of two equal quantities
])
def test_literals_compare_in_common_units(text: str, expected: list[Any]) -> None:
    assert native(Expression(text), {}, {}) == expected


@pytest.mark.parametrize(("resource", "expected"), [
    (dose(400, "mg"), [True]),
    (dose(Decimal("1.2"), "g"), [False]),
    (dose(1000, "mg"), [False]),
])
def test_a_fhir_quantity_compares_with_a_literal(resource: dict[str, Any], expected: list[Any]) -> None:
    expr = Expression("MedicationStatement.dosage.doseAndRate.dose < 1000 'mg'")
    assert native(expr, resource, resource) == expected


def test_two_quantities_in_one_unit_of_another_system_compare_as_they_are() -> None:
    tablets = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"
    low, high = ({"value": n, "unit": "TAB", "system": tablets, "code": "TAB"} for n in (2, 1))
    expr = Expression("low <= high")
    assert native(expr, {"low": low, "high": high}, {}) == [False]
    with pytest.raises(Unsupported):  # another unit of that system: no conversion known
        native(expr, {"low": low, "high": {**high, "code": "CAP"}}, {})


@pytest.mark.parametrize("resource", [
    dose(400, "tab", system="urn:example:units"),  # not UCUM
    dose(400, "mg", comparator="<"),  # not an exact value
    dose(400, "not a unit"),  # no canonical form
])
def test_quantities_the_subset_cannot_compare_are_left_to_fhirpathpy(resource: dict[str, Any]) -> None:
    expr = Expression("MedicationStatement.dosage.doseAndRate.dose < 1000 'mg'")
    with pytest.raises(Unsupported):
        native(expr, resource, resource)


@pytest.mark.parametrize("text", ["1 year < 2 years", "1 month = 1 month", "1 'a' > 1 day"])
def test_indefinite_calendar_durations_and_mixed_kinds_are_left_to_fhirpathpy(text: str) -> None:
    expr = Expression(text)
    if expr.native:
        with pytest.raises(Unsupported):
            native(expr, {}, {})


def test_literal_forms() -> None:
    assert parse_literal("200'[lb_av]'") == QuantityLiteral(200, "[lb_av]")
    assert parse_literal("2.5'mg'") == QuantityLiteral(Decimal("2.5"), "mg")
    assert parse_literal("6days") == QuantityLiteral(6, "day", calendar=True)
    assert str(QuantityLiteral(6, "day", calendar=True)) == "6 day" and str(QuantityLiteral(1, "mg")) == "1 'mg'"


@pytest.mark.parametrize(("item", "expected"), [
    ({"value": 1, "code": "mg", "system": UCUM}, True),
    ({"value": 1, "unit": "mg", "extension": []}, True),
    ({"value": "1", "system": "urn:x"}, False),  # an Identifier's value is a string
    ({"value": 1, "currency": "EUR"}, False),  # Money
    ({"code": "mg", "system": UCUM}, False),  # a Coding
    (QuantityLiteral(1, "mg"), True),
])
def test_what_counts_as_a_quantity(item: Any, expected: bool) -> None:
    assert is_quantity(item) is expected
