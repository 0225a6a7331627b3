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
table of them per type is built once from the structure table of ``validation/primitives.py``
(``validation/target_tables.py``).
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.errors import Issue
from fhir_server.validation.target_tables import walk_targets

# A literal reference's type: ``Type/id``, optionally versioned, relative or absolute
_LITERAL = re.compile(r"^(?:https?://\S*/)?([A-Z][A-Za-z]*)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


def reference_target_issues(resource: dict[str, Any]) -> list[Issue]:
    """A warning for every literal reference of ``resource`` (contained resources included) whose type its
    element does not allow."""
    issues: list[Issue] = []

    def found(item: Any, allowed: frozenset[str], path: str) -> None:
        if type(item) is dict:
            _check(item.get("reference"), allowed, path, issues)

    walk_targets(resource, "Reference", found)
    return issues


def _check(reference: Any, allowed: frozenset[str], path: str, issues: list[Issue]) -> None:
    match = _LITERAL.match(reference) if type(reference) is str else None
    if match is not None and match.group(1) not in allowed:
        issues.append(Issue("warning", "structure", f"{path}.reference: a reference to {match.group(1)} is not "
                            f"one of the types this element names ({', '.join(sorted(allowed))})",
                            (f"{path}.reference",)))
