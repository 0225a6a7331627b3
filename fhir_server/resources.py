"""The resource types this server stores, and the R4 structural check every incoming resource passes.

Every concrete resource type of FHIR R4 4.0.1 is served (https://hl7.org/fhir/R4/resourcelist.html; the list
is generated with the element table by ``scripts/build_snapshots.py``). Structure is checked in one pass by
``validation.primitives`` against the R4 element table generated from the R4 StructureDefinitions: elements
(unknown ones refused), JSON types and regexes of primitives, cardinality and array-ness, required elements,
choice types, required bindings, contained resources. Then the invariants R4 itself defines (``obs-6``, ``per-1``,
``ref-1``...: ``validation.core_invariants``); a broken one of severity error is a 400, as the resource is no valid
FHIR. Nothing invalid reaches storage.

The ``fhir.resources`` R4B pydantic model round trip that used to run as a second check is gone from the write
path (issue #14: about 0.2 ms CPU per resource, more than the table itself): on every type whose R4B model
matches R4 it refused nothing the table accepts (``tests/validation/test_structure_parity.py`` holds the table
to that, over generated, broken and HL7's example resources; ``bench/README.md`` has the measurements).
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import InvalidRequest, Issue, NotFound
from fhir_server.permissions import CONFORMANCE_TYPES
from fhir_server.validation.core_invariants import core_invariant_issues
from fhir_server.validation.element_ids import duplicate_element_ids
from fhir_server.validation.primitives import RESOURCE_TYPES, check_primitive_types

# The registry's own clinical types (its profiles and rule table are about these).
REGISTRY_TYPES = (
    "Patient", "Organization", "Condition", "MedicationStatement", "Observation", "Procedure", "Group",
)
# The audit trail the server records itself (README, "Audit trail"): read and searched by admins only, never written
# over the API. Not among SUPPORTED_TYPES, which system-wide searches, ``_revinclude=*``, ``$everything``, exports and
# re-indexing go through: an AuditEvent is only ever found by asking for that type.
AUDIT_EVENT = "AuditEvent"
SUPPORTED_TYPES: tuple[str, ...] = tuple(t for t in RESOURCE_TYPES if t != AUDIT_EVENT)
SERVED_TYPES: tuple[str, ...] = RESOURCE_TYPES
# Every type that holds data rather than definitions the server runs on.
CLINICAL_TYPES = tuple(t for t in SUPPORTED_TYPES if t not in CONFORMANCE_TYPES)


def require_supported_type(resource_type: str) -> None:
    if resource_type not in SERVED_TYPES:
        raise NotFound(f"Resource type '{resource_type}' is not supported by this server",
                       code="not-supported")


def check_structure(resource: dict[str, Any], expected_type: str | None = None,
                    expected_id: str | None = None) -> None:
    """Raise InvalidRequest (400) listing every structural problem of ``resource``."""
    if not isinstance(resource, dict):
        raise InvalidRequest("The body must be a JSON object (a FHIR resource)", code="structure")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InvalidRequest("The resource has no resourceType", code="structure", expression=("resourceType",))
    if expected_type is not None and resource_type != expected_type:
        raise InvalidRequest(
            f"resourceType '{resource_type}' does not match the URL's type '{expected_type}'",
            code="invalid", expression=("resourceType",))
    require_supported_type(resource_type)
    if expected_id is not None and resource.get("id") is None:
        raise InvalidRequest("The resource must carry the id of the URL", code="required",
                             expression=(f"{resource_type}.id",))
    if expected_id is not None and resource.get("id") != expected_id:
        raise InvalidRequest(
            f"The resource id '{resource.get('id')}' does not match the URL's id '{expected_id}'",
            code="invalid", expression=(f"{resource_type}.id",))
    issues = check_primitive_types(resource)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if not errors:  # the invariants read a well-formed resource only
        errors = [i for i in core_invariant_issues(resource) if i.severity == "error"]
        errors += duplicate_element_ids(resource)
    if errors:
        raise InvalidRequest(issues=_dedupe(errors))


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str, tuple[str, ...]]] = set()
    out = []
    for issue in issues:
        key = (issue.diagnostics, issue.expression)
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out
