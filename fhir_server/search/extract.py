"""Index values extracted at write time: the ``sp`` sub-document stored with each resource.

Spec: https://hl7.org/fhir/R4/search.html#ptypes (what each parameter type matches) and
https://hl7.org/fhir/R4/search.html#table (which element types each parameter type indexes).
``sp`` holds one key per parameter code that has values; each value is a list of *entries*, built by the
parameter type's module (:mod:`fhir_server.search.param_types`, which documents their shape). ``sp._sort``
holds scalar sort keys per parameter (:mod:`fhir_server.search.index_layout`) so that keyset paging never
compares against a multikey array. ``_id`` and ``_lastUpdated`` are not extracted: they are the document's
own ``_id`` and ``lastUpdated``.

Speed (this runs for every resource written): the parameters of a type are compiled once into a
:class:`TypePlan`, cached on the registry until its parameters change. The plan indexes parameters by the
top-level resource keys their expressions can read, so a resource only evaluates the parameters whose
elements it has (an Observation has ~45 parameters and ~8 keys). Within one resource, composite components
evaluated on the same element (``code`` of ``code-value-quantity``, ``code-value-concept``...) are computed
once. The entries themselves are unchanged by these shortcuts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bson.decimal128 import Decimal128

from fhir_server.search.expressions import CompiledBranch, evaluate
from fhir_server.search.index_layout import SORT_FIELD, SortKey, SortKeyBuilder
from fhir_server.search.param_types import ENTRY_BUILDERS, SORT_KEYS, composite
from fhir_server.search.param_types import EntryBuilder as Builder
from fhir_server.search.registry import SearchParam, SearchParameterRegistry

SORT_KEY = SORT_FIELD

Entry = Any


@dataclass(frozen=True)
class ComponentPlan:
    """One component of a composite: how to evaluate it on the composite's element, and build entries."""

    key: str  # memo key within one resource: the component expression and its type
    branches: list[CompiledBranch]
    builder: Builder


@dataclass(frozen=True)
class ParamPlan:
    position: int  # order of the parameter in ``registry.for_type`` (keeps ``sp`` key order stable)
    code: str
    type: str
    branches: list[CompiledBranch]
    builder: Builder | None
    components: tuple[ComponentPlan, ...] | None  # composites; None when a component is unusable
    sort_key: SortKeyBuilder | None = None  # None: not sortable (composite)


@dataclass(frozen=True)
class TypePlan:
    """The indexed parameters of one resource type, by the top-level keys their expressions read."""

    by_key: Mapping[str, tuple[ParamPlan, ...]]
    always: tuple[ParamPlan, ...]  # expressions whose keys are not known statically

    def candidates(self, resource: Mapping[str, Any]) -> list[ParamPlan]:
        chosen: dict[int, ParamPlan] = {plan.position: plan for plan in self.always}
        by_key = self.by_key
        for key in resource:
            for plan in by_key.get(key, ()):
                chosen[plan.position] = plan
        return [chosen[p] for p in sorted(chosen)]


def type_plan(registry: SearchParameterRegistry, resource_type: str) -> TypePlan:
    """The (cached) extraction plan of ``resource_type``."""
    return registry.derived("extract-plan", resource_type, lambda: _build_plan(registry, resource_type))


def _build_plan(registry: SearchParameterRegistry, resource_type: str) -> TypePlan:
    by_key: dict[str, list[ParamPlan]] = {}
    always: list[ParamPlan] = []
    for position, parameter in enumerate(registry.for_type(resource_type).values()):
        if not parameter.indexed:
            continue
        branches = registry.branches(parameter, resource_type)
        if not branches:
            continue
        plan = ParamPlan(position, parameter.code, parameter.type, branches, ENTRY_BUILDERS.get(parameter.type),
                         _component_plans(registry, parameter, resource_type)
                         if parameter.type == "composite" else None, SORT_KEYS.get(parameter.type))
        if plan.builder is None and plan.components is None:
            continue
        keys: set[str] = set()
        for branch in branches:
            if branch.top_keys is None:
                keys = set()
                always.append(plan)
                break
            keys |= branch.top_keys
        for key in keys:
            by_key.setdefault(key, []).append(plan)
    return TypePlan({k: tuple(v) for k, v in by_key.items()}, tuple(always))


