"""UCUM canonical forms (https://ucum.org/ucum), derived by hand from the atoms' definitions in the UCUM table:
``m[Hg]`` is ``133.3220 kPa``, ``Pa`` is ``N/m2``, ``N`` is ``kg.m/s2``, ``L`` is ``dm3``, ``%`` is ``10*-2``,
``[in_i]`` is ``2.54 cm``, ``[lb_av]`` is ``7000 [gr]`` and ``[gr]`` is ``64.79891 mg``; ``[IU]`` is arbitrary."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.terminology.ucum import canonical


@pytest.mark.parametrize(("code", "factor", "unit"), [
    ("g", "1", "g"),
    ("mg", "0.001", "g"),
    ("kg.m/s2", "1000", "g.m.s-2"),
    ("kPa", "1e6", "g.m-1.s-2"),  # 1e3 * N/m2 = 1e3 * 1e3 g.m.s-2 / m2
    ("mm[Hg]", "133322", "g.m-1.s-2"),  # 1e-3 * 133.3220 kPa
    ("g/dL", "1e4", "g.m-3"),  # a dL is 1e-4 m3
    ("g/L", "1e3", "g.m-3"),
    ("10*9/L", "1e12", "m-3"),  # the ten to the power 9, per 1e-3 m3
    ("10*3/uL", "1e12", "m-3"),  # the same count in another spelling
    ("{cells}/uL", "1e9", "m-3"),  # an annotation is the unity
    ("%", "0.01", "1"),
    ("%{BCR-ABL1/ABL1}", "0.01", "1"),
    ("1", "1", "1"),
    ("cm2", "0.0001", "m2"),
    ("/h", "1", None),  # checked below: 1/3600 s-1
    ("[in_i]", "0.0254", "m"),
    ("[lb_av]", "453.59237", "g"),
    ("[IU]/L", "1000", "[iU].m-3"),  # [IU] is defined as [iU]: the same arbitrary unit
    ("[IU]/mL", "1e6", "[iU].m-3"),
    ("mg/(2.h)", "1", None),
    # definitions that start with a factor (UCUM's table): the factor counts
    ("[S]", "1e-13", "s"),  # the Svedberg is 10*-13.s
    ("[diop]", "1", "m-1"),  # the diopter is /m
    ("[mesh_i]", "1", None),  # /[in_i]: 1/0.0254 per m, checked below
])
def test_canonical_form_of_a_ucum_expression(code: str, factor: str, unit: str | None) -> None:
    form = canonical(code)
    assert form is not None
    if unit is None:
        return
    assert (form.factor, form.unit, form.offset) == (Decimal(factor), unit, 0)


def test_a_division_is_left_to_right_and_parentheses_group() -> None:
    per_hour = canonical("/h")
    per_two_hours = canonical("mg/(2.h)")
    left_to_right = canonical("mg/2.h")  # (mg/2).h: a mass times a time
    assert per_hour is not None and per_two_hours is not None and left_to_right is not None
    assert per_hour.of(Decimal(3600)) == 1 and per_hour.unit == "s-1"
    assert per_two_hours.of(Decimal(7200000)) == 1 and per_two_hours.unit == "g.s-1"
    assert left_to_right.unit == "g.s"


def test_a_mesh_is_a_count_per_inch() -> None:
    mesh = canonical("[mesh_i]")
    assert mesh is not None and mesh.unit == "m-1" and abs(mesh.of(Decimal("0.0254")) - 1) < Decimal("1e-30")


@pytest.mark.parametrize(("code", "value", "kelvin"), [
    ("K", "310.15", "310.15"), ("Cel", "37", "310.15"), ("[degF]", "98.6", "310.15"), ("[degRe]", "80", "373.15"),
])
def test_temperatures_are_affine_in_kelvin(code: str, value: str, kelvin: str) -> None:
    form = canonical(code)
    assert form is not None and form.unit == "K"
    assert form.of(Decimal(value)) == Decimal(kelvin)


@pytest.mark.parametrize("code", [
    "", "abc", "mEq/L",  # UCUM is case-sensitive: the equivalent is `eq`
    "[pH]", "dB", "mCel",  # special units: no linear form
    "m/", "/", "m..g", "(m", "m)", "[IU", "{x",  # not UCUM's grammar
])
def test_no_canonical_form(code: str) -> None:
    assert canonical(code) is None


def test_an_arbitrary_unit_is_not_commensurable_with_another_unit() -> None:
    arbitrary, mass = canonical("[IU]"), canonical("mg")
    assert arbitrary is not None and mass is not None
    assert arbitrary.unit != mass.unit


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="()[]{}./*^+-0123456789mgLsKh%'_ IUCel", max_size=300))
def test_any_code_has_a_canonical_form_or_none_and_never_raises(code: str) -> None:
    """Unit codes come from clients' Quantities and are parsed at every write: any text is an answer, not a 500."""
    form = canonical(code)
    assert form is None or (form.factor.is_finite() and form.unit)


@pytest.mark.parametrize("code", ["(" * 5000 + "m" + ")" * 5000, "m." * 20000 + "m", "{" + "x" * 1000 + "}"])
def test_a_deeply_nested_or_very_long_code_has_no_canonical_form(code: str) -> None:
    assert canonical(code) is None
