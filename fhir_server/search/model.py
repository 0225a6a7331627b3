"""Parsed search objects (the output of :mod:`.parse`, the input of :mod:`.compile`). The value of one
parameter type (``TokenValue``, ``DateValue``...) is defined by that type's module in :mod:`.param_types`.

Spec: https://hl7.org/fhir/R4/search.html (parameter types, modifiers, prefixes, chaining, ``_has``,
result parameters: https://hl7.org/fhir/R4/search.html#return).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from fhir_server.search.param_types.date import DateValue
from fhir_server.search.param_types.number import NumberValue
from fhir_server.search.param_types.quantity import QuantityValue
from fhir_server.search.param_types.reference import ReferenceValue
from fhir_server.search.param_types.string import StringValue
from fhir_server.search.param_types.token import TokenValue
from fhir_server.search.param_types.uri import UriValue
from fhir_server.search.registry import SearchParam

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True)
class MissingValue:
    raw: str
    missing: bool


@dataclass(frozen=True)
class CompositeValue:
    raw: str
    parts: tuple[Value, ...]


Value = (TokenValue | StringValue | DateValue | NumberValue | QuantityValue | ReferenceValue | UriValue
         | MissingValue | CompositeValue)


@dataclass(frozen=True)
class TerminologyRequest:
    """A code set the caller must resolve before compiling (token ``:below/:above/:in/:not-in``).

    ``direction`` is ``below``/``above`` (``system``+``code`` given) or ``in`` (``value_set`` given; also used
    for ``:not-in``). Resolve to a set of ``(system, code)`` pairs; pass them to ``compile_search``.
    """

    direction: str
    system: str | None = None
    code: str | None = None
    value_set: str | None = None


@dataclass(frozen=True)
class Clause:
    """One search parameter occurrence (an AND term); ``values`` are OR-ed.

    Chained (``subject:Patient.name=x``): ``chain`` holds one inner clause per target type (the parameter
    ``name`` may have a different definition on each type); ``values`` is then empty.
    """

    name: str  # as rendered in the applied query, e.g. "code:text", "subject:Patient.name"
    param: SearchParam
    modifier: str | None
    values: tuple[Value, ...] = ()
    chain: tuple[tuple[str, Clause], ...] = ()
    terminology: tuple[TerminologyRequest, ...] = ()

    def render_values(self) -> str:
        inner = self
        while inner.chain:
            inner = inner.chain[0][1]
        return ",".join(escape_value(v.raw) for v in inner.values)


@dataclass(frozen=True)
class HasClause:
    """``_has:Source:param:...=x``: resources referenced by ``source_type`` resources (via ``param``) that
    match ``inner`` (a Clause, or another HasClause when nested)."""

    name: str
    source_type: str
    param: SearchParam
    inner: Clause | HasClause

    def render_values(self) -> str:
        return self.inner.render_values()


@dataclass(frozen=True)
class FilterAll:
    """``a and b ...`` of a ``_filter``."""

    items: tuple[FilterTerm, ...]


@dataclass(frozen=True)
class FilterAny:
    """``a or b ...`` of a ``_filter``."""

    items: tuple[FilterTerm, ...]


@dataclass(frozen=True)
class FilterNone:
    """``not (a)`` of a ``_filter``."""

    item: FilterTerm


FilterTerm = Clause | FilterAll | FilterAny | FilterNone


@dataclass(frozen=True)
class FilterClause:
    """``_filter`` (search_filter.html): a tree of clauses, each one test of the filter
    (:mod:`fhir_server.search.filter_param`). A chained clause stands only among the filter's top-level ``and``
    terms (:func:`conjuncts`), where it becomes a join as a chained parameter does."""

    name: str
    raw: str
    term: FilterTerm

    def render_values(self) -> str:
        return self.raw


def conjuncts(term: FilterTerm) -> tuple[FilterTerm, ...]:
    """The terms ``term`` requires all of: the items of its top-level ``and``s, flattened."""
    if isinstance(term, FilterAll):
        return tuple(inner for item in term.items for inner in conjuncts(item))
    return (term,)


def filter_clauses(term: FilterTerm) -> list[Clause]:
    """Every clause of a ``_filter`` tree, in order."""
    if isinstance(term, Clause):
        return [term]
    if isinstance(term, FilterNone):
        return filter_clauses(term.item)
    return [clause for item in term.items for clause in filter_clauses(item)]


@dataclass(frozen=True)
class SortKey:
    code: str  # "_id", "_lastUpdated" or a parameter code
    descending: bool
    param: SearchParam | None = None

    def render(self) -> str:
        return ("-" if self.descending else "") + self.code


@dataclass(frozen=True)
class Include:
    """``_include``/``_revinclude`` = ``Source:param[:Target]`` (``param == "*"`` for all references)."""

    source_type: str
    param_code: str
    target_type: str | None = None
    iterate: bool = False
    reverse: bool = False

    def render(self) -> tuple[str, str]:
        name = ("_revinclude" if self.reverse else "_include") + (":iterate" if self.iterate else "")
        if self.source_type == "*":
            return name, "*"
        value = f"{self.source_type}:{self.param_code}" + (f":{self.target_type}" if self.target_type else "")
        return name, value


@dataclass(frozen=True)
class ParsedSearch:
    resource_type: str | None
    clauses: tuple[Clause | HasClause | FilterClause, ...] = ()
    types: tuple[str, ...] = ()  # _type (system search)
    sort: tuple[SortKey, ...] = ()
    count: int | None = None
    total: str | None = None  # none | estimate | accurate
    summary: str | None = None  # true | false | text | data | count
    elements: tuple[str, ...] = ()
    includes: tuple[Include, ...] = ()
    ignored: tuple[tuple[str, str], ...] = ()  # (parameter name, reason)
    now: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def terminology_requests(self) -> list[TerminologyRequest]:
        return [request for clause in _walk(self.clauses) for request in clause.terminology]

    def applied_pairs(self) -> list[tuple[str, str]]:
        """The parameters actually applied, in canonical form (for the Bundle ``self`` link)."""
        pairs = [(c.name, c.render_values()) for c in self.clauses]
        if self.types:
            pairs.append(("_type", ",".join(self.types)))
        if self.sort:
            pairs.append(("_sort", ",".join(k.render() for k in self.sort)))
        if self.count is not None:
            pairs.append(("_count", str(self.count)))
        for key, value in (("_total", self.total), ("_summary", self.summary)):
            if value is not None:
                pairs.append((key, value))
        if self.elements:
            pairs.append(("_elements", ",".join(self.elements)))
        pairs.extend(i.render() for i in self.includes)
        return pairs

    def applied_query(self) -> str:
        """URL-encoded query string of :meth:`applied_pairs`."""
        safe = ":|,$/*-._~"
        return "&".join(f"{quote(k, safe=safe)}={quote(v, safe=safe)}" for k, v in self.applied_pairs())


def _walk(clauses: tuple[Clause | HasClause | FilterClause, ...]) -> list[Clause]:
    out: list[Clause] = []
    for clause in clauses:
        if isinstance(clause, FilterClause):
            out.extend(_walk(tuple(filter_clauses(clause.term))))
            continue
        if isinstance(clause, HasClause):
            out.extend(_walk((clause.inner,)))
            continue
        out.append(clause)
        out.extend(_walk(tuple(inner for _type, inner in clause.chain)))
    return out


def escape_text(text: str, *, pipes: bool = True) -> str:
    """Literal ``text`` as a search value (search.html#escaping): the backslash, ``,`` and ``$`` escaped, and ``|``
    too unless ``pipes`` is false (a token's or a quantity's ``|`` separates its parts)."""
    escaped = text.replace("\\", "\\\\").replace(",", "\\,").replace("$", "\\$")
    return escaped.replace("|", "\\|") if pipes else escaped


def escape_value(raw: str) -> str:
    """Escape ``,`` in one value (search.html#escaping); ``raw`` keeps ``\\|`` and ``\\$`` as received."""
    out: list[str] = []
    index = 0
    while index < len(raw):
        ch = raw[index]
        if ch == "\\" and index + 1 < len(raw):
            out.append(raw[index:index + 2])
            index += 2
            continue
        out.append("\\," if ch == "," else ch)
        index += 1
    return "".join(out)
