"""The AuditEvent resource of one interaction, shaped as IHE's Basic Audit Log Patterns (BALP,
https://profiles.ihe.net/ITI/BALP/) for RESTful interactions (https://hl7.org/fhir/R4/auditevent.html;
README, "Audit trail"), and the two ways it is written.

An event has ``type`` ``rest`` (audit-event-type) with the interaction as ``subtype`` (restful-interaction),
``action`` (C create, R read/vread, U update/patch, D delete, E search/history/operation/batch/transaction: BALP
records a query as an execution), ``recorded``, ``outcome`` (0 success, 4 refused or failed because of the request,
8 failed on the server's side, 12 an unexpected error) with ``outcomeDesc`` for a failure; two agents: the client
(``who`` the identifier of its client id, ``role`` its role and, for an ``ehr`` client, its center, ``requestor``)
and this server; ``source`` this server (observer ``FHIR_AUDIT_SOURCE``); entities: the resources read or written
(``Type/id/_history/n``, role Domain Resource), the patients they belong to (role Patient), and for a search,
history or operation its query (role Query, ``entity.query`` the URL relative to the base, in base64).

This module knows nothing of how a request was parsed (``audit.py`` does): it is what the unit of work needs to
stage the event of its writes (``stage``) in its own transaction, and what any layer needs to queue the event of
a refused or failed request (``record_failure``).
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from fhir_server.context import RequestContext
from fhir_server.contract import BASE
from fhir_server.errors import FhirError
from fhir_server.permissions import Role
from fhir_server.resources import AUDIT_EVENT
from fhir_server.services import Services
from fhir_server.storage.audit_log import audit_document
from fhir_server.storage.documents import ResourceWrite, instant, now_ms

EVENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
              "display": "RESTful Operation"}
INTERACTIONS = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
CLIENT_AGENT = {"system": DCM, "code": "110153", "display": "Source Role ID"}
SERVER_AGENT = {"system": DCM, "code": "110152", "display": "Destination Role ID"}
# An authentication (the token endpoint), as DICOM's audit vocabulary names it (BALP's authentication events)
AUTHENTICATION_TYPE = {"system": DCM, "code": "110114", "display": "User Authentication"}
LOGIN = {"system": DCM, "code": "110122", "display": "Login"}
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
               "display": "Application Server"}
CLIENT_SYSTEM = f"{BASE}/sid/client"  # the identifier of a client (its client_id)
ROLE_SYSTEM = f"{BASE}/CodeSystem/client-role"  # ehr | researcher | maintainer | admin | system
CENTER_SYSTEM = f"{BASE}/sid/center"  # the center of an ``ehr`` client
SOURCE_SYSTEM = f"{BASE}/sid/audit-source"  # this server as the observer (FHIR_AUDIT_SOURCE)
# An entity's type and role are system and code only (no ``display``, optional in Coding): the event of a search
# repeats them for every patient of its page, and each byte is encoded, sent and stored once per patient
PATIENT_ROLE = {"type": {"system": ENTITY_TYPE, "code": "1"},
                "role": {"system": OBJECT_ROLE, "code": "1"}}  # Person, Patient
DATA_ROLE = {"type": {"system": ENTITY_TYPE, "code": "2"},
             "role": {"system": OBJECT_ROLE, "code": "4"}}  # System Object, Domain Resource
QUERY_ROLE = {"type": {"system": ENTITY_TYPE, "code": "2"}, "role": {"system": OBJECT_ROLE, "code": "24"}}  # Query
_WRITE_SUBTYPES = {"POST": ("create", "C"), "PUT": ("update", "U"), "PATCH": ("patch", "U"),
                   "DELETE": ("delete", "D")}
_MARK = "_fhir_audited"  # set on an exception once its failure is recorded
_MAX_DESCRIPTION = 1000  # characters of outcomeDesc kept


@dataclass(frozen=True)
class Asked:
    """What a request asked for, as far as it was understood (a request that failed to parse has only its
    method and URL)."""

    method: str
    url: str  # relative to the base, with the query: Patient?identifier=..., Patient/1/$everything
    subtype: str | None = None  # restful-interaction code
    action: str | None = None  # C R U D E; None: from the method
    resource_type: str | None = None
    resource_id: str | None = None
    query: bool = False  # a search, history or operation: its URL is the query entity

    @classmethod
    def raw(cls, method: str, path: str, query: str) -> Asked:
        return cls(method, f"{path}?{query}" if query else path, query=bool(query))


class StagingWork(Protocol):
    """What ``stage`` needs of a unit of work (``unit_of_work.UnitOfWork``)."""

    ctx: RequestContext
    services: Services

    def staged_writes(self) -> list[ResourceWrite]: ...

    def record_audit(self, document: dict[str, Any]) -> None: ...


def stage(uow: StagingWork, asked: Asked | None, status: int, entities: Iterable[dict[str, Any]] = ()) -> None:
    """Stage the event of the unit of work's writes, written by its last flush in the same transaction.
    ``asked`` None: a unit of work run for no request (an operation's writes, start-up loading), described by its
    writes."""
    services = uow.services
    if services.audit_log is None:
        return
    writes = uow.staged_writes()
    described = asked if asked is not None else _asked_by_writes(writes)
    every = [*entities, *write_entities(writes)]
    uow.record_audit(document(services, uow.ctx, described, status, every))


def record_failure(ctx: RequestContext | None, services: Services, asked: Asked, exc: BaseException, *,
                   base_url: str | None = None) -> None:
    """Queue the event of a refused or failed request, once per exception (the innermost caller that knows the
    request records it and marks the exception); never in the transaction the failure aborted."""
    if services.audit_log is None or getattr(exc, _MARK, False) or asked.subtype == "capabilities":
        return
    with contextlib.suppress(AttributeError):  # an exception type without a __dict__: recorded, maybe twice
        setattr(exc, _MARK, True)
    status = exc.status if isinstance(exc, FhirError) else 500
    base = ctx.base_url if ctx is not None else (base_url or "")
    recorded = now_ms()
    services.audit_log.record(event(services.settings.audit_source, ctx, base, asked, status, _target_entities(asked),
                                    recorded, description=_description(exc),
                                    unexpected=not isinstance(exc, FhirError)), recorded)


def record_authentication(services: Services, base_url: str, path: str, client_id: str | None, role: Role | None,
                          center: str | None, client_address: str | None, error: str | None) -> None:
    """Queue the event of a token request (security.html: authentications are audited): DICOM's "User
    Authentication" / "Login", outcome 0 when a token was issued, 4 with the OAuth error when refused. The client
    is the one the request claims to be (``client_id`` None: none could be read), with its registered role and
    center when it is a registered client."""
    if services.audit_log is None:
        return
    recorded = now_ms()
    resource = event(services.settings.audit_source, None, base_url, Asked("POST", path, action="E"),
                     400 if error else 200, (), recorded, description=error)
    resource["type"] = AUTHENTICATION_TYPE
    resource["subtype"] = [LOGIN]
    agent = UNAUTHENTICATED if client_id is None else _claimed_client(client_id, role, center)
    if client_address:
        agent = {**agent, "network": _network(client_address)}
    resource["agent"][0] = agent
    services.audit_log.record(resource, recorded)


def _claimed_client(client_id: str, role: Role | None, center: str | None) -> dict[str, Any]:
    if role is not None:
        return _client(client_id, role, center)
    return {"type": {"coding": [CLIENT_AGENT]}, "who": {"identifier": {"system": CLIENT_SYSTEM, "value": client_id}},
            "requestor": True}


def document(services: Services, ctx: RequestContext, asked: Asked, status: int,
             entities: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The stored document of a write's event (its search values extracted now, as for any resource written)."""
    recorded = now_ms()
    resource = event(services.settings.audit_source, ctx, ctx.base_url, asked, status, entities, recorded)
    return audit_document(resource, recorded, services.index_values(resource))


def queue(services: Services, ctx: RequestContext, asked: Asked, status: int,
          entities: Iterable[dict[str, Any]]) -> None:
    """Queue the event of a successful read for the background writer (which also extracts its search values)."""
    if services.audit_log is not None:
        recorded = now_ms()
        services.audit_log.record(event(services.settings.audit_source, ctx, ctx.base_url, asked, status, entities,
                                        recorded), recorded)


def event(source: str, ctx: RequestContext | None, base_url: str, asked: Asked, status: int,
          entities: Iterable[dict[str, Any]], recorded: datetime, *, description: str | None = None,
          unexpected: bool = False) -> dict[str, Any]:
    """The AuditEvent resource (module docstring); ``ctx`` None: the caller is not known (not authenticated)."""
    at = instant(recorded)
    out: dict[str, Any] = {
        "resourceType": AUDIT_EVENT, "id": str(uuid.uuid4()), "meta": {"versionId": "1", "lastUpdated": at},
        "type": EVENT_TYPE,
    }
    if asked.subtype is not None:
        out["subtype"] = _subtype(asked.subtype)
    out["action"] = asked.action or _action_of_method(asked.method)
    out["recorded"] = at
    out["outcome"] = _outcome(status, unexpected)
    if description:
        out["outcomeDesc"] = description
    client = _client(ctx.caller, ctx.role, ctx.center) if ctx is not None else UNAUTHENTICATED
    if ctx is not None and ctx.client_address:
        client = {**client, "network": _network(ctx.client_address)}
    out["agent"] = [client, _server(base_url)]
    out["source"] = _source(source, base_url)
    unique = _unique(entities)
    if unique:
        out["entity"] = unique
    return out


def _outcome(status: int, unexpected: bool) -> str:
    if unexpected:
        return "12"  # major failure: an error the server did not foresee
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def _action_of_method(method: str) -> str:
    return {"GET": "R", "HEAD": "R", "POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D"}.get(method.upper(), "E")


# The parts that repeat from one event to the next are built once and shared by the events (stored, never mutated).
UNAUTHENTICATED = {"type": {"coding": [CLIENT_AGENT]}, "who": {"display": "unauthenticated client"},
                   "requestor": True}


@lru_cache(maxsize=4096)
def _client(caller: str, role: Role, center: str | None) -> dict[str, Any]:
    roles = [{"coding": [{"system": ROLE_SYSTEM, "code": str(role)}]}]
    if center:
        roles.append({"coding": [{"system": CENTER_SYSTEM, "code": center}]})
    return {"type": {"coding": [CLIENT_AGENT]}, "role": roles,
            "who": {"identifier": {"system": CLIENT_SYSTEM, "value": caller}}, "requestor": True}


@lru_cache(maxsize=4096)
def _network(address: str) -> dict[str, str]:
    """``agent.network`` of an address: type 2 an IP address (network-type), 1 a machine name."""
    return {"address": address, "type": "2" if _is_ip(address) else "1"}


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=64)
def _server(base_url: str) -> dict[str, Any]:
    return {"type": {"coding": [SERVER_AGENT]}, "who": {"display": base_url or "this server"}, "requestor": False}


