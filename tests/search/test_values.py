"""``values.d128`` builds the BID encoding of a Decimal128 itself (speed: see its docstring); it must be the
driver's encoding, bit for bit, for every value: rounded to 34 digits, clamped, signed zeros, infinities."""

from __future__ import annotations

from decimal import Decimal

import pytest
from bson.decimal128 import Decimal128, create_decimal128_context
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.search.values import d128

DRIVER_CONTEXT = create_decimal128_context()


def _drivers(value: Decimal) -> Decimal128:
    return Decimal128(DRIVER_CONTEXT.create_decimal(value))


@st.composite
def decimals_of_any_size(draw: st.DrawFn) -> Decimal:
    """Coefficients up to 40 digits (more than Decimal128 holds: rounded) and exponents beyond its range
    (clamped, or overflowing to infinity)."""
    sign = draw(st.sampled_from([0, 1]))
    coefficient = draw(st.integers(min_value=0, max_value=10**40))
    exponent = draw(st.integers(min_value=-6250, max_value=6250))
    return Decimal((sign, tuple(int(c) for c in str(coefficient)), exponent))


@settings(max_examples=3000, deadline=None)
@given(st.one_of(decimals_of_any_size(), st.decimals(allow_nan=False)))
def test_d128_is_the_drivers_encoding(value: Decimal) -> None:
    assert d128(value).bid == _drivers(value).bid


@pytest.mark.parametrize("text", [
    "0", "-0", "0.000", "-0.000", "1.50", "15998640.0", "1E+6111", "1E-6176", "0E-6176",
    "9999999999999999999999999999999999", "99999999999999999999999999999999999",  # 35 digits: rounded
    "9999999999999999999999999999999999E6111", "1E+7000", "-1E+7000", "1E-7000", "Infinity", "-Infinity", "NaN",
])
def test_d128_edge_values(text: str) -> None:
    assert d128(Decimal(text)).bid == _drivers(Decimal(text)).bid
