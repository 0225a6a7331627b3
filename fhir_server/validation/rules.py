"""The registry's rule table: which profiles a resource must conform to (``profiles/rules.json``).

Each rule names a resourceType, a FHIRPath selector (https://hl7.org/fhir/R4/fhirpath.html, compiled once)
and a profile canonical url. A resource must conform to every profile whose rule selects it; profiles the
resource claims in ``meta.profile`` are the server's call (validation.html#profile).

Every write runs the rules of its type, and the registry's selectors all have one shape: "an item of this
element (or a coding of it) has these values", ``code.coding.where(system = 'S' and (code = 'A' or
code = 'B')).exists()``, ``identifier.where(system = 'S').exists()``. Such a selector is compiled to a plain
walk (:func:`plain_selector`; issue #14: a small fraction of the FHIRPath engine's cost); any other selector
goes to the FHIRPath engine.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fhir_server.fhirpath import expression, is_true
from fhir_server.json_types import Json
from fhir_server.validation.primitives import TYPES

Selector = Callable[[Mapping[str, Any]], bool]
ItemTest = Callable[[Mapping[str, Any]], bool]

_CODING_SELECTOR = re.compile(r"([a-z][A-Za-z]*)(\.coding)?\.where\((.*)\)\.exists\(\)", re.DOTALL)
# Tokens of the where() condition: parentheses, and/or, `field = 'literal'` (no escapes in the literal)
_TOKEN = re.compile(r"\s*(?:(\()|(\))|(and|or)\b|([a-z][A-Za-z]*)\s*=\s*'([^'\\]*)')")
_KEYWORDS = frozenset({"and", "or", "xor", "implies", "not", "true", "false", "div", "mod", "in", "contains",
                       "is", "as"})


def load_rules(path: Path) -> list[Json]:
    """The rules of a rule table file (``{"rules": [...]}``)."""
    return list(json.loads(path.read_text())["rules"])


def profiles_required_for(resource: Mapping[str, Any], rules: Iterable[Mapping[str, Any]]) -> list[str]:
    """Canonical urls of the profiles ``resource`` must conform to, in rule order, without duplicates."""
    rtype = resource.get("resourceType")
    out: list[str] = []
    for rule in rules:
        if rule.get("resourceType") != rtype or rule["profile"] in out:
            continue
        if selector(rtype, rule.get("selector") or "true")(resource):
            out.append(rule["profile"])
    return out


@functools.lru_cache(maxsize=1024)
def selector(resource_type: str, text: str) -> Selector:
    """``text`` as a test of a resource of ``resource_type``: compiled to a walk when it has the coding shape."""
    if text.strip() == "true":  # the rule of every resource of the type (the registry's Patient rule)
        return lambda _resource: True
    compiled = plain_selector(resource_type, text)
    if compiled is not None:
        return compiled
    parsed = expression(text)
    return lambda resource: is_true(parsed.evaluate(resource, resource))


def plain_selector(resource_type: str, text: str) -> Selector | None:
    """``element[.coding].where(<and/or of field = 'literal'>).exists()`` as a plain walk, or None.

    Same answer as FHIRPath: ``where`` keeps the items whose condition is true, and with only ``and``/``or``
    of equalities (no ``not``) an absent field (empty, FHIRPath's third value) decides exactly as false does.
    ``element`` is an element of the type (a choice such as MedicationStatement.medication[x] matches each of
    its JSON names, as FHIRPath's ``medication`` does)."""
    match = _CODING_SELECTOR.fullmatch(text.strip())
    info = TYPES.get(resource_type)
    if match is None or info is None or not info.is_resource:
        return None
    element, coding, condition = match.groups()
    names = tuple(name for name, row in info.rows.items() if name == element or row.choice == element)
    test = _condition(condition)
    if not names or test is None:
        return None

    def select(resource: Mapping[str, Any]) -> bool:
        for name in names:
            for item in _objects(resource.get(name)):
                for tested in _objects(item.get("coding")) if coding else (item,):
                    if test(tested):
                        return True
        return False
    return select


def _objects(value: Any) -> list[Mapping[str, Any]]:
    """The JSON objects of an element's value (one, or the items of an array)."""
    if type(value) is dict:
        return [value]
    return [item for item in value if type(item) is dict] if type(value) is list else []


def _condition(text: str) -> ItemTest | None:
    """The where() condition as a test of one item, or None when it has another shape."""
    tokens: list[tuple[str, str]] = []
    at = 0
    text = text.strip()
    while at < len(text):
        token = _TOKEN.match(text, at)
        if token is None:
            return None
        opening, closing, operator, field, literal = token.groups()
        tokens.append(("(", "") if opening else (")", "") if closing else ("op", operator) if operator
                      else (field, literal))
        at = token.end()
    parser = _Parser(tokens)
    tree = parser.disjunction()
    return _compile(tree) if tree is not None and parser.at == len(tokens) else None


# A parsed condition: ("=", field, literal), or ("and" | "or", the operands)
Condition = tuple[Any, ...]


def _compile(tree: Condition) -> ItemTest:
    """A condition as a test. The equalities of one field under an ``or`` become one set lookup (the rule
    table lists up to a dozen codes of a system)."""
    if tree[0] == "=":
        field, literal = tree[1], tree[2]
        return lambda item: _equals(item.get(field), literal)
    operator, operands = tree
    tests: list[ItemTest] = []
    if operator == "or":
        literals: dict[str, set[str]] = {}
        for operand in operands:
            if operand[0] == "=":
                literals.setdefault(operand[1], set()).add(operand[2])
        operands = [o for o in operands if o[0] != "=" or len(literals[o[1]]) == 1]
        tests += [_one_of(field, frozenset(values)) for field, values in literals.items() if len(values) > 1]
    tests += [_compile(o) for o in operands]
    if operator == "or":
        return lambda item: any(test(item) for test in tests)
    return lambda item: all(test(item) for test in tests)


def _one_of(field: str, literals: frozenset[str]) -> ItemTest:
    def test(item: Mapping[str, Any]) -> bool:
        actual = item.get(field)
        if type(actual) is list and len(actual) == 1:  # a repeating element: see _equals
            actual = actual[0]
        return type(actual) is str and actual in literals
    return test


def _equals(actual: Any, literal: str) -> bool:
    """FHIRPath ``=`` of an element's value with a string: a repeating element is a collection, equal to the
    one-item collection of the literal only when it holds exactly that item (fhirpath.html#equality)."""
    return actual == literal or (type(actual) is list and actual == [literal])


class _Parser:
    """Recursive descent over the tokens; ``and`` binds tighter than ``or`` (fhirpath.html#operator-precedence)."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0

    def _next_is(self, kind: str, value: str = "") -> bool:
        return self.at < len(self.tokens) and self.tokens[self.at] == (kind, value)

    def disjunction(self) -> Condition | None:
        return self._chain("or", self.conjunction)

    def conjunction(self) -> Condition | None:
        return self._chain("and", self.factor)

    def _chain(self, operator: str, operand: Callable[[], Condition | None]) -> Condition | None:
        """``operand (operator operand)*``."""
        terms = [operand()]
        while self._next_is("op", operator):
            self.at += 1
            terms.append(operand())
        found = [t for t in terms if t is not None]
        if len(found) < len(terms):
            return None
        return found[0] if len(found) == 1 else (operator, found)

    def factor(self) -> Condition | None:
        if self.at >= len(self.tokens):
            return None
        kind, value = self.tokens[self.at]
        self.at += 1
        if kind == "(":
            inner = self.disjunction()
            if not self._next_is(")"):
                return None
            self.at += 1
            return inner
        if kind not in (")", "op") and kind not in _KEYWORDS:
            return ("=", kind, value)
        return None
