"""Where a resource can hold an element whose targets R4 restricts (``type.targetProfile`` in the core definitions,
https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.type.targetProfile): the tables
``validation/reference_targets.py`` (Reference) and ``validation/canonical_targets.py`` (canonical) walk by.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fhir_server.validation.core import core_definitions
from fhir_server.validation.primitives import COMPLEX, RESOURCE, TYPES, Row

# Extensions are not walked: the core Extension's valueReference and valueCanonical take any resource (an
# extension's own definition narrows them, judged by its profile), and walking every element's extensions would
# walk the whole resource for the rare Identifier.assigner of a valueIdentifier
NOT_WALKED = frozenset({"Extension"})

# per type key, the elements to visit: (their row, the types they may name, or None for an element walked through)
Visits = dict[str, tuple[Row, frozenset[str] | None]]


@functools.cache
def visits_to(type_code: str) -> dict[str, Visits]:
    """For each type key whose content can hold an element of ``type_code`` (``Reference``, ``canonical``) with
    restricted targets: the elements leading to one (such an element, a complex element of a type holding one, a
    resource). Built by a fixpoint: Reference holds an Identifier, whose ``assigner`` is a Reference that names an
    Organization."""
    targets = targets_by_path(type_code)

    def restricted(key: str, name: str, row: Row) -> frozenset[str] | None:
        if row.target != type_code:
            return None
        return targets.get(f"{key}.{row.choice}[x]" if row.choice else f"{key}.{name}")

    holding = {key for key, info in TYPES.items() if key not in NOT_WALKED
               and any(restricted(key, name, row) or row.kind == RESOURCE for name, row in info.rows.items())}
    grown = True
    while grown:
        more = {key for key, info in TYPES.items() if key not in holding and key not in NOT_WALKED
                and any(row.kind == COMPLEX and row.target in holding for row in info.rows.values())}
        holding |= more
        grown = bool(more)
    return {key: {name: (row, restricted(key, name, row)) for name, row in TYPES[key].rows.items()
                  if restricted(key, name, row) or row.kind == RESOURCE
                  or (row.kind == COMPLEX and row.target in holding)}
            for key in holding}


def targets_by_path(type_code: str) -> dict[str, frozenset[str]]:
    """Element path (``Observation.subject``, ``QuestionnaireResponse.questionnaire``, ``Extension.value[x]``) ->
    the types its ``type_code`` may name, for the elements of the core definitions that do not take any resource."""
    table: dict[str, frozenset[str]] = {}
    for definition in core_definitions().values():
        for element in definition.get("snapshot", {}).get("element", ()):
            names = {url.rsplit("/", 1)[-1] for t in element.get("type", ()) if t.get("code") == type_code
                     for url in t.get("targetProfile", ())}
            if names and "Resource" not in names:
                table[element["path"]] = frozenset(names)
    return table


Found = Callable[[Any, frozenset[str], str], None]  # (the element's JSON value, the types it may name, its path)


def walk_targets(resource: dict[str, Any], type_code: str, found: Found) -> None:
    """Call ``found`` for every element of ``type_code`` with restricted targets in ``resource`` (its contained
    resources and the resources of a Bundle or Parameters included), walking only what can hold one."""
    visits = visits_to(type_code)
    resource_type = resource.get("resourceType")
    if isinstance(resource_type, str) and resource_type in visits:
        _walk(resource, resource_type, resource_type, visits, found)


def _walk(obj: dict[str, Any], key: str, path: str, visits: dict[str, Visits], found: Found) -> None:
    for name, value in obj.items():
        visit = visits[key].get(name)
        if visit is None:
            continue
        row, allowed = visit
        for i, item in enumerate(value) if type(value) is list else ((-1, value),):
            at = f"{path}.{name}" if i < 0 else f"{path}.{name}[{i}]"
            if allowed is not None:
                found(item, allowed, at)
            if type(item) is not dict:
                continue  # a wrong JSON type is the structure check's; a canonical is a string
            if row.kind == RESOURCE:
                inner = item.get("resourceType")
                if isinstance(inner, str) and inner in visits:
                    _walk(item, inner, at, visits, found)
            elif row.target in visits:
                _walk(item, row.target, at, visits, found)