@lru_cache(maxsize=64)
def _source(source: str, base_url: str) -> dict[str, Any]:
    return {"site": base_url or "unknown",
            "observer": {"identifier": {"system": SOURCE_SYSTEM, "value": source}, "display": source},
            "type": [SOURCE_TYPE]}


@lru_cache(maxsize=64)
def _subtype(code: str) -> list[dict[str, Any]]:
    return [{"system": INTERACTIONS, "code": code}]


# -- entities ---------------------------------------------------------------------------------------------------


def data_entity(reference: str) -> dict[str, Any]:
    return {"what": {"reference": reference}, **DATA_ROLE}


def patient_entity(reference: str) -> dict[str, Any]:
    return {"what": {"reference": reference}, **PATIENT_ROLE}


def query_entity(url: str) -> dict[str, Any]:
    return {**QUERY_ROLE, "query": base64.b64encode(url.encode("utf-8")).decode("ascii")}


def patient_of(resource: Any) -> str | None:
    """The Patient a resource is about: itself, or its ``subject``/``patient`` reference to a Patient."""
    if not isinstance(resource, dict):
        return None
    if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
        return f"Patient/{resource['id']}"
    for key in ("subject", "patient"):
        value = resource.get(key)
        reference = value.get("reference") if isinstance(value, dict) else None
        if isinstance(reference, str) and reference.startswith("Patient/"):
            end = reference.find("/", len("Patient/"))  # without a version's ``/_history/n``
            return reference if end < 0 else reference[:end]
    return None


