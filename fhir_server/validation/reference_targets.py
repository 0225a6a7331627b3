"""The resource types a Reference element may name (https://hl7.org/fhir/R4/references.html, the element's
``type.targetProfile`` in the core definitions): ``Observation.subject`` names a Patient, Group, Device or
Location, never an Observation.

A literal reference (``Type/id``, relative or absolute, optionally versioned) of another type is reported as a
**warning**, not an error: HL7's own published examples hold five such references (``DeviceMetric-example``'s
``parent`` names a DeviceDefinition, ``OrganizationAffiliation-orgrole1`` a ``Network``) and every official
example loads unchanged. The registry's profiles, whose targets are narrower, make such a reference an error for
the registry's resources (``validation/profile.py``). A ``#contained``, ``urn:uuid:`` or logical reference
names no type and is not judged here.

It runs on every write, on the resource as stored (a transaction's ``urn:uuid:`` references already rewritten
to ``Type/id``), so it only walks the elements that can hold a restricted reference, directly or below: the
table of them per type is built once from the structure table of ``validation/primitives.py``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from fhir_server.errors import Issue
from fhir_server.validation.core import core_definitions
from fhir_server.validation.primitives import COMPLEX, RESOURCE, TYPES, Row

# A literal reference's type: ``Type/id``, optionally versioned, relative or absolute
_LITERAL = re.compile(r"^(?:https?://\S*/)?([A-Z][A-Za-z]*)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")

# Extensions are not walked: the core Extension's valueReference takes any resource (an extension's own
# definition narrows it, judged by its profile), and walking every element's extensions would walk the whole
# resource for the rare Identifier.assigner of a valueIdentifier
_NOT_WALKED = frozenset({"Extension"})

# per type key, the elements to visit: (their row, the types their references may name or None for any)
Visits = dict[str, tuple[Row, frozenset[str] | None]]


def reference_target_issues(resource: dict[str, Any]) -> list[Issue]:
    """A warning for every literal reference of ``resource`` (contained resources included) whose type its
    element does not allow."""
    issues: list[Issue] = []
    resource_type = resource.get("resourceType")
    if isinstance(resource_type, str) and resource_type in _visits():
        _walk(resource, resource_type, resource_type, issues)
    return issues


def _walk(obj: dict[str, Any], key: str, path: str, issues: list[Issue]) -> None:
    visits = _visits()[key]
    for name, value in obj.items():
        visit = visits.get(name)
        if visit is None:
            continue
        row, allowed = visit
        for i, item in enumerate(value) if type(value) is list else ((-1, value),):
            if type(item) is not dict:
                continue  # a wrong JSON type is the structure check's
            at = f"{path}.{name}" if i < 0 else f"{path}.{name}[{i}]"
            if allowed is not None:
                _check(item.get("reference"), allowed, at, issues)
            if row.kind == RESOURCE:
                inner = item.get("resourceType")
                if isinstance(inner, str) and inner in _visits():
                    _walk(item, inner, at, issues)
            elif row.target in _visits():
                _walk(item, row.target, at, issues)


def _check(reference: Any, allowed: frozenset[str], path: str, issues: list[Issue]) -> None:
    match = _LITERAL.match(reference) if type(reference) is str else None
    if match is not None and match.group(1) not in allowed:
        issues.append(Issue("warning", "structure", f"{path}.reference: a reference to {match.group(1)} is not "
                            f"one of the types this element names ({', '.join(sorted(allowed))})",
                            (f"{path}.reference",)))


@functools.cache
def _visits() -> dict[str, Visits]:
    """For each type key whose content can hold a restricted reference: the elements leading to one (a
    restricted Reference, a complex element of such a type, a resource). Built by a fixpoint: Reference holds an
    Identifier, whose ``assigner`` is a Reference that names an Organization."""
    targets = _targets_by_path()

    def restricted(key: str, name: str, row: Row) -> frozenset[str] | None:
        if row.target != "Reference":
            return None
        return targets.get(f"{key}.{row.choice}[x]" if row.choice else f"{key}.{name}")

    holding = {key for key, info in TYPES.items() if key not in _NOT_WALKED
               and any(restricted(key, name, row) or row.kind == RESOURCE for name, row in info.rows.items())}
    grown = True
    while grown:
        more = {key for key, info in TYPES.items() if key not in holding and key not in _NOT_WALKED
                and any(row.kind == COMPLEX and row.target in holding for row in info.rows.values())}
        holding |= more
        grown = bool(more)
    return {key: {name: (row, restricted(key, name, row)) for name, row in TYPES[key].rows.items()
                  if restricted(key, name, row) or row.kind == RESOURCE
                  or (row.kind == COMPLEX and row.target in holding)}
            for key in holding}


def _targets_by_path() -> dict[str, frozenset[str]]:
    """Element path (``Observation.subject``, ``Extension.value[x]``) -> the types its Reference may name, for
    the elements of the core definitions that do not take any resource."""
    table: dict[str, frozenset[str]] = {}
    for definition in core_definitions().values():
        for element in definition.get("snapshot", {}).get("element", ()):
            names = {url.rsplit("/", 1)[-1] for t in element.get("type", ()) if t.get("code") == "Reference"
                     for url in t.get("targetProfile", ())}
            if names and "Resource" not in names:
                table[element["path"]] = frozenset(names)
    return table