def _component_plans(registry: SearchParameterRegistry, parameter: SearchParam,
                     resource_type: str) -> tuple[ComponentPlan, ...] | None:
    plans: list[ComponentPlan] = []
    for index, component in enumerate(parameter.components):
        definition = registry.component_param(parameter, index, resource_type)
        builder = ENTRY_BUILDERS.get(definition.type) if definition is not None else None
        if definition is None or builder is None:
            return None
        plans.append(ComponentPlan(f"{definition.type}:{component.expression}",
                                   registry.component_branches(parameter, index), builder))
    return tuple(plans)


def extract_index_values(registry: SearchParameterRegistry, resource: Mapping[str, Any]) -> dict[str, Any]:
    """The ``sp`` sub-document of ``resource``: ``{code: [entries]}`` plus ``_sort`` keys."""
    sp: dict[str, Any] = {}
    sort: dict[str, dict[str, Any]] = {}
    memo: dict[tuple[int, str], tuple[Any, list[Entry]]] = {}
    for plan in type_plan(registry, resource["resourceType"]).candidates(resource):
        if plan.components is not None:
            values = _composite(plan, plan.components, resource, memo)
        else:
            values = _entries(plan.branches, plan.builder, resource)  # type: ignore[arg-type]
        if not values:
            continue
        sp[plan.code] = values
        if plan.sort_key is not None:
            key = plan.sort_key(values)
            if key is not None:
                sort[plan.code] = key
    if sort:
        sp[SORT_KEY] = sort
    return sp


def parameter_entries(registry: SearchParameterRegistry, parameter: SearchParam, resource_type: str,
                      node: Any) -> list[Entry]:
    """Entries of one parameter for one resource (without the plan; for diagnostics and tests)."""
    branches = registry.branches(parameter, resource_type)
    if not branches:
        return []
    if parameter.type == "composite":
        components = _component_plans(registry, parameter, resource_type)
        if components is None:
            return []
        plan = ParamPlan(0, parameter.code, parameter.type, branches, None, components)
        return _composite(plan, components, node, {})
    builder = ENTRY_BUILDERS.get(parameter.type)
    return _entries(branches, builder, node) if builder is not None else []


def sort_key(param_type: str, values: list[Any]) -> SortKey | None:
    """Scalar sort keys of a parameter's entries (None for types that do not sort)."""
    builder = SORT_KEYS.get(param_type)
    return builder(values) if builder is not None else None


def _entries(branches: list[CompiledBranch], builder: Builder, node: Any) -> list[Entry]:
    out: list[Entry] = []
    for value, restriction in evaluate(branches, node):
        out.extend(builder(value, restriction))
    return dedupe(out)


def _composite(plan: ParamPlan, components: tuple[ComponentPlan, ...], resource: Any,
               memo: dict[tuple[int, str], tuple[Any, list[Entry]]]) -> list[Entry]:
    """Composite (search.html#composite): one entry per combination of component values of one element
    (:func:`fhir_server.search.param_types.composite.entries`)."""
    out: list[Entry] = []
    for element, _restriction in evaluate(plan.branches, resource):
        per_component: list[list[Entry]] = []
        for component in components:
            memo_key = (id(element), component.key)
            cached = memo.get(memo_key)
            if cached is None:  # the memo keeps ``element`` alive, so its id() is not reused meanwhile
                cached = (element, _entries(component.branches, component.builder, element))
                memo[memo_key] = cached
            found = cached[1]
            if not found:
                per_component = []
                break
            per_component.append(found)
        out.extend(composite.entries(per_component))
    return dedupe(out)


def dedupe(entries: Iterable[Entry]) -> list[Entry]:
    """Entries without repeats (dict equality), in first-seen order."""
    items = entries if isinstance(entries, list) else list(entries)
    if len(items) < 2:
        return items
    seen: set[Any] = set()
    out: list[Entry] = []
    for entry in items:
        marker: Any
        try:
            marker = frozenset(entry.items()) if isinstance(entry, dict) else entry
            hash(marker)
        except TypeError:  # Decimal128, lists, nested entries
            marker = _marker(entry)
        if marker not in seen:
            seen.add(marker)
            out.append(entry)
    return out


def _marker(entry: Entry) -> Any:
    if not isinstance(entry, dict):
        return entry
    return ("~", tuple(sorted((k, _hashable(v)) for k, v in entry.items())))


def _hashable(value: Any) -> Any:
    if isinstance(value, Decimal128):
        return value.bid
    if isinstance(value, dict):
        return _marker(value)
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value
