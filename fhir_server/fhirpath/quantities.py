"""Quantities in the native FHIRPath subset: literals (``200 '[lb_av]'``, ``6 days``) and the comparison of two
quantities with their units converted.

Spec: https://hl7.org/fhirpath/N1/#quantity (a literal is a number and a UCUM unit in quotes, or a calendar duration
keyword), https://hl7.org/fhirpath/N1/#comparison and #equals (quantities compare after conversion to common units;
units of different kinds make the result empty), https://hl7.org/fhir/R4/fhirpath.html#types (a FHIR Quantity, and
its specialisations Age, Duration, Distance, Count, SimpleQuantity, is a FHIRPath Quantity).

Why native: R4's rng-2 (``low <= high`` of every Range) compares two FHIR Quantities, which fhirpathpy refuses on
JSON (a TypeError), so a Range from 800 mg down to 400 mg was stored unchecked; and a profile invariant such as
``dose < 1000 'mg'`` raised in fhirpathpy and was reported as "could not be evaluated".

Units convert through :mod:`fhir_server.terminology.ucum` (exact decimals); two FHIR Quantities coded in the same unit
of one system (``TAB`` of v3-orderableDrugForm) compare as they are. Left to fhirpathpy (:class:`Unsupported`): other
units with no canonical form (not UCUM, or with a ``comparator``), the calendar durations ``year`` and ``month`` (not
definite durations), and a calendar duration beside a UCUM unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_server.fhirpath.navigation import Unsupported
from fhir_server.terminology.ucum import UCUM_SYSTEM, canonical

# Calendar duration keywords of definite length, and the UCUM unit of the same length (N1 "Time-valued quantities").
_CALENDAR_UCUM = {"week": "wk", "day": "d", "hour": "h", "minute": "min", "second": "s", "millisecond": "ms"}
_CALENDAR_INDEFINITE = frozenset({"year", "month"})
# The parse tree's text of a quantity literal has no spaces: ``200'[lb_av]'``, ``6days``.
_LITERAL = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?:'(?P<ucum>(?:[^'\\]|\\.)*)'|(?P<keyword>[a-z]+))")
# The elements of a FHIR Quantity (and of Age, Duration, Distance, Count, SimpleQuantity): a dict with a numeric value
# and no other element is one.
_QUANTITY_KEYS = frozenset({"value", "comparator", "unit", "system", "code", "id", "extension",
                            "_value", "_comparator", "_unit", "_system", "_code"})


@dataclass(frozen=True)
class QuantityLiteral:
    """A quantity written in an expression: ``unit`` is a UCUM code, or a calendar keyword when ``calendar``."""

    value: int | Decimal
    unit: str
    calendar: bool = False

    def __str__(self) -> str:
        return f"{self.value} {self.unit}" if self.calendar else f"{self.value} '{self.unit}'"


def parse_literal(text: str) -> QuantityLiteral:
    found = _LITERAL.fullmatch(text)
    if found is None:
        raise Unsupported(f"quantity literal {text!r}")
    number = found["number"]
    value: int | Decimal = Decimal(number) if "." in number else int(number)
    if found["ucum"] is not None:
        return QuantityLiteral(value, found["ucum"].replace("\\'", "'"))
    keyword = found["keyword"].removesuffix("s")
    if keyword in _CALENDAR_INDEFINITE or keyword not in _CALENDAR_UCUM:
        raise Unsupported(f"calendar duration {found['keyword']}")
    return QuantityLiteral(value, keyword, calendar=True)


def is_quantity(item: Any) -> bool:
    if isinstance(item, QuantityLiteral):
        return True
    if not isinstance(item, dict) or not item.keys() <= _QUANTITY_KEYS:
        return False
    value = item.get("value")
    return isinstance(value, int | Decimal | float) and not isinstance(value, bool)


def compare(a: Any, b: Any) -> int | None:
    """-1, 0 or 1 as quantity ``a`` is less than, equal to or greater than ``b``; None when their units are of
    different kinds (the comparison is empty). Unsupported where a unit has no canonical form here."""
    if _in_one_unit(a, b):  # 1 TAB and 2 TAB (v3-orderableDrugForm): no conversion needed, none done
        return (a["value"] > b["value"]) - (a["value"] < b["value"])
    (a_value, a_unit, a_calendar), (b_value, b_unit, b_calendar) = _measured(a), _measured(b)
    if a_calendar != b_calendar:
        raise Unsupported("a calendar duration beside a UCUM quantity")
    if a_unit != b_unit:
        return None
    return (a_value > b_value) - (a_value < b_value)


def _in_one_unit(a: Any, b: Any) -> bool:
    """Two exact FHIR Quantities coded with the same unit of the same system, whatever the system."""
    return (isinstance(a, dict) and isinstance(b, dict) and "comparator" not in a and "comparator" not in b
            and a.get("system") is not None and a.get("code") is not None
            and (a.get("system"), a.get("code")) == (b.get("system"), b.get("code"))
            and not isinstance(a["value"], float) and not isinstance(b["value"], float))


def _measured(item: Any) -> tuple[Decimal, str, bool]:
    """(value in canonical units, canonical unit, is a calendar duration) of a quantity item."""
    if isinstance(item, QuantityLiteral):
        code = _CALENDAR_UCUM[item.unit] if item.calendar else item.unit
        value, calendar = item.value, item.calendar
    else:
        if "comparator" in item or item.get("system") != UCUM_SYSTEM or not isinstance(item.get("code"), str):
            raise Unsupported("a Quantity that is not an exact UCUM quantity")
        code, value, calendar = item["code"], item["value"], False
    unit = canonical(code)
    if unit is None or isinstance(value, float):
        raise Unsupported(f"a quantity in {code!r}, which has no canonical UCUM form here")
    return unit.of(Decimal(value)), unit.unit, calendar
