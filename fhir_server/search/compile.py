"""Compile a :class:`~fhir_server.search.model.ParsedSearch` into MongoDB filters, sorts and join plans.

Spec: https://hl7.org/fhir/R4/search.html. The conditions one search value compiles to, on the ``sp``
entries of its parameter, belong to the parameter type's module (:mod:`fhir_server.search.param_types`: token,
string, reference, date, number, quantity, uri, composite), chosen by the class of the parsed value. Here: a
resource matches a value when *one* of its entries matches; OR-ed values combine with ``$or``, repeated
parameters with ``$and``; ``:not`` (token, ``_id``) = resources with no matching entry, *including* resources
without the element; ``:in/:not-in/:below/:above`` use caller-resolved code sets (``expansions``);
``:missing=true|false`` on any parameter: the ``sp`` key is absent/present; ``_id`` on the document ``_id``;
``_lastUpdated`` on the document's ``lastUpdated`` instant; chains (#chaining), ``_has`` (#has) and
``_include``/``_revinclude`` (#include) become join plans the caller executes.

Sorting (#_sort): ascending on the smallest value of the parameter (``sp._sort.<code>.a``, then the largest),
descending on the largest (``sp._sort.<code>.d``, then the smallest); resources without the parameter sort
first ascending, last descending (the MongoDB null order); ``_id`` is always the final tie-breaker, in the
direction of the last key. Date conditions also bound the scalar sort keys
(:func:`fhir_server.search.param_types.date.implied_sort_bound`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_server.errors import InvalidRequest
from fhir_server.search import audit_values
from fhir_server.search.index_layout import INDEX_FIELD, SORT_ASCENDING, SORT_DESCENDING, param_path, sort_path
from fhir_server.search.model import (
    Clause,
    CompositeValue,
    DateValue,
    FilterAll,
    FilterClause,
    FilterNone,
    FilterTerm,
    HasClause,
    Include,
    MissingValue,
    NumberValue,
    ParsedSearch,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TerminologyRequest,
    TokenValue,
    UriValue,
    Value,
    conjuncts,
)
from fhir_server.search.param_types import composite, date, number, quantity, reference, string, token, uri
from fhir_server.search.param_types.common import MATCH_NOTHING, Criteria, Filter, any_of, elem_match

Expansions = Mapping[TerminologyRequest, Iterable[tuple[str | None, str]]]
EntryCondition = Callable[[Any, Criteria], Filter]

# The condition a search value puts on one entry, by the class of the value (= its parameter type).
ENTRY_CONDITIONS: Mapping[type, EntryCondition] = {
    TokenValue: token.entry_condition,
    StringValue: string.entry_condition,
    ReferenceValue: reference.entry_condition,
    NumberValue: number.entry_condition,
    QuantityValue: quantity.entry_condition,
    DateValue: date.entry_condition,
    UriValue: uri.entry_condition,
}


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
    token_code: str | None = None  # the inner parameter when it is a plain token (``semijoin``'s index)

    @property
    def projection(self) -> dict[str, int]:
        return {param_path(self.source_code): 1}

    def referenced_ids(self, source_docs: Iterable[Mapping[str, Any]]) -> set[str]:
        ids: set[str] = set()
        for doc in source_docs:
            for entry in doc.get(INDEX_FIELD, {}).get(self.source_code, ()):
                found = reference.target(entry)
                if found is not None and found[0] == self.target_type:
                    ids.add(found[1])
        return ids

    def referenced_ids_pipeline(self, source_filter: Filter) -> list[Filter]:
        """The aggregation that collects :meth:`referenced_ids` of the source documents matching
        ``source_filter`` in MongoDB, as one ``{"ids": [...]}`` row (no row when none matches)."""
        entry_type, entry_id = f"e.{reference.TYPE}", f"$e.{reference.ID}"
        return [{"$match": source_filter}, {"$project": {"_id": 0, "e": f"${param_path(self.source_code)}"}},
                {"$unwind": "$e"}, {"$match": {entry_type: self.target_type}},
                {"$group": {"_id": None, "ids": {"$addToSet": entry_id}}}]

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
    covering: Mapping[str, str] | None = None  # a code's covering parameter (``audit_values.covered_by``)

    def targets(self, doc: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(type, id) referenced by a matched document (``_include``), relative references only."""
        found: list[tuple[str, str]] = []
        for code in self.codes:
            for entry in doc.get(INDEX_FIELD, {}).get(code, ()):
                target = reference.target(entry)
                if target is not None and (self.target_type is None or target[0] == self.target_type):
                    found.append(target)
        return found

    def reverse_filter(self, refs: Iterable[str]) -> Filter:
        """Filter on ``source_type`` for ``_revinclude``, given the ``Type/id`` of the matches."""
        wanted = sorted(set(refs))
        covering = self.covering or {}
        return any_of([_and([{reference.path(code): {"$in": wanted}},
                             {reference.path(covering[code]): {"$in": wanted}} if code in covering else {}])
                       for code in self.codes])


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
    expands ``_include=*``/``Source:*`` to the source type's reference parameters and names the parameters
    covered by another's index (``audit_values.covered_by``)."""
    compiler = _Compiler(parsed, expansions or {}, registry)
    terms: list[Filter] = []
    chains: list[ChainJoin] = []
    has: list[HasJoin] = []
    for clause in parsed.clauses:
        if isinstance(clause, FilterClause):  # its top-level chains are joins; the rest one filter
            for term in conjuncts(clause.term):
                if isinstance(term, Clause) and term.chain:
                    chains.append(compiler.chain_join(term))
                else:
                    terms.append(compiler.filter_term(term))
        elif isinstance(clause, HasClause):
            has.append(compiler.has_join(parsed.resource_type, clause))
        elif clause.chain:
            chains.append(compiler.chain_join(clause))
        else:
            terms.append(compiler.clause_filter(clause))
            terms.append(compiler.covering_filter(clause))
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
            first, second = ((SORT_DESCENDING, SORT_ASCENDING) if key.descending
                             else (SORT_ASCENDING, SORT_DESCENDING))
            spec.append((sort_path(key.code, first), direction))
            spec.append((sort_path(key.code, second), direction))
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
    covering = {code: other for code in codes
                if registry is not None and (other := audit_values.covered_by(registry, include.source_type, code))}
    return IncludePlan(include.source_type, codes, include.target_type, include.iterate, include.reverse,
                       covering or None)


