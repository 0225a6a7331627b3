"""Compile a :class:`~fhir_server.search.model.ParsedSearch` into MongoDB filters, sorts and join plans.

Spec: https://hl7.org/fhir/R4/search.html. Matching semantics, per parameter type, on the ``sp`` entries of
:mod:`.entries` (a resource matches when *one* of its entries matches; OR-ed values combine with ``$or``,
repeated parameters with ``$and``):

* token (#token): ``code``, ``system|code``, ``|code`` (no system), ``system|``; ``:text`` starts-with on the
  normalized display/text; ``:not`` = resources with no matching entry, *including* resources without the
  element; ``:of-type``; ``:in/:not-in/:below/:above`` use caller-resolved code sets (``expansions``).
* string (#string): case/accent-insensitive starts-with (anchored regex on ``n``); ``:contains``; ``:exact``.
* reference (#reference): ``Type/id``; ``id`` alone matches any type (or the ``:Type``/single target type);
  absolute and canonical URLs on ``u``; ``:identifier``.
* date (#date, #prefix): search range ``[pl, ph)`` vs entry range ``[lo, hi)``: eq ``lo>=pl & hi<=ph``;
  ne: an entry that is not eq; gt ``hi>ph``; lt ``lo<pl``; ge ``gt | eq``; le ``lt | eq``; sa ``lo>=ph``;
  eb ``hi<=pl``; ap: overlap with the search range widened by 10% of its distance to now (at least 1 day).
* number/quantity (#number, #quantity): eq/ne on the implicit precision ranges (the search range must contain
  the entry's range); gt/lt/ge/le compare the *exact* values (``vl``/``vh``); sa ``vl>=ph``; eb ``vh<pl``;
  ap +/-10% of the value. Quantity ``n|system|code`` also matches ``s``/``c``; ``n||code`` matches ``c``
  or ``u``.
* uri (#uri): exact, ``:below`` (prefix), ``:above`` (any path prefix of the value).
* composite (#composite): all component conditions on the same entry (``k0``, ``k1``...).
* ``:missing=true|false`` on any parameter: the ``sp`` key is absent/present.
* ``_id`` on the document ``_id``; ``_lastUpdated`` on the document's ``lastUpdated`` instant.

Sorting (#_sort): ascending on the smallest value of the parameter (``sp._sort.<code>.a``, then the largest),
descending on the largest (``sp._sort.<code>.d``, then the smallest); resources without the parameter sort
first ascending, last descending (the MongoDB null order); ``_id`` is always the final tie-breaker, in the
direction of the last key. Date conditions also bound the scalar sort keys (see :func:`_implied_sort_bound`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir_server.errors import InvalidRequest
from fhir_server.search.extract import SORT_KEY
from fhir_server.search.model import (
    Clause,
    CompositeValue,
    DateValue,
    HasClause,
    Include,
    MissingValue,
    NumberValue,
    ParsedSearch,
    ReferenceValue,
    StringValue,
    TerminologyRequest,
    TokenValue,
    UriValue,
    Value,
)
from fhir_server.search.values import d128, normalize_text

Filter = dict[str, Any]
Expansions = Mapping[TerminologyRequest, Iterable[tuple[str | None, str]]]
MATCH_NOTHING: Filter = {"_id": {"$in": []}}


@dataclass(frozen=True)
class ChainJoin:
    """Chained parameter: the outer document matches when ``outer_field`` (e.g. ``sp.subject.r``) is one of
    the ``"Type/id"`` of the documents of a target type matching that target's ``inner`` search."""

    outer_field: str
    targets: tuple[tuple[str, CompiledSearch], ...]

    def join_filter(self, ids_by_type: Mapping[str, Iterable[str]]) -> Filter:
        refs = sorted(f"{kind}/{ident}" for kind, ids in ids_by_type.items() for ident in ids)
        return {self.outer_field: {"$in": refs}}


@dataclass(frozen=True)
class HasJoin:
    """Reverse chain: the outer document (type ``target_type``) matches when a ``source_type`` document
    matching ``inner`` refers to it through ``sp.<source_code>`` (read ``i`` of entries whose ``t`` is the
    outer type)."""

    source_type: str
    source_code: str
    target_type: str
    inner: CompiledSearch

    @property
    def projection(self) -> dict[str, int]:
        return {f"sp.{self.source_code}": 1}

    def referenced_ids(self, source_docs: Iterable[Mapping[str, Any]]) -> set[str]:
        ids: set[str] = set()
        for doc in source_docs:
            for entry in doc.get("sp", {}).get(self.source_code, ()):
                if entry.get("t") == self.target_type and entry.get("i"):
                    ids.add(entry["i"])
        return ids

    @staticmethod
    def join_filter(ids: Iterable[str]) -> Filter:
        return {"_id": {"$in": sorted(ids)}}


