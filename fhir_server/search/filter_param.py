"""What a ``_filter`` test means on a search parameter (https://hl7.org/fhir/R4/search_filter.html#ops): each test
``path op value`` becomes the clause a plain search would write for it, so a filter matches exactly what the
equivalent parameters match, under the same index values and access rules.

By the parameter's type (the operators search_filter.html leaves "n/a" for a type are a 400):

- string: ``eq`` the same text, ``co`` contains, ``sw`` starts with, ``ew`` ends with (all case- and
  accent-insensitive, as plain string search is), ``ne`` no value equal;
- token: ``eq``, ``ne`` (``:not``), ``ss`` (the value subsumes the code: ``:below``), ``sb`` (``:above``), ``in``
  and ``ni`` (``:in``/``:not-in`` a value set); ``loinc``, ``snomed``, ``rxnorm`` and ``ucum`` stand for their
  systems;
- reference: ``eq`` and ``re`` (the same reference), ``ne``;
- number, quantity: ``eq ne gt lt ge le sa eb ap``, the search prefixes; date also ``po``, overlaps;
- uri: ``eq``, ``ne``;
- any type: ``pr true|false``, the parameter has a value or not (``:missing``).

``ne`` on a type without the ``ne`` prefix is ``not (eq)``: no value of the resource equals the given one. A path
``a.b`` is a chain, allowed among the filter's top-level ``and`` terms only (a chain is resolved as a join, which
cannot sit under ``or`` or ``not``). The ``name[filter].name`` paths of the mechanism's extra parameters
(search_filter.html#params) are not served. An unknown parameter is a 400 even under ``handling=lenient``:
ignoring one test of an ``or`` or a ``not`` would change what the rest means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fhir_server.errors import InvalidRequest
from fhir_server.search.filter_syntax import Comparison, FilterNode, Logical, Negation, parse_filter
from fhir_server.search.model import (
    Clause,
    DateValue,
    FilterAll,
    FilterAny,
    FilterClause,
    FilterNone,
    FilterTerm,
    HasClause,
    StringValue,
    Value,
    conjuncts,
    escape_text,
    filter_clauses,
)
from fhir_server.search.param_types import date, string

# (query name, query value) -> the clause a plain search makes of them (None: not a parameter of the type)
ClauseParser = Callable[[str, str], Clause | HasClause | None]

_ORDERED = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
OPERATORS_BY_TYPE: dict[str, frozenset[str]] = {
    "string": frozenset({"eq", "ne", "co", "sw", "ew", "pr"}),
    "token": frozenset({"eq", "ne", "ss", "sb", "in", "ni", "pr"}),
    "reference": frozenset({"eq", "ne", "re", "pr"}),
    "number": _ORDERED | {"pr"},
    "quantity": _ORDERED | {"pr"},
    "date": _ORDERED | {"po", "pr"},
    "uri": frozenset({"eq", "ne", "pr"}),
    "composite": frozenset({"pr"}),
}
_MODIFIERS = {("string", "co"): "contains", ("token", "ne"): "not", ("token", "ss"): "below",
              ("token", "sb"): "above", ("token", "in"): "in", ("token", "ni"): "not-in"}
_STRING_MATCHES = {"eq": string.EQUAL, "ew": string.ENDS_WITH}
SYSTEM_ALIASES = {"loinc": "http://loinc.org", "snomed": "http://snomed.info/sct",
                  "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm", "ucum": "http://unitsofmeasure.org"}


def filter_clause(raw: str, parse_clause: ClauseParser) -> FilterClause:
    """The clause of ``_filter=raw``; ``parse_clause`` reads one plain parameter of the searched type(s)."""
    term = _term(parse_filter(raw), parse_clause)
    top_level = {id(item) for item in conjuncts(term)}
    for clause in filter_clauses(term):
        if clause.chain and id(clause) not in top_level:
            chain = clause.name.partition(":")[0]
            raise _refused(f"the chain {chain!r} stands under 'or' or 'not': a chained path may only be one of the "
                           "filter's top-level 'and' terms")
    return FilterClause("_filter", raw, term)


def _term(node: FilterNode, parse_clause: ClauseParser) -> FilterTerm:
    if isinstance(node, Comparison):
        return _comparison(node, parse_clause)
    if isinstance(node, Negation):
        return FilterNone(_term(node.item, parse_clause))
    assert isinstance(node, Logical)
    items = tuple(_term(item, parse_clause) for item in node.items)
    return FilterAll(items) if node.operator == "and" else FilterAny(items)


def _comparison(test: Comparison, parse_clause: ClauseParser) -> FilterTerm:
    if any(step.where is not None for step in test.path):
        raise _refused(f"{test.dotted}: [filter] paths (search_filter.html#params) are not supported")
    kind = _parameter_type(test, parse_clause)
    if test.operator not in OPERATORS_BY_TYPE.get(kind, frozenset()):
        allowed = ", ".join(sorted(OPERATORS_BY_TYPE.get(kind, ()))) or "none"
        raise _refused(f"{test.dotted} {test.operator}: {test.operator!r} does not apply to a {kind} parameter "
                       f"(it takes {allowed})")
    if test.operator == "pr":
        present = test.value.lower()
        if present not in ("true", "false"):
            raise InvalidRequest(f"_filter: {test.dotted} pr takes true or false, not {test.value!r}", code="invalid")
        return _parsed(parse_clause, f"{test.dotted}:missing", "false" if present == "true" else "true")
    if test.operator == "ne" and kind not in _ORDERED_TYPES and kind != "token":
        return FilterNone(_comparison(replace(test, operator="eq"), parse_clause))
    modifier = _MODIFIERS.get((kind, test.operator))
    name = test.dotted + (f":{modifier}" if modifier else "")
    clause = _parsed(parse_clause, name, _query_value(kind, test.operator, test.value))
    return _with_inner_values(clause, lambda value: _adjusted(value, test.operator))


_ORDERED_TYPES = frozenset({"number", "quantity", "date"})


def _parameter_type(test: Comparison, parse_clause: ClauseParser) -> str:
    """The type of the parameter a path ends on (on every target of its chains: one type, or a 400)."""
    probe = _parsed(parse_clause, f"{test.dotted}:missing", "true")
    kinds = {"token" if inner.param.code == "_id" else inner.param.type for inner in _innermost(probe)}
    if len(kinds) != 1:
        raise _refused(f"{test.dotted}: the path ends on parameters of different types ({', '.join(sorted(kinds))})")
    return kinds.pop()


def _parsed(parse_clause: ClauseParser, name: str, value: str) -> Clause:
    clause = parse_clause(name, value)
    if not isinstance(clause, Clause):
        raise _refused(f"{name.partition(':')[0]} is not a search parameter here")
    return clause


def _query_value(kind: str, operator: str, value: str) -> str:
    """The value as a plain search writes it: escaped (search.html#escaping), with its prefix."""
    escaped = escape_text(value, pipes=kind in ("string", "uri"))
    if kind in ("token", "quantity"):
        escaped = _expand_alias(escaped, at=1 if kind == "quantity" else 0)
    if kind in _ORDERED_TYPES:
        return ("eq" if operator == date.OVERLAPS else operator) + escaped
    return escaped


def _expand_alias(value: str, at: int) -> str:
    """``loinc|1234-5`` -> ``http://loinc.org|1234-5`` (the system is the ``at``-th ``|`` part)."""
    parts = value.split("|")
    if len(parts) > at + 1 and parts[at].lower() in SYSTEM_ALIASES:
        parts[at] = SYSTEM_ALIASES[parts[at].lower()]
    return "|".join(parts)


def _adjusted(value: Value, operator: str) -> Value:
    if isinstance(value, StringValue) and operator in _STRING_MATCHES:
        return replace(value, match=_STRING_MATCHES[operator])
    if isinstance(value, DateValue) and operator == date.OVERLAPS:
        return replace(value, prefix=date.OVERLAPS)
    return value


def _with_inner_values(clause: Clause, change: Callable[[Value], Value]) -> Clause:
    if clause.chain:
        return replace(clause, chain=tuple((kind, _with_inner_values(inner, change)) for kind, inner in clause.chain))
    return replace(clause, values=tuple(change(value) for value in clause.values))


def _innermost(clause: Clause) -> list[Clause]:
    if not clause.chain:
        return [clause]
    return [found for _kind, inner in clause.chain for found in _innermost(inner)]


def _refused(what: str) -> InvalidRequest:
    return InvalidRequest(f"_filter: {what}", code="not-supported")
