"""Quantity parameters: https://hl7.org/fhir/R4/search.html#quantity.

Entry: the number entry of :mod:`.number` (``lo``, ``hi``, ``vl``, ``vh``) plus ``"s"`` system, ``"c"`` code,
``"u"`` unit of the Quantity (a Money: ``s`` = ``urn:iso:std:iso:4217``, ``c`` = its currency). A UCUM quantity
whose code has a canonical form (:mod:`fhir_server.search.ucum`) also carries it under ``"k"``: the same four
bounds in canonical units and ``"u"`` the canonical unit (``120 mm[Hg]`` is ``{"u": "g.m-1.s-2", "vl": 15998640,
...}``).

Query: the number conditions on the value; ``n|system|code`` also matches ``s`` and ``c``; ``n||code``
matches ``c`` or ``u``. With the UCUM system and a code that has a canonical form, a value in any commensurable
unit matches too ("the server may choose to perform unit conversion", search.html#quantity): the value is
converted, then compared under ``k``, so ``value-quantity=16|http://unitsofmeasure.org|kPa`` finds
``120 mm[Hg]`` (``16 kPa`` is ``[15.5, 16.5) kPa`` at its precision, which holds ``[119.5, 120.5) mm[Hg]``). A
document stored before canonical forms were extracted still matches by its own code (until ``$reindex``). ``ap``
is +/-10 % of the value in the unit searched, not of its canonical value (10 % of a kelvin temperature would be
30 degrees). Sorted like numbers, on the stored value.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bson.decimal128 import Decimal128

from fhir_server.search.param_types import number
from fhir_server.search.param_types.common import Criteria, Entry, Filter, prefixed
from fhir_server.search.ucum import UCUM_SYSTEM, Canonical, canonical
from fhir_server.search.values import d128, precision_bounds, to_decimal

SYSTEM, CODE, UNIT = number.SYSTEM, number.CODE, number.UNIT
CANONICAL = "k"  # the value in UCUM canonical units: number bounds and ``CANONICAL_UNIT``
CANONICAL_UNIT = "u"
MODIFIERS = frozenset({"missing"})
CURRENCY_SYSTEM = "urn:iso:std:iso:4217"
sort_key = number.sort_key
_INFINITE = Decimal("Infinity")


@dataclass(frozen=True)
class QuantityValue(number.NumberValue):
    """A quantity search value ``[prefix]number|system|code`` (``system``/``code`` None when empty)."""

    system: str | None = None
    code: str | None = None


def entries(value: Any, _restriction: str | None = None) -> list[Entry]:
    if not isinstance(value, dict):
        return number.entries(value)
    if number.is_range(value):
        entry = number.range_entry(value)
        form = _canonical_form(entry.get(SYSTEM), entry.get(CODE))
        if form is not None:
            low, high = _range_ends(value)
            entry[CANONICAL] = _canonical_bounds(form, low, high, low, high)
        return [entry]
    amount = to_decimal(value.get("value"))
    if amount is None:
        return []
    if "currency" in value:  # Money
        return [{**number.point_entry(amount), SYSTEM: CURRENCY_SYSTEM, CODE: value["currency"]}]
    entry = {**number.point_entry(amount), **number.units(value)}
    if entry.get(SYSTEM) == UCUM_SYSTEM and isinstance(entry.get(CODE), str):
        bounds = _canonical_point(entry[CODE], str(amount))
        if bounds is not None:
            unit, lowest, highest, exact = bounds
            entry[CANONICAL] = {CANONICAL_UNIT: unit, number.LOW: lowest, number.HIGH: highest,
                                number.VALUE_LOW: exact, number.VALUE_HIGH: exact}
    return [entry]


@lru_cache(maxsize=16384)
def _canonical_point(code: str, text: str) -> tuple[str, Decimal128, Decimal128, Decimal128] | None:
    """The canonical unit and bounds of the value ``text`` (its precision kept) in ``code``: cached, as a
    Decimal128 costs more to build than the rest of an entry (the same reason as ``number.point_entry``)."""
    form = canonical(code)
    if form is None:
        return None
    value = Decimal(text)
    low, high = precision_bounds(value)
    return form.unit, d128(form.of(low)), d128(form.of(high)), d128(form.of(value))


def _range_ends(value: dict[str, Any]) -> tuple[Decimal, Decimal]:
    low = to_decimal((value.get("low") or {}).get("value"))
    high = to_decimal((value.get("high") or {}).get("value"))
    return -_INFINITE if low is None else low, _INFINITE if high is None else high


def _canonical_bounds(form: Canonical, low: Decimal, high: Decimal, value_low: Decimal, value_high: Decimal
                      ) -> Entry:
    """A number entry's four bounds in canonical units, and the unit."""
    return {CANONICAL_UNIT: form.unit, number.LOW: d128(form.of(low)), number.HIGH: d128(form.of(high)),
            number.VALUE_LOW: d128(form.of(value_low)), number.VALUE_HIGH: d128(form.of(value_high))}


def _canonical_form(system: Any, code: Any) -> Canonical | None:
    return canonical(code) if system == UCUM_SYSTEM and isinstance(code, str) else None


def entry_condition(value: QuantityValue, criteria: Criteria | None = None) -> Filter:
    condition = _as_written(value, criteria)
    form = _canonical_form(value.system, value.code)
    if form is None:
        return condition
    return {"$or": [condition, _converted(value, form)]}


def _as_written(value: QuantityValue, criteria: Criteria | None) -> Filter:
    """The condition on the value and unit as the search gives them."""
    condition = number.entry_condition(value, criteria)
    if value.system:
        condition[SYSTEM] = value.system
    if value.code and value.system:
        condition[CODE] = value.code
    elif value.code:
        units = [{CODE: value.code}, {UNIT: value.code}]
        if "$or" in condition:
            return {"$and": [{"$or": condition.pop("$or")}, {"$or": units}], **condition}
        condition["$or"] = units
    return condition


def _converted(value: QuantityValue, form: Canonical) -> Filter:
    """The condition on the canonical form of every commensurable value."""
    if value.prefix == "ap":  # +/-10 % in the unit searched, converted (module docstring)
        margin = abs(value.value) / Decimal(10)
        upper, lower = d128(form.of(value.value + margin)), d128(form.of(value.value - margin))
        condition: Filter = {number.VALUE_LOW: {"$lte": upper}, number.VALUE_HIGH: {"$gte": lower}}
    else:
        converted = number.NumberValue(value.raw, value.prefix, form.of(value.value), form.of(value.lo),
                                       form.of(value.hi))
        condition = number.entry_condition(converted)
    return {**prefixed(condition, CANONICAL), f"{CANONICAL}.{CANONICAL_UNIT}": form.unit}
