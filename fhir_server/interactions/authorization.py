"""The one point where a request is authorized, before anything is read or written.

Every request passes here with its interaction and resource type known: an HTTP request at the start of
``dispatch``, and every entry of a batch or transaction Bundle (a transaction's entries all before the first is
written, so a transaction with one forbidden entry stores nothing). A request needs permission letters on
resource types, as SMART scopes name them
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html): c create, r read/vread, u update/patch,
d delete, s search/history; an operation needs what it reads and writes. Each need must be allowed both by a
scope of the caller's token and by the caller's role (``security/roles.py``); otherwise ``Forbidden`` (403),
which a batch entry answers on its own. Which center's data the caller sees is the storage access policy's.
"""

from __future__ import annotations

from collections.abc import Iterable

from fhir_server.context import RequestContext
from fhir_server.errors import Forbidden
from fhir_server.interactions.request import PROVENANCE_HEADER, TRACED_WRITES, FhirRequest, Interaction
from fhir_server.permissions import Role
from fhir_server.resources import CLINICAL_TYPES, SERVED_TYPES, SUPPORTED_TYPES
from fhir_server.security.roles import role_allows
from fhir_server.security.scopes import allows

Need = tuple[str, str]  # (resource type, permission letter)

_LETTER = {
    Interaction.READ: "r", Interaction.VREAD: "r", Interaction.CREATE: "c", Interaction.UPDATE: "u",
    Interaction.PATCH: "u", Interaction.DELETE: "d", Interaction.SEARCH_TYPE: "s",
    Interaction.SEARCH_COMPARTMENT: "s", Interaction.HISTORY_TYPE: "s", Interaction.HISTORY_INSTANCE: "s",
}
_FREE = (Interaction.CAPABILITIES, Interaction.BATCH, Interaction.TRANSACTION)  # a Bundle's entries are checked


def authorize(ctx: RequestContext, request: FhirRequest) -> None:
    """Raise ``Forbidden`` when ``ctx``'s caller may not perform ``request``; return otherwise."""
    if ctx.role is Role.SYSTEM or request.interaction in _FREE:
        return
    required = needs(request)
    if required is None:  # an operation without a rule
        if ctx.role is Role.ADMIN:
            return
        raise Forbidden(f"Only an admin may call ${request.operation} ({request.method} {_what(request)})")
    for resource_type, letter in required:
        if not allows(ctx.scopes, resource_type, letter):
            raise Forbidden(f"The access token's scopes do not allow '{letter}' on {resource_type} "
                            f"({request.method} {_what(request)})")
        if not role_allows(ctx.role, resource_type, letter):
            raise Forbidden(f"A caller of role {ctx.role.value} may not do '{letter}' on {resource_type} "
                            f"({request.method} {_what(request)})")


def needs(request: FhirRequest) -> list[Need] | None:
    """The permission letters ``request`` needs, per resource type (None: an operation without a rule)."""
    kind = request.interaction
    if kind is Interaction.SEARCH_COMPARTMENT and request.resource_type is None:  # [base]/Patient/[id]/*
        return [(t, "s") for t in _types(request)]
    if kind in _LETTER:
        traced = kind in TRACED_WRITES and request.headers.get(PROVENANCE_HEADER) is not None
        return [(request.resource_type or "*", _LETTER[kind]), *([("Provenance", "c")] if traced else [])]
    if kind in (Interaction.SEARCH_SYSTEM, Interaction.HISTORY_SYSTEM):
        return [(t, "s") for t in _types(request)]
    return _operation_needs(request)


def _operation_needs(request: FhirRequest) -> list[Need] | None:
    """What each operation reads and writes. An operation without a rule here (None) is the system's and
    admin's only: a new operation is closed until its rule is written."""
    name, resource_type = request.operation or "", request.resource_type or "*"
    if name in ("validate", "lookup", "subsumes", "validate-code", "expand", "translate"):
        return [(resource_type, "r")]
    if name == "everything":
        return [(t, "r") for t in CLINICAL_TYPES]
    if name == "match":  # a search of Patients, graded
        return [("Patient", "s")]
    if name == "lastn":  # a search of Observations, grouped
        return [("Observation", "s")]
    if name == "meta":  # a read of one resource, else a search of the type or of every type (as a system search)
        if request.resource_id is not None:
            return [(resource_type, "r")]
        return [(resource_type, "s")] if request.resource_type else [(t, "s") for t in _types(request)]
    if name in ("meta-add", "meta-delete"):  # an update of the resource, but for its meta
        return [(resource_type, "u")]
    if name == "risk-scores":
        return [("Patient", "r"), ("Observation", "r")] + ([("Observation", "c")] if request.method == "POST" else [])
    if name == "registry-report":
        return [(t, "s") for t in CLINICAL_TYPES]
    if name == "export":  # and the Provenance of what it writes, when asked for (includeAssociatedData)
        exported = [(t, "s") for t in (_types(request) if resource_type == "*" else CLINICAL_TYPES)]
        return [*exported, ("Provenance", "s")] if _names(request, "includeAssociatedData") else exported
    if name == "versions":
        return []  # discovery, like the CapabilityStatement: public
    if name == "export-poll-status":
        return []  # an export job answers only the caller that started it (bulk/)
    if name == "cohort":
        return [("Patient", "s"), ("Group", "c")]
    if name in ("import", "import-poll-status"):
        return None  # bulk import writes anything, under any id: the system's and admin's only
    if name in ("reindex", "reindex-status"):
        return [("SearchParameter", "u" if name == "reindex" else "r")]
    return None


def _names(request: FhirRequest, name: str) -> bool:
    """Whether ``request`` gives the parameter ``name``, in its query or in a Parameters body."""
    body = request.body
    given = body.get("parameter") if isinstance(body, dict) and body.get("resourceType") == "Parameters" else None
    return any(key == name for key, _ in request.params) or (
        isinstance(given, list) and any(isinstance(p, dict) and p.get("name") == name for p in given))


def _types(request: FhirRequest) -> Iterable[str]:
    """The types a system-level search, history or export reads: its ``_type`` list, else every type."""
    listed = [t.strip() for key, value in request.params if key == "_type" for t in value.split(",") if t.strip()]
    return [t for t in listed if t in SERVED_TYPES] or SUPPORTED_TYPES


def _what(request: FhirRequest) -> str:
    parts = [p for p in (request.resource_type, request.resource_id) if p]
    if request.operation:
        parts.append(f"${request.operation}")
    return "/".join(parts) or "[base]"