def write_entities(writes: Sequence[ResourceWrite]) -> list[dict[str, Any]]:
    """The versions written and their patients (a deleted Patient is its own)."""
    out = []
    for write in writes:
        out.append(data_entity(f"{write.type}/{write.id}/_history/{write.vid}"))
        patient = patient_of(write.resource) or (f"Patient/{write.id}" if write.type == "Patient" else None)
        if patient is not None:
            out.append(patient_entity(patient))
    return out


def _target_entities(asked: Asked) -> list[dict[str, Any]]:
    """The entities of a failed request: its query, or the resource it named."""
    if asked.query:
        return [query_entity(asked.url)]
    if asked.resource_type and asked.resource_id:
        out = [data_entity(f"{asked.resource_type}/{asked.resource_id}")]
        if asked.resource_type == "Patient":
            out.append(patient_entity(f"Patient/{asked.resource_id}"))
        return out
    return []


def _unique(entities: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each entity once (a search of 100 Observations of one patient names the patient once)."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for entity in entities:
        key = (entity.get("what", {}).get("reference", ""), entity["role"]["code"], entity.get("query", ""))
        if key not in seen:
            seen.add(key)
            out.append(entity)
    return out


def _asked_by_writes(writes: Sequence[ResourceWrite]) -> Asked:
    if len(writes) == 1:
        write = writes[0]
        subtype, action = _WRITE_SUBTYPES.get(write.method, (None, None))
        return Asked(write.method, f"{write.type}/{write.id}", subtype, action, write.type, write.id)
    return Asked("POST", "", "transaction", "E")


def _description(exc: BaseException) -> str:
    if isinstance(exc, FhirError):
        text = "; ".join(issue.diagnostics for issue in exc.issues)
        return f"{exc.status}: {text}"[:_MAX_DESCRIPTION]
    return f"500: {type(exc).__name__}"  # never the message of an unexpected error: it may carry data
