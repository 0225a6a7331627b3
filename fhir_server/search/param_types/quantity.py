"""Quantity parameters: https://hl7.org/fhir/R4/search.html#quantity.

Entry: the number entry of :mod:`.number` (``lo``, ``hi``, ``vl``, ``vh``) plus ``"s"`` system, ``"c"`` code,
``"u"`` unit of the Quantity (a Money: ``s`` = ``urn:iso:std:iso:4217``, ``c`` = its currency). A UCUM quantity
(not a Range) whose code has a canonical form (:mod:`fhir_server.terminology.ucum`) also carries its exact value in
canonical units: ``"k": {"u": <canonical unit>, "v": <value>}`` (``120 mm[Hg]`` is ``{"u": "g.m-1.s-2",
"v": 15998640}``). Two fields, not the number entry's four: each is a key of the wildcard index, written by mongod
on every insert.

Query: the number conditions on the value; ``n|system|code`` also matches ``s`` and ``c``; ``n||code``
matches ``c`` or ``u``. With the UCUM system and a code that has a canonical form, a value in any commensurable
unit matches too ("the server may choose to perform unit conversion", search.html#quantity): the search value and
its precision range are converted, and the stored canonical value compared with them, so
``value-quantity=16|http://unitsofmeasure.org|kPa`` finds ``120 mm[Hg]`` (15.9986 kPa is in ``[15.5, 16.5)``).
For a value in another unit, ``eq`` holds when the stored value lies in the search value's precision range (in its
own unit, ``eq`` still asks the stored value's precision range to lie in it: ``1.500`` does not match ``1.50``).
A document stored before canonical forms were extracted still matches by its own code (until ``$reindex``).
``ap`` is +/-10 % of the value in the unit searched, not of its canonical value (10 % of a kelvin temperature
would be 30 degrees). Sorted like numbers, on the stored value.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bson.decimal128 import Decimal128

from fhir_server.search.param_types import number
from fhir_server.search.param_types.common import Criteria, Entry, Filter
from fhir_server.search.values import d128, to_decimal
from fhir_server.terminology.ucum import UCUM_SYSTEM, Canonical, canonical

SYSTEM, CODE, UNIT = number.SYSTEM, number.CODE, number.UNIT
CANONICAL = "k"  # the exact value in UCUM canonical units: ``CANONICAL_UNIT`` and ``CANONICAL_VALUE``
CANONICAL_UNIT = "u"
CANONICAL_VALUE = "v"
MODIFIERS = frozenset({"missing"})
CURRENCY_SYSTEM = "urn:iso:std:iso:4217"
sort_key = number.sort_key
_COMPARISON = {"gt": "$gt", "lt": "$lt", "ge": "$gte", "le": "$lte"}


@dataclass(frozen=True)
class QuantityValue(number.NumberValue):
    """A quantity search value ``[prefix]number|system|code`` (``system``/``code`` None when empty)."""

    system: str | None = None
    code: str | None = None


def entries(value: Any, _restriction: str | None = None) -> list[Entry]:
    if not isinstance(value, dict):
        return number.entries(value)
    if number.is_range(value):
        return [number.range_entry(value)]
    amount = to_decimal(value.get("value"))
    if amount is None:
        return []
    if "currency" in value:  # Money
        return [{**number.point_entry(amount), SYSTEM: CURRENCY_SYSTEM, CODE: value["currency"]}]
    entry = {**number.point_entry(amount), **number.units(value)}
    if entry.get(SYSTEM) == UCUM_SYSTEM and isinstance(entry.get(CODE), str):
        converted = _canonical_value(entry[CODE], str(amount))
        if converted is not None:
            entry[CANONICAL] = {CANONICAL_UNIT: converted[0], CANONICAL_VALUE: converted[1]}
    return [entry]


@lru_cache(maxsize=16384)
def _canonical_value(code: str, text: str) -> tuple[str, Decimal128] | None:
    """The canonical unit and value of ``text`` in ``code``: cached, as a Decimal128 costs more to build than the
    rest of an entry (the same reason as ``number.point_entry``)."""
    form = canonical(code)
    return None if form is None else (form.unit, d128(form.of(Decimal(text))))


def entry_condition(value: QuantityValue, criteria: Criteria | None = None) -> Filter:
    condition = _as_written(value, criteria)
    form = canonical(value.code) if value.system == UCUM_SYSTEM and value.code else None
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
    """The condition on the stored canonical value of every commensurable quantity (module docstring)."""
    field = f"{CANONICAL}.{CANONICAL_VALUE}"
    exact, low, high = (d128(form.of(v)) for v in (value.value, value.lo, value.hi))
    match value.prefix:
        case "eq":
            condition: Filter = {field: {"$gte": low, "$lt": high}}
        case "ne":
            condition = {"$or": [{field: {"$lt": low}}, {field: {"$gte": high}}]}
        case "gt" | "lt" | "ge" | "le":
            condition = {field: {_COMPARISON[value.prefix]: exact}}
        case "sa":
            condition = {field: {"$gte": high}}
        case "eb":
            condition = {field: {"$lt": low}}
        case _:  # ap: +/-10 % in the unit searched, converted
            margin = abs(value.value) / Decimal(10)
            condition = {field: {"$gte": d128(form.of(value.value - margin)),
                                 "$lte": d128(form.of(value.value + margin))}}
    return {**condition, f"{CANONICAL}.{CANONICAL_UNIT}": form.unit}