@dataclass(frozen=True)
class IncludePlan:
    """``_include`` (follow ``sp.<code>`` of matches) or ``_revinclude`` (find ``source_type`` documents whose
    ``sp.<code>.r`` is a match's ``Type/id``)."""

    source_type: str
    codes: tuple[str, ...]
    target_type: str | None
    iterate: bool
    reverse: bool

    def targets(self, doc: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(type, id) referenced by a matched document (``_include``), relative references only."""
        found: list[tuple[str, str]] = []
        for code in self.codes:
            for entry in doc.get("sp", {}).get(code, ()):
                kind, ident = entry.get("t"), entry.get("i")
                if kind and ident and (self.target_type is None or kind == self.target_type):
                    found.append((kind, ident))
        return found

    def reverse_filter(self, refs: Iterable[str]) -> Filter:
        """Filter on ``source_type`` for ``_revinclude``, given the ``Type/id`` of the matches."""
        wanted = sorted(set(refs))
        return _or([{f"sp.{code}.r": {"$in": wanted}} for code in self.codes])


@dataclass(frozen=True)
class CompiledSearch:
    resource_type: str | None
    filter: Filter
    sort: list[tuple[str, int]]
    chains: tuple[ChainJoin, ...] = ()
    has: tuple[HasJoin, ...] = ()
    includes: tuple[IncludePlan, ...] = ()

    @property
    def needs_joins(self) -> bool:
        return bool(self.chains or self.has)


def compile_search(parsed: ParsedSearch, *, expansions: Expansions | None = None,
                   registry: Any = None) -> CompiledSearch:
    """Compile; ``expansions`` must resolve every ``parsed.terminology_requests()``. ``registry`` (optional)
    expands ``_include=*``/``Source:*`` to the source type's reference parameters."""
    compiler = _Compiler(parsed, expansions or {})
    terms: list[Filter] = []
    chains: list[ChainJoin] = []
    has: list[HasJoin] = []
    for clause in parsed.clauses:
        if isinstance(clause, HasClause):
            has.append(compiler.has_join(parsed.resource_type, clause))
        elif clause.chain:
            chains.append(compiler.chain_join(clause))
        else:
            terms.append(compiler.clause_filter(clause))
    includes = tuple(_include_plan(i, registry) for i in parsed.includes)
    return CompiledSearch(parsed.resource_type, _and(terms), compile_sort(parsed), tuple(chains), tuple(has),
                          includes)


def compile_sort(parsed: ParsedSearch) -> list[tuple[str, int]]:
    spec: list[tuple[str, int]] = []
    for key in parsed.sort:
        direction = -1 if key.descending else 1
        if key.code == "_id":
            spec.append(("_id", direction))
        elif key.code == "_lastUpdated":
            spec.append(("lastUpdated", direction))
        else:  # by the smallest value, then the largest, ascending; the reverse descending
            first, second = ("d", "a") if key.descending else ("a", "d")
            spec.append((f"sp.{SORT_KEY}.{key.code}.{first}", direction))
            spec.append((f"sp.{SORT_KEY}.{key.code}.{second}", direction))
    if not any(field == "_id" for field, _ in spec):
        # the tie-breaker follows the last key's direction, so that an index (..., key, _id) serves the sort
        # read forwards or backwards
        spec.append(("_id", spec[-1][1] if spec else 1))
    return spec


def _include_plan(include: Include, registry: Any) -> IncludePlan:
    codes: tuple[str, ...] = (include.param_code,)
    if include.param_code == "*" and include.source_type != "*" and registry is not None:
        params = registry.for_type(include.source_type)
        codes = tuple(sorted(c for c, p in params.items() if p.type == "reference" and p.indexed))
    return IncludePlan(include.source_type, codes, include.target_type, include.iterate, include.reverse)


def _and(terms: list[Filter]) -> Filter:
    terms = [t for t in terms if t]
    if not terms:
        return {}
    return terms[0] if len(terms) == 1 else {"$and": terms}


def _or(terms: list[Filter]) -> Filter:
    return terms[0] if len(terms) == 1 else {"$or": terms}


def _prefixed(condition: Filter, prefix: str) -> Filter:
    """Rewrite an entry condition's field names under ``prefix`` (for composite components)."""
    out: Filter = {}
    for key, value in condition.items():
        if key in ("$or", "$and", "$nor"):
            out[key] = [_prefixed(v, prefix) for v in value]
        else:
            out[f"{prefix}.{key}"] = value
    return out


class _Compiler:
    def __init__(self, parsed: ParsedSearch, expansions: Expansions) -> None:
        self.parsed = parsed
        self.expansions = expansions
        self.now = parsed.now or datetime.now(UTC)

    # -- joins ---------------------------------------------------------------------------------------------
    def chain_join(self, clause: Clause) -> ChainJoin:
        targets = []
        for kind, inner in clause.chain:
            nested = ParsedSearch(kind, (inner,), now=self.parsed.now)
            targets.append((kind, compile_search(nested, expansions=self.expansions)))
        return ChainJoin(f"sp.{clause.param.code}.r", tuple(targets))

    def has_join(self, target_type: str | None, clause: HasClause) -> HasJoin:
        nested = ParsedSearch(clause.source_type, (clause.inner,), now=self.parsed.now)
        inner = compile_search(nested, expansions=self.expansions)
        return HasJoin(clause.source_type, clause.param.code, target_type or "", inner)

    # -- clauses -------------------------------------------------------------------------------------------
    def clause_filter(self, clause: Clause) -> Filter:
        code, modifier = clause.param.code, clause.modifier
        if clause.values and isinstance(clause.values[0], MissingValue):
            return self._missing(clause.param.code, clause.values[0].missing)
        if code == "_id":
            ids = [v.code for v in clause.values if isinstance(v, TokenValue) and v.code]
            positive: Filter = {"_id": ids[0]} if len(ids) == 1 else {"_id": {"$in": ids}}
            return {"$nor": [positive]} if modifier == "not" else positive
        if code == "_lastUpdated":
            return _or([_date_condition("lastUpdated", v, self.now, scalar=True)
                        for v in clause.values if isinstance(v, DateValue)])
        field = f"sp.{code}"
        if clause.param.type == "token" and modifier in ("in", "not-in", "below", "above"):
            return self._terminology(field, clause)
        positives = [self._value_filter(field, clause, v) for v in clause.values]
        if modifier == "not":
            return {"$nor": positives}
        if clause.param.type == "date" and modifier is None:
            positives = [_and([p, _implied_sort_bound(code, v, self.now)]) if isinstance(v, DateValue) else p
                         for p, v in zip(positives, clause.values, strict=True)]
        return _or(positives)

    @staticmethod
    def _missing(code: str, missing: bool) -> Filter:
        if code == "_lastUpdated":
            return {"lastUpdated": {"$exists": not missing}}
        if code == "_id":
            return {} if not missing else dict(MATCH_NOTHING)
        return {f"sp.{code}": {"$exists": not missing}}

    def _value_filter(self, field: str, clause: Clause, value: Value) -> Filter:
        if isinstance(value, DateValue):
            return _date_condition(field, value, self.now)
        if isinstance(value, CompositeValue):
            parts = [_prefixed(self._entry_condition(clause, v), f"k{i}") for i, v in enumerate(value.parts)]
            merged: Filter = {}
            for part in parts:
                merged = _merge(merged, part)
            return {field: {"$elemMatch": merged}}
        if isinstance(value, UriValue):
            return {field: _uri_condition(value, clause.modifier)}
        return _elem_match(field, self._entry_condition(clause, value))

    def _entry_condition(self, clause: Clause, value: Value) -> Filter:
        modifier = clause.modifier
        if isinstance(value, TokenValue):
            return token_condition(value, modifier)
        if isinstance(value, StringValue):
            return string_condition(value, modifier)
        if isinstance(value, ReferenceValue):
            return reference_condition(value, modifier, clause.param.target)
        if isinstance(value, NumberValue):
            return number_condition(value)
        if isinstance(value, DateValue):
            return date_entry_condition(value, self.now)
        if isinstance(value, UriValue):
            return {"$eq": value.uri}
        raise InvalidRequest(f"{clause.name}: unsupported value", code="not-supported")

    def _terminology(self, field: str, clause: Clause) -> Filter:
        pairs: set[tuple[str | None, str]] = set()
        for request in clause.terminology:
            if request not in self.expansions:
                raise InvalidRequest(f"{clause.name}: the code set of {request} was not resolved",
                                     code="not-supported")
            pairs.update(self.expansions[request])
        positive = _code_set_filter(field, pairs)
        return {"$nor": [positive]} if clause.modifier == "not-in" else positive


def _merge(left: Filter, right: Filter) -> Filter:
    if "$or" in left and "$or" in right:
        rest = {k: v for k, v in {**left, **right}.items() if k != "$or"}
        return {**rest, "$and": [{"$or": left["$or"]}, {"$or": right["$or"]}]}
    return {**left, **right}


def _elem_match(field: str, condition: Filter) -> Filter:
    """``{field.key: v}`` for one plain key, ``$elemMatch`` otherwise (all conditions on the same entry)."""
    if len(condition) == 1:
        key, value = next(iter(condition.items()))
        if not key.startswith("$"):
            return {f"{field}.{key}": value}
    return {field: {"$elemMatch": condition}}


def _code_set_filter(field: str, pairs: set[tuple[str | None, str]]) -> Filter:
    if not pairs:
        return dict(MATCH_NOTHING)
    by_system: dict[str | None, list[str]] = {}
    for system, code in sorted(pairs, key=lambda p: (p[0] or "", p[1])):
        by_system.setdefault(system, []).append(code)
    options = [{"s": system, "c": {"$in": codes}} for system, codes in by_system.items()]
    return {field: {"$elemMatch": _or(options)}}


# -- per-type entry conditions (field names relative to one entry) ---------------------------------

def token_condition(value: TokenValue, modifier: str | None) -> Filter:
    if modifier == "text":
        return {"t": {"$regex": "^" + re.escape(normalize_text(value.raw))}}
    if modifier == "of-type":
        return {"c": value.code, "ty": {"$elemMatch": {"s": value.type_system, "c": value.type_code}}}
    condition: Filter = {}
    if value.system is not None:
        condition["s"] = value.system or None  # "" (|code) means: entry without system
    if value.code is not None:
        condition["c"] = value.code
    return condition


def string_condition(value: StringValue, modifier: str | None) -> Filter:
    if modifier == "exact":
        return {"x": value.text}
    pattern = re.escape(normalize_text(value.text))
    return {"n": {"$regex": pattern if modifier == "contains" else "^" + pattern}}


def reference_condition(value: ReferenceValue, modifier: str | None, targets: tuple[str, ...]) -> Filter:
    if value.identifier is not None:
        token = value.identifier
        condition: Filter = {"ic": token.code}
        if token.system is not None:
            condition["is"] = token.system or None
        return condition
    if value.url is not None:
        return {"u": value.url}
    kind = value.type or (modifier if modifier and modifier[0].isupper() else None)
    if kind is None and len(targets) == 1:
        kind = targets[0]
    if kind is None:
        return {"i": value.id}
    condition = {"r": f"{kind}/{value.id}"}
    if value.version:
        condition["v"] = value.version
    return condition


def number_condition(value: NumberValue) -> Filter:
    exact, lo, hi = d128(value.value), d128(value.lo), d128(value.hi)
    condition: Filter
    match value.prefix:
        case "eq":
            condition = {"lo": {"$gte": lo}, "hi": {"$lte": hi}}
        case "ne":
            condition = {"$or": [{"lo": {"$lt": lo}}, {"hi": {"$gt": hi}}]}
        case "gt":
            condition = {"vh": {"$gt": exact}}
        case "lt":
            condition = {"vl": {"$lt": exact}}
        case "ge":
            condition = {"vh": {"$gte": exact}}
        case "le":
            condition = {"vl": {"$lte": exact}}
        case "sa":
            condition = {"vl": {"$gte": hi}}
        case "eb":
            condition = {"vh": {"$lt": lo}}
        case _:  # ap
            margin = abs(value.value) / Decimal(10)
            upper, lower = d128(value.value + margin), d128(value.value - margin)
            condition = {"vl": {"$lte": upper}, "vh": {"$gte": lower}}
    return _with_units(condition, value)


def _with_units(condition: Filter, value: NumberValue) -> Filter:
    if value.system:
        condition["s"] = value.system
    if value.code and value.system:
        condition["c"] = value.code
    elif value.code:
        units = [{"c": value.code}, {"u": value.code}]
        if "$or" in condition:
            return {"$and": [{"$or": condition.pop("$or")}, {"$or": units}], **condition}
        condition["$or"] = units
    return condition


def _approximate_margin(value: DateValue, now: datetime) -> timedelta:
    distance = abs(now - value.range.lo)
    return max(distance / 10, timedelta(days=1))


def date_entry_condition(value: DateValue, now: datetime) -> Filter:
    pl, ph = value.range.lo, value.range.hi
    eq: Filter = {"lo": {"$gte": pl}, "hi": {"$lte": ph}}
    match value.prefix:
        case "eq":
            return eq
        case "ne":
            return {"$or": [{"lo": {"$lt": pl}}, {"hi": {"$gt": ph}}]}
        case "gt":
            return {"hi": {"$gt": ph}}
        case "lt":
            return {"lo": {"$lt": pl}}
        case "ge":
            return {"$or": [{"hi": {"$gt": ph}}, eq]}
        case "le":
            return {"$or": [{"lo": {"$lt": pl}}, eq]}
        case "sa":
            return {"lo": {"$gte": ph}}
        case "eb":
            return {"hi": {"$lte": pl}}
        case _:  # ap
            margin = _approximate_margin(value, now)
            return {"lo": {"$lt": ph + margin}, "hi": {"$gt": pl - margin}}


def _implied_sort_bound(code: str, value: DateValue, now: datetime) -> Filter:
    """A condition on the scalar sort keys implied by a date condition, added so that the compound indexes
    ``(code, _sort.<date>.a|d, ...)`` can bound their scan (it never changes the result).

    With ``a`` = the smallest ``lo`` and ``d`` = the largest ``hi`` of the resource's entries (every entry has
    ``lo < hi``), an entry ``e`` matching the value implies: eq ``d > pl`` and ``a < ph``; gt/sa ``d > ph``
    (``e.hi > ph``, resp. ``e.hi > e.lo >= ph``); ge ``d > pl``; lt/eb ``a < pl``; le ``a < ph``; ap the same
    as eq on the widened range; ne nothing."""
    pl, ph = value.range.lo, value.range.hi
    low, high = f"sp.{SORT_KEY}.{code}.a", f"sp.{SORT_KEY}.{code}.d"
    match value.prefix:
        case "eq":
            return {high: {"$gt": pl}, low: {"$lt": ph}}
        case "gt" | "sa":
            return {high: {"$gt": ph}}
        case "ge":
            return {high: {"$gt": pl}}
        case "lt" | "eb":
            return {low: {"$lt": pl}}
        case "le":
            return {low: {"$lt": ph}}
        case "ap":
            margin = _approximate_margin(value, now)
            return {high: {"$gt": pl - margin}, low: {"$lt": ph + margin}}
        case _:
            return {}


def _date_condition(field: str, value: DateValue, now: datetime, *, scalar: bool = False) -> Filter:
    if not scalar:
        return _elem_match(field, date_entry_condition(value, now))
    return _instant_condition(field, value, now)


def _instant_condition(field: str, value: DateValue, now: datetime) -> Filter:
    """A stored instant ``t`` (millisecond precision, range ``[t, t+1ms)``) against a search range."""
    pl, ph = value.range.lo, value.range.hi
    match value.prefix:
        case "eq":
            return {field: {"$gte": pl, "$lt": ph}}
        case "ne":
            return {"$or": [{field: {"$lt": pl}}, {field: {"$gte": ph}}]}
        case "gt" | "sa":
            return {field: {"$gte": ph}}
        case "lt" | "eb":
            return {field: {"$lt": pl}}
        case "ge":
            return {field: {"$gte": pl}}
        case "le":
            return {field: {"$lt": ph}}
        case _:
            margin = _approximate_margin(value, now)
            return {field: {"$gte": pl - margin, "$lt": ph + margin}}


def _uri_condition(value: UriValue, modifier: str | None) -> Any:
    if modifier == "below":
        return {"$regex": "^" + re.escape(value.uri)}
    if modifier == "above":
        return {"$in": uri_prefixes(value.uri)}
    return value.uri


def uri_prefixes(uri: str) -> list[str]:
    """``http://a/b/c`` -> ``[http://a, http://a/b, http://a/b/c]`` (for ``:above``)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return [uri]
    segments = rest.split("/")
    return [f"{scheme}://{'/'.join(segments[:n])}" for n in range(1, len(segments) + 1)]