def _and(terms: list[Filter]) -> Filter:
    terms = [t for t in terms if t]
    if not terms:
        return {}
    return terms[0] if len(terms) == 1 else {"$and": terms}


class _Compiler:
    def __init__(self, parsed: ParsedSearch, expansions: Expansions, registry: Any = None) -> None:
        self.parsed = parsed
        self.expansions = expansions
        self.registry = registry
        self.now = parsed.now or datetime.now(UTC)

    # -- joins ---------------------------------------------------------------------------------------------
    def chain_join(self, clause: Clause) -> ChainJoin:
        targets = []
        for kind, inner in clause.chain:
            nested = ParsedSearch(kind, (inner,), now=self.parsed.now)
            targets.append((kind, compile_search(nested, expansions=self.expansions)))
        return ChainJoin(reference.path(clause.param.code), tuple(targets))

    def has_join(self, target_type: str | None, clause: HasClause) -> HasJoin:
        nested = ParsedSearch(clause.source_type, (clause.inner,), now=self.parsed.now)
        inner = compile_search(nested, expansions=self.expansions)
        plain = clause.inner
        token_code = (plain.param.code if isinstance(plain, Clause) and not plain.chain and plain.modifier is None
                      and plain.param.type == "token" else None)
        return HasJoin(clause.source_type, clause.param.code, target_type or "", inner, token_code)

    # -- clauses -------------------------------------------------------------------------------------------
    def filter_term(self, term: FilterTerm) -> Filter:
        """A ``_filter`` term without chains (``filter_param`` allows them at the top level only)."""
        if isinstance(term, Clause):
            return self.clause_filter(term)
        if isinstance(term, FilterNone):
            return {"$nor": [self.filter_term(term.item)]}
        items = [self.filter_term(item) for item in term.items]
        if isinstance(term, FilterAll):
            return _and(items)
        return {"$or": items}

    def clause_filter(self, clause: Clause) -> Filter:
        code, modifier = clause.param.code, clause.modifier
        if clause.values and isinstance(clause.values[0], MissingValue):
            return self._missing(clause.param.code, clause.values[0].missing)
        if code == "_id":
            ids = [v.code for v in clause.values if isinstance(v, TokenValue) and v.code]
            positive: Filter = {"_id": ids[0]} if len(ids) == 1 else {"_id": {"$in": ids}}
            return {"$nor": [positive]} if modifier == "not" else positive
        if code == "_lastUpdated":
            return any_of([date.instant_filter("lastUpdated", v, self.now)
                           for v in clause.values if isinstance(v, DateValue)])
        field = param_path(code)
        if clause.param.type == "token" and modifier in token.CODE_SET_MODIFIERS:
            return self._terminology(field, clause)
        criteria = Criteria(modifier, clause.param.target, self.now)
        positives = [self._value_filter(field, clause, v, criteria) for v in clause.values]
        if modifier == "not":
            return {"$nor": positives}
        if clause.param.type == "date" and modifier is None:
            positives = [_and([p, date.implied_sort_bound(code, v, self.now)]) if isinstance(v, DateValue) else p
                         for p, v in zip(positives, clause.values, strict=True)]
        return any_of(positives)

    def covering_filter(self, clause: Clause) -> Filter:
        """The same condition as ``clause`` on the parameter that covers its own (``audit_values.COVERING``), so
        that the covering parameter's index serves it; {} when none does or the condition is not positive (a
        resource without a matching entry matches ``:not`` and ``:missing=true``)."""
        code = clause.param.code
        if self.registry is None or clause.modifier == "not" or not clause.values:
            return {}
        if isinstance(clause.values[0], MissingValue):
            return {}
        covering = audit_values.covered_by(self.registry, self.parsed.resource_type, code)
        if covering is None:
            return {}
        criteria = Criteria(clause.modifier, clause.param.target, self.now)
        return any_of([self._value_filter(param_path(covering), clause, v, criteria) for v in clause.values])

    @staticmethod
    def _missing(code: str, missing: bool) -> Filter:
        if code == "_lastUpdated":
            return {"lastUpdated": {"$exists": not missing}}
        if code == "_id":
            return {} if not missing else dict(MATCH_NOTHING)
        return {param_path(code): {"$exists": not missing}}

    @staticmethod
    def _value_filter(field: str, clause: Clause, value: Value, criteria: Criteria) -> Filter:
        """The filter on ``field`` (``sp.<code>``) of one search value."""
        if isinstance(value, CompositeValue):
            return composite.value_filter(field, [_entry_condition(clause, part, criteria) for part in value.parts])
        if isinstance(value, UriValue):  # uri entries are plain strings
            return uri.value_filter(field, value, criteria)
        return elem_match(field, _entry_condition(clause, value, criteria))

    def _terminology(self, field: str, clause: Clause) -> Filter:
        pairs: set[tuple[str | None, str]] = set()
        for request in clause.terminology:
            if request not in self.expansions:
                raise InvalidRequest(f"{clause.name}: the code set of {request} was not resolved",
                                     code="not-supported")
            pairs.update(self.expansions[request])
        positive = token.code_set_filter(field, pairs, value_set=clause.modifier in ("in", "not-in"))
        return {"$nor": [positive]} if clause.modifier == "not-in" else positive


def _entry_condition(clause: Clause, value: Value, criteria: Criteria) -> Filter:
    condition = ENTRY_CONDITIONS.get(type(value))
    if condition is None:
        raise InvalidRequest(f"{clause.name}: unsupported value", code="not-supported")
    return condition(value, criteria)


