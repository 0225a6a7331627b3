"""The audit trail of the RESTful API: one AuditEvent per interaction (README, "Audit trail"; the resource's shape
is ``audit_event.py``'s, IHE BALP).

How an event is written depends on what it records:

- a write (create, update, patch, delete, a transaction, a batch's write entry): staged in the write's unit of work
  (``stage_write``) and committed in the same MongoDB transaction, so no change commits without its trace and no
  trace is left of an aborted change (the unit of work also stages one for writes no request described: an
  operation's, start-up loading's);
- anything else (read, vread, search, history, operation): queued for the background writer (``record``), so a read
  never waits on it;
- a refusal or failure: queued once it is known (``audit_event.record_failure``), by the innermost caller that knows
  the request (dispatch, a Bundle entry, the HTTP route for what fails before parsing or authentication).

Reading the audit trail is audited too, but an event about AuditEvents names only its query or the AuditEvent read,
never the patients those events mention: each read of the trail adds one event of constant size (no recursion, no
growth). ``metadata`` is not audited (no data, asked before any token). A batch leaves one event per entry, a
transaction one for the whole (its entries are one change).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fhir_server.context import RequestContext
from fhir_server.interactions.audit_event import (
    Asked,
    StagingWork,
    data_entity,
    patient_entity,
    patient_of,
    query_entity,
    queue,
    stage,
)
from fhir_server.interactions.request import OPERATIONS, FhirRequest, Interaction
from fhir_server.interactions.result import InteractionResult
from fhir_server.operations import OperationResponse
from fhir_server.services import Services

# interaction -> (restful-interaction subtype, action)
_SUBTYPES: dict[Interaction, tuple[str, str]] = {
    Interaction.READ: ("read", "R"), Interaction.VREAD: ("vread", "R"),
    Interaction.UPDATE: ("update", "U"), Interaction.PATCH: ("patch", "U"), Interaction.DELETE: ("delete", "D"),
    Interaction.CREATE: ("create", "C"),
    Interaction.HISTORY_INSTANCE: ("history-instance", "E"), Interaction.HISTORY_TYPE: ("history-type", "E"),
    Interaction.HISTORY_SYSTEM: ("history-system", "E"),
    Interaction.SEARCH_TYPE: ("search-type", "E"), Interaction.SEARCH_COMPARTMENT: ("search-type", "E"),
    Interaction.SEARCH_SYSTEM: ("search-system", "E"), Interaction.CAPABILITIES: ("capabilities", "R"),
    Interaction.BATCH: ("batch", "E"), Interaction.TRANSACTION: ("transaction", "E"),
    Interaction.OPERATION_SYSTEM: ("operation", "E"), Interaction.OPERATION_TYPE: ("operation", "E"),
    Interaction.OPERATION_INSTANCE: ("operation", "E"),
}
_HISTORIES = frozenset({Interaction.HISTORY_INSTANCE, Interaction.HISTORY_TYPE, Interaction.HISTORY_SYSTEM})
_SEARCHES = frozenset({Interaction.SEARCH_TYPE, Interaction.SEARCH_COMPARTMENT, Interaction.SEARCH_SYSTEM})
_QUERIES = _SEARCHES | _HISTORIES | OPERATIONS


def asked(request: FhirRequest) -> Asked:
    """What ``request`` asked for, as its AuditEvent describes it."""
    subtype, action = _SUBTYPES[request.interaction]
    return Asked(request.method, _relative_url(request), subtype, action, request.resource_type, request.resource_id,
                 query=request.interaction in _QUERIES)


def record(ctx: RequestContext, services: Services, request: FhirRequest,
           result: InteractionResult | OperationResponse) -> None:
    """Queue the event of a successful read, search, history or operation (no waiting on its write)."""
    if services.audit_log is None or request.interaction is Interaction.CAPABILITIES:
        return
    queue(services, ctx, asked(request), result.status, [*_request_entities(request), *result_entities(result)])


def stage_write(uow: StagingWork, request: FhirRequest, results: list[InteractionResult]) -> None:
    """Stage the event of ``request``'s writes in its unit of work (same transaction)."""
    entities = _request_entities(request)
    for result in results:
        entities += result_entities(result)
    stage(uow, asked(request), max((r.status for r in results), default=200), entities)


def result_entities(result: InteractionResult | OperationResponse) -> list[dict[str, Any]]:
    """What a result touched: the version read or written and its patient, a Bundle's resources' patients (an
    AuditEvent has none: reading the trail never multiplies it)."""
    out: list[dict[str, Any]] = []
    version = getattr(result, "version", None)
    if version is not None:
        out.append(data_entity(f"{version.type}/{version.id}/_history/{version.vid}"))
    body = result.resource if isinstance(result, InteractionResult) else result.body
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        resources: list[Any] = [e.get("resource") for e in body.get("entry") or () if isinstance(e, dict)]
    else:
        resources = [body]
    # each patient once, before its entity is built (a page of 100 Observations often names a patient many times)
    patients = dict.fromkeys(patient for patient in map(patient_of, resources) if patient is not None)
    out += map(patient_entity, patients)
    return out


def _request_entities(request: FhirRequest) -> list[dict[str, Any]]:
    """The query of a search, history or operation; the instance named by an instance-level one."""
    out: list[dict[str, Any]] = []
    if request.interaction in _QUERIES:
        out.append(query_entity(_relative_url(request)))
    if request.compartment is not None:
        out.append(patient_entity("/".join(request.compartment)))
    if request.resource_id and request.interaction in (Interaction.OPERATION_INSTANCE, Interaction.HISTORY_INSTANCE):
        out.append(data_entity(f"{request.resource_type}/{request.resource_id}"))
        if request.resource_type == "Patient":
            out.append(patient_entity(f"Patient/{request.resource_id}"))
    return out


def _relative_url(request: FhirRequest) -> str:
    """The request's URL relative to the base, its query as sent (a POST ``_search``'s form as its query)."""
    parts: list[str] = list(request.compartment or ())
    if request.resource_type:
        parts.append(request.resource_type)
    if request.resource_id and request.compartment is None:
        parts.append(request.resource_id)
    if request.interaction in _HISTORIES:
        parts.append("_history")
    elif request.interaction is Interaction.VREAD:
        parts += ["_history", request.version_id or ""]
    elif request.operation:
        parts += [*(["_history", request.version_id] if request.version_id else []), f"${request.operation}"]
    path = "/".join(parts)
    searched_by_form = request.method == "POST" and request.interaction in _SEARCHES
    query = urlencode(request.params) if searched_by_form else request.query
    return f"{path}?{query}" if query else path
