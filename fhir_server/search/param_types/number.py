"""Number parameters: https://hl7.org/fhir/R4/search.html#number and prefixes (#prefix).

Entry: ``{"lo", "hi", "vl", "vh"}`` as ``Decimal128``: ``lo/hi`` is the implicit precision range
``[v - ½ulp, v + ½ulp)`` of the value ``v`` (``1.50`` is not ``1.5``); ``vl = vh = v`` the exact value. A Range
gives ``lo = vl = low``, ``hi = vh = high`` (open ends -/+Infinity) and the ``"s"``/``"c"``/``"u"`` (system,
code, unit) of its quantities. The same shape, units included, is the quantity entry
(:mod:`.quantity`).

Query: eq/ne on the implicit precision ranges (the search range must contain the entry's range); gt/lt/ge/le
compare the *exact* values (``vl``/``vh``); sa ``vl>=ph``; eb ``vh<pl``; ap +/-10% of the value. Sorted by
``vl`` ascending, ``vh`` descending.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bson.decimal128 import Decimal128

from fhir_server.search.index_layout import SortKey, bounds_sort_key
from fhir_server.search.param_types.common import Criteria, Entry, Filter, compact
from fhir_server.search.values import d128, precision_bounds, to_decimal

LOW = "lo"  # implicit precision range, inclusive
HIGH = "hi"  # exclusive
VALUE_LOW = "vl"  # exact value (a Range: its low)
VALUE_HIGH = "vh"  # exact value (a Range: its high)
SYSTEM = "s"  # unit system (quantities and Ranges)
CODE = "c"  # unit code
UNIT = "u"  # unit text
MODIFIERS = frozenset({"missing"})
POS_INF = Decimal128("Infinity")
NEG_INF = Decimal128("-Infinity")


@dataclass(frozen=True)
class NumberValue:
    """A number search value; ``lo``/``hi`` is the implicit precision range of ``value``."""

    raw: str
    prefix: str
    value: Decimal
    lo: Decimal
    hi: Decimal


def point_entry(value: Decimal) -> Entry:
    lo, hi, exact = _point_bounds(str(value))  # the text keeps the precision (1.50 is not 1.5)
    return {LOW: lo, HIGH: hi, VALUE_LOW: exact, VALUE_HIGH: exact}


@lru_cache(maxsize=16384)
def _point_bounds(text: str) -> tuple[Decimal128, Decimal128, Decimal128]:
    value = Decimal(text)
    lo, hi = precision_bounds(value)
    return d128(lo), d128(hi), d128(value)


def is_range(value: Any) -> bool:
    return isinstance(value, dict) and ("low" in value or "high" in value)


def range_entry(value: dict[str, Any]) -> Entry:
    low = to_decimal((value.get("low") or {}).get("value"))
    high = to_decimal((value.get("high") or {}).get("value"))
    lo = d128(low) if low is not None else NEG_INF
    hi = d128(high) if high is not None else POS_INF
    unit_source = value.get("low") or value.get("high") or {}
    return {LOW: lo, HIGH: hi, VALUE_LOW: lo, VALUE_HIGH: hi, **units(unit_source)}


def units(quantity: dict[str, Any]) -> Entry:
    """The unit fields of a Quantity."""
    return compact({SYSTEM: quantity.get("system"), CODE: quantity.get("code"), UNIT: quantity.get("unit")})


def entries(value: Any, _restriction: str | None = None) -> list[Entry]:
    if is_range(value):
        return [range_entry(value)]
    number = to_decimal(value)
    return [point_entry(number)] if number is not None else []


def sort_key(values: list[Any]) -> SortKey | None:
    return bounds_sort_key(values, VALUE_LOW, VALUE_HIGH)


def entry_condition(value: NumberValue, _criteria: Criteria | None = None) -> Filter:
    exact, lo, hi = d128(value.value), d128(value.lo), d128(value.hi)
    match value.prefix:
        case "eq":
            return {LOW: {"$gte": lo}, HIGH: {"$lte": hi}}
        case "ne":
            return {"$or": [{LOW: {"$lt": lo}}, {HIGH: {"$gt": hi}}]}
        case "gt":
            return {VALUE_HIGH: {"$gt": exact}}
        case "lt":
            return {VALUE_LOW: {"$lt": exact}}
        case "ge":
            return {VALUE_HIGH: {"$gte": exact}}
        case "le":
            return {VALUE_LOW: {"$lte": exact}}
        case "sa":
            return {VALUE_LOW: {"$gte": hi}}
        case "eb":
            return {VALUE_HIGH: {"$lt": lo}}
        case _:  # ap
            margin = abs(value.value) / Decimal(10)
            upper, lower = d128(value.value + margin), d128(value.value - margin)
            return {VALUE_LOW: {"$lte": upper}, VALUE_HIGH: {"$gte": lower}}
