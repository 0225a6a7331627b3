"""Index values extracted at write time: the ``sp`` sub-document stored with each resource.

Spec: https://hl7.org/fhir/R4/search.html#ptypes (what each parameter type matches) and
https://hl7.org/fhir/R4/search.html#table (which element types each parameter type indexes).
``sp`` holds one key per parameter code that has values; each value is a list of *entries* (see
:mod:`fhir_server.search.entries` for their shape). ``sp["_sort"]`` holds scalar sort keys per parameter
(``{"a": <ascending key>, "d": <descending key>}``) so that keyset paging never compares against a multikey
array. ``_id`` and ``_lastUpdated`` are not extracted: they are the document's own ``_id`` and
``lastUpdated``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bson.decimal128 import Decimal128

from fhir_server.search import entries as E
from fhir_server.search.fhirpath import evaluate, may_match
from fhir_server.search.registry import SearchParam, SearchParameterRegistry

SORT_KEY = "_sort"

Entry = Any
Builder = Callable[[Any, str | None], list[Entry]]

BUILDERS: Mapping[str, Builder] = {
    "string": E.string_entries,
    "token": E.token_entries,
    "reference": E.reference_entries,
    "date": E.date_entries,
    "number": E.number_entries,
    "quantity": E.quantity_entries,
    "uri": E.uri_entries,
}


def extract_index_values(registry: SearchParameterRegistry, resource: Mapping[str, Any]) -> dict[str, Any]:
    """The ``sp`` sub-document of ``resource``: ``{code: [entries]}`` plus ``_sort`` keys."""
    resource_type = resource["resourceType"]
    sp: dict[str, Any] = {}
    sort: dict[str, dict[str, Any]] = {}
    for code, parameter in registry.for_type(resource_type).items():
        if not parameter.indexed:
            continue
        values = parameter_entries(registry, parameter, resource_type, resource)
        if not values:
            continue
        sp[code] = values
        key = E.sort_key(parameter.type, values)
        if key is not None:
            sort[code] = key
    if sort:
        sp[SORT_KEY] = sort
    return sp


def parameter_entries(registry: SearchParameterRegistry, parameter: SearchParam, resource_type: str,
                      node: Any) -> list[Entry]:
    """Entries of one parameter for one resource."""
    branches = registry.branches(parameter, resource_type)
    if not branches or not may_match(branches, node):
        return []
    if parameter.type == "composite":
        return composite_entries(registry, parameter, resource_type, node)
    builder = BUILDERS.get(parameter.type)
    if builder is None:
        return []
    found = evaluate(branches, node)
    return dedupe(itertools.chain.from_iterable(builder(value, restriction) for value, restriction in found))


def composite_entries(registry: SearchParameterRegistry, parameter: SearchParam, resource_type: str,
                      resource: Any) -> list[Entry]:
    """Composite (search.html#composite): one entry per combination of component values of one element.

    Entry shape: ``{"k0": <entry of component 0>, "k1": <entry of component 1>, ...}``.
    """
    out: list[Entry] = []
    for element, _restriction in evaluate(registry.branches(parameter, resource_type), resource):
        per_component: list[list[Entry]] = []
        for index in range(len(parameter.components)):
            component = registry.component_param(parameter, index, resource_type)
            builder = BUILDERS.get(component.type) if component is not None else None
            if builder is None:
                per_component = []
                break
            found = evaluate(registry.component_branches(parameter, index), element)
            per_component.append(dedupe(itertools.chain.from_iterable(builder(v, r) for v, r in found)))
        for combination in itertools.product(*per_component) if per_component else ():
            out.append({f"k{i}": entry for i, entry in enumerate(combination)})
    return dedupe(out)


def dedupe(entries: Iterable[Entry]) -> list[Entry]:
    items = list(entries)
    if len(items) < 2:
        return items
    seen: set[Any] = set()
    out: list[Entry] = []
    for entry in items:
        marker = _marker(entry)
        if marker not in seen:
            seen.add(marker)
            out.append(entry)
    return out


def _marker(entry: Entry) -> Any:
    if not isinstance(entry, dict):
        return entry
    return tuple(sorted((k, _hashable(v)) for k, v in entry.items()))


def _hashable(value: Any) -> Any:
    if isinstance(value, Decimal128):
        return value.bid
    if isinstance(value, dict):
        return _marker(value)
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value
