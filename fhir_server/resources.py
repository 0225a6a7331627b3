"""The resource types this server stores, and the R4 structural check every incoming resource passes.

Structure is checked twice: by the ``fhir.resources`` R4B models (elements, cardinality, formats; R4B parses
the R4 wire format of these types) and by ``validation.primitives`` (JSON types of primitives, which the lax
pydantic models coerce, and required bindings). Nothing invalid reaches storage.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_server.errors import InvalidRequest, Issue, NotFound
from fhir_server.permissions import CONFORMANCE_TYPES
from fhir_server.validation.primitives import check_primitive_types

CLINICAL_TYPES = (
    "Patient", "Organization", "Condition", "MedicationStatement", "Observation", "Procedure", "Group",
)
SUPPORTED_TYPES = CLINICAL_TYPES + CONFORMANCE_TYPES
# The audit trail the server records itself (README, "Audit trail"): read and searched by admins only, never written
# over the API. Not among SUPPORTED_TYPES, which system-wide searches, ``_revinclude=*``, ``$everything``, exports and
# re-indexing go through: an AuditEvent is only ever found by asking for that type.
AUDIT_EVENT = "AuditEvent"
SERVED_TYPES = (*SUPPORTED_TYPES, AUDIT_EVENT)


def require_supported_type(resource_type: str) -> None:
    if resource_type not in SERVED_TYPES:
        raise NotFound(f"Resource type '{resource_type}' is not supported by this server",
                       code="not-supported")


@cache
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def _pydantic_issues(resource_type: str, exc: ValidationError) -> list[Issue]:
    issues = []
    for err in exc.errors():
        path = resource_type
        for part in err.get("loc", ()):
            if isinstance(part, int):
                path += f"[{part}]"
            elif part != "__root__":
                path += f".{part}"
        kind = err.get("type", "")
        code = "structure" if kind in ("extra_forbidden", "list_type", "model_type", "dict_type") else "value"
        issues.append(Issue("error", code, f"{path}: {err.get('msg')}", (path,)))
    return issues


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
    issues: list[Issue] = []
    try:
        _model(resource_type).model_validate(resource)
    except ValidationError as exc:
        issues += _pydantic_issues(resource_type, exc)
    issues += check_primitive_types(resource)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
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
