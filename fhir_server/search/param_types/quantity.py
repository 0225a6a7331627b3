"""Quantity parameters: https://hl7.org/fhir/R4/search.html#quantity.

Entry: the number entry of :mod:`.number` (``lo``, ``hi``, ``vl``, ``vh``) plus ``"s"`` system, ``"c"`` code,
``"u"`` unit of the Quantity (a Money: ``s`` = ``urn:iso:std:iso:4217``, ``c`` = its currency). No UCUM
canonicalisation (not done: ``mg`` and ``g`` are not compared across units).

Query: the number conditions on the value; ``n|system|code`` also matches ``s`` and ``c``; ``n||code``
matches ``c`` or ``u``. Sorted like numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.search.param_types import number
from fhir_server.search.param_types.common import Criteria, Entry, Filter
from fhir_server.search.values import to_decimal

SYSTEM, CODE, UNIT = number.SYSTEM, number.CODE, number.UNIT
MODIFIERS = frozenset({"missing"})
CURRENCY_SYSTEM = "urn:iso:std:iso:4217"
sort_key = number.sort_key


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
    return [{**number.point_entry(amount), **number.units(value)}]


def entry_condition(value: QuantityValue, criteria: Criteria | None = None) -> Filter:
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
