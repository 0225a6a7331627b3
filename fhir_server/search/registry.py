"""The search parameter registry: which parameters exist for each resource type, and how to evaluate them.

Spec: https://hl7.org/fhir/R4/search.html#standard (common parameters),
https://hl7.org/fhir/R4/searchparameter.html (definitions) and
https://hl7.org/fhir/R4/compartmentdefinition.html (the Patient, Encounter, Practitioner, RelatedPerson and
Device compartments).
The R4 definitions of every resource type come from ``data/search-parameters-r4.json`` and
``data/compartments.json`` (``scripts/extract_search_parameters.py``); SearchParameter resources created at
runtime are added with :meth:`SearchParameterRegistry.add_or_replace`.
FHIRPath expressions are compiled once per (parameter, resource type) and cached
(:mod:`fhir_server.search.expressions`). A registry built from given parameters compiles them all, so an
expression that cannot be compiled is logged (WARNING, with the parameter's url and code) when the registry is
built, and indexes nothing rather than failing writes; the 1,376 R4 definitions are compiled when their type is
first used instead (a test compiles them all), which keeps the server's start fast.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from fhir_server.errors import InvalidRequest
from fhir_server.search.expressions import CompiledBranch, compile_expression
from fhir_server.search.index_layout import (
    INDEX_FIELD,
    SORT_ASCENDING,
    SORT_DESCENDING,
    SORT_FIELD,
    param_path,
    sort_path,
)
from fhir_server.search.param_types import date, reference, token

DATA_DIR = Path(__file__).resolve().parent / "data"
GENERIC_BASES = frozenset({"Resource", "DomainResource"})
PARAM_TYPES = frozenset({"number", "date", "string", "token", "reference", "composite", "quantity", "uri",
                         "special"})
# The compartments R4 defines (https://hl7.org/fhir/R4/compartmentdefinition.html), in data/compartments.json.
COMPARTMENT_TYPES = ("Device", "Encounter", "Patient", "Practitioner", "RelatedPerson")
# Parameters answered from top-level document fields, never extracted into ``sp``.
TOP_LEVEL_PARAMS = frozenset({"_id", "_lastUpdated"})
# (url, type) of the indexed R4 definitions that cannot be evaluated for a type they apply to: composites whose
# components do not compile. Knowing it, the CapabilityStatement says which R4 parameters are evaluable without
# compiling the 1,376 R4 expressions on the first GET /metadata (0.65 CPU s and 11 MiB, measured with
# bench/startup.py); a test recompiles every R4 definition for every type and compares.
R4_UNEVALUABLE = frozenset({
    ("http://hl7.org/fhir/SearchParameter/MolecularSequence-chromosome-variant-coordinate", "MolecularSequence"),
    ("http://hl7.org/fhir/SearchParameter/MolecularSequence-referenceseqid-variant-coordinate",
     "MolecularSequence"),
})

IndexSpec = list[tuple[str, int]]
WILDCARD: IndexSpec = [("$**", 1)]
# ``_has:<type>:subject:<token>=x`` over these token parameters streams its referenced ids from an index
# (``fhir_server/search/semijoin.py``; bench/README.md, "`_has` at scale")
HAS_STREAM_TOKENS = ("value-concept",)  # one index more per Observation write; `code` would be one more
HAS_STREAM_REFERENCE = "subject"


def has_stream_index(token_code: str, reference_code: str) -> IndexSpec:
    """The matches of a token in the order of the smallest (then largest) reference of ``reference_code``: the
    reference sort keys are scalars, so the index combines them with the token's array legally, whereas
    ``sp.<reference_code>`` itself is an array (MongoDB refuses an index over two arrays of one document)."""
    return [(param_path(token_code, token.CODE), 1), (param_path(token_code, token.SYSTEM), 1),
            (sort_path(reference_code, SORT_ASCENDING), 1), (sort_path(reference_code, SORT_DESCENDING), 1)]
WILDCARD_PROJECTION = {"resource": 0, f"{INDEX_FIELD}.{SORT_FIELD}": 0, "vid": 0, "deleted": 0, "lastUpdated": 0}
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Component:
    """One component of a composite parameter (``SearchParameter.component``)."""

    definition: str
    expression: str


@dataclass(frozen=True)
class SearchParam:
    """A search parameter definition (the fields of ``SearchParameter`` that the engine uses)."""

    url: str
    code: str
    base: tuple[str, ...]
    type: str
    expression: str | None = None
    target: tuple[str, ...] = ()
    modifier: tuple[str, ...] = ()
    comparator: tuple[str, ...] = ()
    multiple_or: bool | None = None
    multiple_and: bool | None = None
    components: tuple[Component, ...] = ()
    name: str | None = None

    @property
    def indexed(self) -> bool:
        """True when values are extracted into ``sp`` at write time."""
        return bool(self.expression) and self.code not in TOP_LEVEL_PARAMS and self.type != "special"

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any]) -> SearchParam:
        """Build from a SearchParameter resource; raises ``InvalidRequest`` when it cannot be used."""
        missing = [k for k in ("url", "code", "base", "type") if not resource.get(k)]
        if missing:
            raise InvalidRequest(f"SearchParameter lacks {', '.join(missing)}", code="required")
        if resource["type"] not in PARAM_TYPES:
            raise InvalidRequest(f"SearchParameter.type {resource['type']!r} is unknown", code="value")
        components = tuple(Component(c["definition"], c["expression"]) for c in resource.get("component", ()))
        return cls(
            url=resource["url"], code=resource["code"], base=tuple(resource["base"]), type=resource["type"],
            expression=resource.get("expression"), target=tuple(resource.get("target", ())),
            modifier=tuple(resource.get("modifier", ())), comparator=tuple(resource.get("comparator", ())),
            multiple_or=resource.get("multipleOr"), multiple_and=resource.get("multipleAnd"),
            components=components, name=resource.get("name"),
        )


@dataclass
class _Caches:
    by_type: dict[str, Mapping[str, SearchParam]] = field(default_factory=dict)
    by_base: dict[str, list[tuple[int, SearchParam]]] | None = None  # base -> (position, parameter)
    branches: dict[tuple[str, str], list[CompiledBranch]] = field(default_factory=dict)
    derived: dict[tuple[str, str], Any] = field(default_factory=dict)

    def without(self, url: str) -> _Caches:
        """Caches after the parameter ``url`` changed: views and plans are rebuilt, the compiled expressions of
        the other parameters are kept (a server start adds stored parameters one by one)."""
        kept = {key: value for key, value in self.branches.items()
                if key[0] != url and not key[0].startswith(url + "#")}
        return _Caches(branches=kept)


@functools.cache
def _r4_definitions() -> tuple[tuple[SearchParam, ...], Mapping[str, Mapping[str, list[str]]]]:
    """The R4 definitions and compartments, read once per process: a registry is rebuilt from them at every
    change of the stored SearchParameters (seven times in a first start: the registry's own are created one by
    one), and SearchParam is immutable."""
    raw = json.loads((DATA_DIR / "search-parameters-r4.json").read_text(encoding="utf-8"))
    compartments = json.loads((DATA_DIR / "compartments.json").read_text(encoding="utf-8"))
    return tuple(SearchParam.from_resource(r) for r in raw), compartments


class SearchParameterRegistry:
    """Search parameters by URL, with per-type views and compiled expressions (thread-safe reads)."""

    def __init__(self, parameters: Iterable[SearchParam] = (),
                 compartments: Mapping[str, Mapping[str, list[str]]] | None = None, *, compile_now: bool = True
                 ) -> None:
        self._by_url: dict[str, SearchParam] = {}
        self._lock = threading.Lock()
        self._caches = _Caches()
        self._compartments = {k: dict(v) for k, v in (compartments or {}).items()}
        self._r4: Mapping[str, SearchParam] = {}  # the R4 definitions as loaded, whose verdicts R4_UNEVALUABLE has
        for parameter in parameters:
            self._by_url[parameter.url] = parameter
        if compile_now:
            self.compile_all()

    @classmethod
    def load_default(cls) -> SearchParameterRegistry:
        """The R4 parameters of every resource type and the R4 compartments (compiled on first use)."""
        parameters, compartments = _r4_definitions()
        registry = cls(parameters, compartments, compile_now=False)
        registry._r4 = MappingProxyType(dict(registry._by_url))
        return registry

    def add_or_replace(self, search_parameter: Mapping[str, Any]) -> SearchParam:
        """Register a SearchParameter resource (replacing any with the same URL). Validates its expression."""
        parameter = SearchParam.from_resource(search_parameter)
        self._check_expression(parameter)
        with self._lock:
            self._by_url[parameter.url] = parameter
            self._caches = self._caches.without(parameter.url)
        return parameter

    def compile_all(self) -> None:
        """Compile every indexed parameter for its base types now (logging the ones that cannot be compiled)
        rather than on the first write of each type."""
        for parameter in self.all():
            if not parameter.indexed:
                continue
            for resource_type in parameter.base:
                self.branches(parameter, resource_type)
            for index in range(len(parameter.components)):
                self.component_branches(parameter, index)

    def remove(self, url: str) -> bool:
        with self._lock:
            removed = self._by_url.pop(url, None) is not None
            self._caches = self._caches.without(url)
        return removed

    def all(self) -> list[SearchParam]:
        return list(self._by_url.values())

    def by_url(self, url: str) -> SearchParam | None:
        return self._by_url.get(url)

    def for_type(self, resource_type: str) -> Mapping[str, SearchParam]:
        """Code -> parameter for ``resource_type``, including Resource/DomainResource ones (later wins)."""
        caches = self._caches
        cached = caches.by_type.get(resource_type)
        if cached is None:
            if caches.by_base is None:
                caches.by_base = self._positions_by_base()
            chosen = {position: parameter for base in (resource_type, *GENERIC_BASES)
                      for position, parameter in caches.by_base.get(base, ())}
            view = {chosen[position].code: chosen[position] for position in sorted(chosen)}
            cached = MappingProxyType(view)
            caches.by_type[resource_type] = cached
        return cached

    def _positions_by_base(self) -> dict[str, list[tuple[int, SearchParam]]]:
        """Each base type's parameters with their position among all (a type's view is built from its own
        and the generic bases' lists, not from a pass over all 1,376 definitions per type)."""
        out: dict[str, list[tuple[int, SearchParam]]] = {}
        for position, parameter in enumerate(self._by_url.values()):
            for base in set(parameter.base):
                out.setdefault(base, []).append((position, parameter))
        return out

    def derived(self, kind: str, key: str, build: Callable[[], T]) -> T:
        """A value computed from the current parameters (e.g. an extraction plan), rebuilt after changes."""
        caches = self._caches
        found = caches.derived.get((kind, key))
        if found is None:
            found = build()
            caches.derived[(kind, key)] = found
        return found

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.for_type(resource_type).get(code)

    def branches(self, parameter: SearchParam, resource_type: str) -> list[CompiledBranch]:
        """Compiled expression branches of ``parameter`` that apply to ``resource_type`` (cached)."""
        return self._compiled(parameter, parameter.url, parameter.expression or "", resource_type)

    def targets_for(self, parameter: SearchParam, resource_type: str) -> tuple[str, ...]:
        """The types a reference parameter can name on ``resource_type``: its ``target`` list narrowed to the types
        its branches for that type restrict themselves to, when each has such a restriction
        (``Observation.subject.where(resolve() is Patient)``). R4's shared ``patient`` parameter lists Patient and
        Group, yet on an Observation only Patient references are indexed, so a bare id names a Patient
        (search.html#reference) and is matched as ``Patient/<id>``, the form the compound indexes hold."""
        if parameter.type != "reference":
            return parameter.target
        branches = self.branches(parameter, resource_type)
        if not branches or any(branch.reference_type is None for branch in branches):
            return parameter.target
        restrictions = {branch.reference_type for branch in branches if branch.reference_type is not None}
        return tuple(t for t in parameter.target if t in restrictions) or tuple(sorted(restrictions))

    def component_branches(self, parameter: SearchParam, index: int) -> list[CompiledBranch]:
        """Compiled expression of a composite's component ``index`` (relative to the composite's element)."""
        component = parameter.components[index]
        return self._compiled(parameter, f"{parameter.url}#{index}", component.expression, "")

    def component_param(self, parameter: SearchParam, index: int, resource_type: str) -> SearchParam | None:
        """The definition a component refers to (falls back to a same-URL lookup in the type's view)."""
        url = parameter.components[index].definition
        found = self._by_url.get(url)
        if found is not None:
            return found
        tail = url.rsplit("/", 1)[-1]
        return next((p for p in self.for_type(resource_type).values() if p.url.endswith("/" + tail)), None)

    def _compiled(self, parameter: SearchParam, key: str, expression: str,
                  resource_type: str) -> list[CompiledBranch]:
        caches = self._caches
        cache_key = (key, resource_type)
        found = caches.branches.get(cache_key)
        if found is None:
            label = f"{parameter.url} ({parameter.code})"
            try:
                found = compile_expression(expression, resource_type, label) if expression else []
            except Exception as exc:  # an unusable expression indexes nothing rather than failing writes
                log.warning("SearchParameter %s: expression %r cannot be compiled for %s and indexes nothing: %s",
                            label, expression, resource_type or "a composite's component", exc)
                found = []
            caches.branches[cache_key] = found
        return found

    def _check_expression(self, parameter: SearchParam) -> None:
        expressions = [parameter.expression or ""] + [c.expression for c in parameter.components]
        for expression in expressions:
            if not expression:
                continue
            try:
                for resource_type in parameter.base:
                    for branch in compile_expression(expression, resource_type):
                        empty = {"resourceType": resource_type}
                        branch.expression.evaluate(empty, empty)  # fhirpathpy reports some errors only here
            except Exception as exc:
                raise InvalidRequest(
                    f"SearchParameter {parameter.url}: expression {expression!r} cannot be compiled: {exc}",
                    code="invalid") from exc

    def evaluable(self, parameter: SearchParam, resource_type: str) -> bool:
        """True when a search with ``parameter`` on ``resource_type`` is really evaluated: ``_id`` and
        ``_lastUpdated``, or an indexed parameter whose expression compiles for the type and, for a composite,
        whose components resolve and compile. Special parameters (Location's ``near``) and parameters without an
        expression (``_text``, ``_content``) are not (the CapabilityStatement lists only evaluable ones)."""
        if parameter.code in TOP_LEVEL_PARAMS:
            return True
        if not parameter.indexed:
            return False
        if self._is_r4_as_loaded(parameter, resource_type):
            return (parameter.url, resource_type) not in R4_UNEVALUABLE
        if not self.branches(parameter, resource_type):
            return False
        return all(self.component_param(parameter, i, resource_type) is not None
                   and self.component_branches(parameter, i) for i in range(len(parameter.components)))

    def _is_r4_as_loaded(self, parameter: SearchParam, resource_type: str) -> bool:
        """True when ``parameter`` is an R4 definition as loaded, applying to ``resource_type``, and so are the
        definitions of its components (none replaced or removed since): R4_UNEVALUABLE then has its verdict."""
        if self._r4.get(parameter.url) is not parameter or not (
                resource_type in parameter.base or GENERIC_BASES & set(parameter.base)):
            return False
        by_url = self._by_url
        return all(by_url.get(c.definition) is self._r4.get(c.definition) is not None for c in parameter.components)

    def compartment_params(self, compartment_type: str, resource_type: str) -> list[str]:
        """Codes of the parameters linking ``resource_type`` to a ``compartment_type`` compartment."""
        return list(self._compartments.get(compartment_type, {}).get(resource_type, ()))

    def compartment_types(self) -> list[str]:
        """The compartments defined (``Patient``, ``Encounter``...)."""
        return sorted(self._compartments)

    @staticmethod
    def index_options(spec: IndexSpec) -> dict[str, Any]:
        """Options of an index of :meth:`index_specs`: the wildcard index covers every ``sp`` value but the
        scalar sort keys (a third of the keys of a registry Observation; compound indexes serve the sorts) and
        nothing of the stored resource itself."""
        return {"wildcardProjection": dict(WILDCARD_PROJECTION)} if list(spec) == WILDCARD else {}

    def serves_has_stream(self, resource_type: str, token_code: str, reference_code: str) -> bool:
        """Whether an index of ``resource_type`` reads the resources with a token ``token_code`` in the order of
        their ``reference_code`` (:func:`has_stream_index`), so that a ``_has`` can stream its ids."""
        return has_stream_index(token_code, reference_code) in self.index_specs(resource_type)

    def index_specs(self, resource_type: str) -> list[IndexSpec]:
        """MongoDB index key lists for the collection ``resource_type`` (a handful, far below 64).

        A wildcard index on the ``sp`` values (see :meth:`index_options`) serves any single-parameter query;
        compound indexes cover the hot paths
        (chosen from ``explain()`` of ``bench/search.py``): an equality on a token or reference followed by
        ``_id`` gives the default order (``_id``) straight from the index, so a page of 100 reads 100
        documents instead of walking the ``_id`` index or sorting every match; ``code`` followed by the scalar
        ``date`` sort keys serves "code + date range, sorted by date" (the compiler adds the bounds a date
        condition implies on those keys, so the scan is bounded and most keys are skipped without reading the
        document). Compound indexes never combine two
        different ``sp`` arrays (MongoDB refuses "parallel arrays"); the fields of one parameter's entries
        share one array, and ``sp._sort`` keys are scalars, so ``(sp.code.c, sp.code.s, sp._sort.date.d)``
        is legal. ``(token.c, token.s, sp._sort.subject.a, sp._sort.subject.d)`` serves
        ``Patient?_has:Observation:subject:<token>=x`` (:func:`has_stream_index`).
        """
        params = self.for_type(resource_type)

        def has(code: str) -> bool:
            return code in params and params[code].indexed

        specs: list[IndexSpec] = [list(WILDCARD), [("lastUpdated", 1), ("_id", 1)]]
        for code in ("identifier", "code"):
            if has(code):
                specs.append([(param_path(code, token.CODE), 1), (param_path(code, token.SYSTEM), 1), ("_id", 1)])
        if has("code") and has("date"):
            for first, second in ((SORT_DESCENDING, SORT_ASCENDING), (SORT_ASCENDING, SORT_DESCENDING)):
                specs.append([(param_path("code", token.CODE), 1), (param_path("code", token.SYSTEM), 1),
                              (sort_path("date", first), 1), (sort_path("date", second), 1), ("_id", 1)])
        for code in ("subject", "patient"):
            if has(code):
                specs.append([(reference.path(code), 1), ("_id", 1)])
        for code in HAS_STREAM_TOKENS:
            if has(code) and has(HAS_STREAM_REFERENCE):
                specs.append(has_stream_index(code, HAS_STREAM_REFERENCE))
        if has("url"):
            specs.append([(param_path("url"), 1)])  # uri entries are plain strings
        if has("date"):
            specs.append([(param_path("date", date.LOW), 1), (param_path("date", date.HIGH), 1)])
        return specs
