"""UCUM units in canonical form, so that quantity search compares ``120 mm[Hg]`` with ``16 kPa``
(https://hl7.org/fhir/R4/search.html#quantity: a search with a UCUM unit may match values in other units of the same
kind; https://ucum.org/ucum, "The Unified Code for Units of Measure").

A unit expression (``mg/dL``, ``10*9/L``, ``mm[Hg]``, ``[IU]/L``, ``mL/min/{1.73_m2}``) is parsed by UCUM's
grammar (section 2.1: terms of components joined by ``.`` and ``/``, left to right; a component an atom with an
optional prefix and exponent, an integer factor, an annotation ``{...}`` or a parenthesised term) and reduced through
the atoms' definitions (``data/ucum.json``, built by ``scripts/build_ucum.py``) to a factor times a product of base
units: ``mm[Hg]`` is ``133322 g.m-1.s-2``. Arithmetic is exact decimal (34 digits, what MongoDB's Decimal128 holds).

- An arbitrary unit (``[IU]``, ``[arb'U]``) is commensurable only with itself: it stays in the canonical form as a
  base of its own (``[IU]/L`` and ``[IU]/mL`` compare; ``[IU]`` and ``mg`` do not).
- Of the special (non-linear) units, the temperatures alone are canonicalised, and only on their own: ``Cel``,
  ``[degF]`` and ``[degRe]`` are affine in kelvin. ``[pH]``, decibels and the like have no canonical form here.
- A code that is not valid UCUM has none either: its quantities are still found by their own code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Context, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

UCUM_SYSTEM = "http://unitsofmeasure.org"
DATA = Path(__file__).resolve().parent / "data" / "ucum.json"
DECIMAL = Context(prec=34)  # Decimal128's digits: a canonical value is stored as one
# A unit code comes from a client's Quantity (parsed at every write): UCUM's longest real expressions are a few dozen
# characters; a longer one gets no canonical form instead of a deep or long parse.
MAX_CODE_LENGTH = 256
_EXPONENT = re.compile(r"^(.*?)([+-]?\d+)?$")
_AFFINE_TEMPERATURES = {  # kelvin = value * factor + offset (UCUM's special functions cel, degf, degre)
    "Cel": (Decimal(1), Decimal("273.15")),
    "[degF]": (DECIMAL.divide(5, 9), DECIMAL.divide(DECIMAL.multiply(Decimal("459.67"), 5), 9)),
    "[degRe]": (Decimal("1.25"), Decimal("273.15")),
}


@dataclass(frozen=True)
class Canonical:
    """A unit in canonical form: ``value * factor + offset`` is the value in ``unit`` (``g.m-3``, ``1``)."""

    factor: Decimal
    unit: str
    offset: Decimal = Decimal(0)

    def of(self, value: Decimal) -> Decimal:
        return DECIMAL.add(DECIMAL.multiply(value, self.factor), self.offset)


class _Term:
    """A factor and the exponents of base units: the value of a parsed expression."""

    __slots__ = ("bases", "factor")

    def __init__(self, factor: Decimal, bases: dict[str, int] | None = None) -> None:
        self.factor = factor
        self.bases = bases or {}

    def times(self, other: _Term, sign: int = 1) -> _Term:
        bases = dict(self.bases)
        for base, exponent in other.bases.items():
            bases[base] = bases.get(base, 0) + sign * exponent
        factor = (DECIMAL.multiply(self.factor, other.factor) if sign > 0
                  else DECIMAL.divide(self.factor, other.factor))
        return _Term(factor, {b: e for b, e in bases.items() if e})

    def power(self, exponent: int) -> _Term:
        return _Term(DECIMAL.power(self.factor, exponent), {b: e * exponent for b, e in self.bases.items()})


class _Table:
    def __init__(self, data: dict[str, Any]) -> None:
        self.prefixes = {code: Decimal(value) for code, value in data["prefixes"].items()}
        self.atoms: dict[str, dict[str, Any]] = data["atoms"]

    @lru_cache(maxsize=512)  # noqa: B019 -- one table per process, never freed
    def atom(self, code: str) -> _Term:
        """The atom ``code`` in base units; ValueError for a special one (no linear form)."""
        atom = self.atoms[code]
        if atom.get("base"):
            return _Term(Decimal(1), {code: 1})
        if "special" in atom:
            raise ValueError(f"'{code}' is a special unit")
        if atom.get("arbitrary") and atom["unit"] == "1":
            return _Term(Decimal(1), {code: 1})
        definition = _Parser(self, atom["unit"]).main_term()
        return _Term(DECIMAL.multiply(Decimal(atom["value"]), definition.factor), definition.bases)

    def symbol(self, text: str) -> _Term:
        """An atom, or a prefix and a metric atom (UCUM 2.1 §4: the atom is tried first)."""
        if text in self.atoms:
            return self.atom(text)
        for length in (2, 1):
            prefix, rest = text[:length], text[length:]
            if prefix in self.prefixes and rest in self.atoms and self.atoms[rest]["metric"]:
                atom = self.atom(rest)
                return _Term(DECIMAL.multiply(self.prefixes[prefix], atom.factor), atom.bases)
        raise ValueError(f"unknown unit '{text}'")


class _Parser:
    """UCUM's grammar (ucum.html §2.1, "Syntax rules"), recursive descent over one expression."""

    def __init__(self, table: _Table, text: str) -> None:
        self.table, self.text, self.at = table, text, 0

    def main_term(self) -> _Term:
        if self.text.startswith("/"):
            self.at = 1
            value = _Term(Decimal(1)).times(self.term(), -1)
        else:
            value = self.term()
        if self.at != len(self.text):
            raise ValueError(f"unexpected '{self.text[self.at]}'")
        return value

    def term(self) -> _Term:
        value = self.component()
        while self.at < len(self.text) and self.text[self.at] in "./":
            operator = self.text[self.at]
            self.at += 1
            value = value.times(self.component(), 1 if operator == "." else -1)
        return value

    def component(self) -> _Term:
        if self.text.startswith("(", self.at):
            self.at += 1
            value = self.term()
            if not self.text.startswith(")", self.at):
                raise ValueError("missing ')'")
            self.at += 1
            self.annotation()
            return value
        symbol = self.symbol_run()
        annotated = self.annotation()
        if not symbol:
            if not annotated:
                raise ValueError("a unit is missing")
            return _Term(Decimal(1))  # an annotation alone is the unity
        if symbol.isdigit():
            return _Term(Decimal(symbol))
        match = _EXPONENT.match(symbol)
        assert match is not None  # the pattern matches every string
        name, exponent = match.groups()
        return self.table.symbol(name).power(int(exponent) if exponent else 1)

    def symbol_run(self) -> str:
        """The characters up to the next operator, parenthesis or annotation; a ``[...]`` is read whole."""
        start, text = self.at, self.text
        while self.at < len(text) and text[self.at] not in "./(){}":
            if text[self.at] == "[":
                end = text.find("]", self.at)
                if end < 0:
                    raise ValueError("missing ']'")
                self.at = end
            self.at += 1
        return text[start:self.at]

    def annotation(self) -> bool:
        """Skip an annotation ``{...}`` (it does not change the unit); whether there was one."""
        if not self.text.startswith("{", self.at):
            return False
        end = self.text.find("}", self.at)
        if end < 0:
            raise ValueError("missing '}'")
        self.at = end + 1
        return True


@lru_cache(maxsize=1)
def _table() -> _Table:
    return _Table(json.loads(DATA.read_text()))


@lru_cache(maxsize=4096)
def canonical(code: str) -> Canonical | None:
    """The canonical form of the UCUM expression ``code``; None when it has none (not UCUM, or special)."""
    if not code or len(code) > MAX_CODE_LENGTH:
        return None
    if code in _AFFINE_TEMPERATURES:
        factor, offset = _AFFINE_TEMPERATURES[code]
        return Canonical(factor, "K", offset)
    try:
        term = _Parser(_table(), code).main_term()
    except (ValueError, KeyError, ArithmeticError, RecursionError):  # a client's code: never a server error
        return None
    return Canonical(term.factor, _unit_text(term.bases))


def _unit_text(bases: dict[str, int]) -> str:
    """``g.m-3``: the bases in code order with their exponents; ``1`` when there are none."""
    parts = [base if exponent == 1 else f"{base}{exponent}" for base, exponent in sorted(bases.items())]
    return ".".join(parts) or "1"
