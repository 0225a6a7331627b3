"""Composite parameters: https://hl7.org/fhir/R4/search.html#composite.

Entry: ``{"k0": <entry of component 0>, "k1": <entry of component 1>, ...}``, one per combination of the
component values found on one element (evaluated by :mod:`fhir_server.search.extract`); each component entry
has the shape of its own parameter type.

Query: every component condition on the same entry (one ``$elemMatch``, fields under ``k0``, ``k1``...).
Composites are not sortable.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from fhir_server.search.param_types.common import Entry, Filter, prefixed

MODIFIERS = frozenset({"missing"})


def component_key(index: int) -> str:
    """The field of component ``index`` in a composite entry."""
    return f"k{index}"


def entries(per_component: Sequence[Sequence[Entry]]) -> list[Entry]:
    """One entry per combination of the components' entries (none when a component has none)."""
    if not per_component:
        return []
    keys = [component_key(i) for i in range(len(per_component))]
    return [dict(zip(keys, combination, strict=True)) for combination in itertools.product(*per_component)]


def value_filter(field: str, component_conditions: Sequence[Filter]) -> Filter:
    """The filter on ``sp.<code>``, given each component value's condition on one entry of its own type."""
    merged: Filter = {}
    for index, condition in enumerate(component_conditions):
        merged = _merge(merged, prefixed(condition, component_key(index)))
    return {field: {"$elemMatch": merged}}


def _merge(left: Filter, right: Filter) -> Filter:
    if "$or" in left and "$or" in right:
        rest = {k: v for k, v in {**left, **right}.items() if k != "$or"}
        return {**rest, "$and": [{"$or": left["$or"]}, {"$or": right["$or"]}]}
    return {**left, **right}
