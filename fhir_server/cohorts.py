"""Cohorts as Groups: ``POST [base]/Group/$cohort`` stores the patients matching a search as an actual Group.

Input (query string or a ``Parameters`` body): ``criteria`` - a Patient search, e.g.
``Patient?_has:Observation:subject:value-concept=https://cml-registry.eu/fhir/CodeSystem/ifp-registration-reason|toxicity``
(the ``Patient?`` prefix may be left out) - and ``name`` (optional; defaults to the criteria).
Output: ``201 Created`` with the new Group (https://hl7.org/fhir/R4/group.html): ``type`` person,
``actual`` true, ``quantity`` and one ``member.entity`` per matching Patient, and the criteria recorded twice:
as the extension ``COHORT_CRITERIA`` (valueString, machine-readable) and as a ``characteristic`` whose code
says "search criteria" (human-readable). The membership is a snapshot taken at creation; create a new cohort
to re-evaluate. ``Group/{id}/$export`` exports it (fhir_server.bulk) and the registry report takes
``cohort=<Group id>`` through :func:`cohort_patient_ids`.

Only patients the caller may read are members (the search runs through the store's access filter).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.context import RequestContext
from fhir_server.errors import Gone, InvalidRequest, NotFound
from fhir_server.interactions.create import create
from fhir_server.interactions.search import compiled_filter
from fhir_server.interactions.unit_of_work import run_in_transaction
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.services import Services

COHORT_CRITERIA = "https://cml-registry.eu/fhir/StructureDefinition/cohort-criteria"
COHORT_OPERATION = "https://cml-registry.eu/fhir/OperationDefinition/Group-cohort"
# Result parameters make no sense for a membership: refused rather than silently ignored.
RESULT_PARAMS = frozenset({"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total",
                           "_contained", "_containedType", "_format", "_pretty"})
_CHUNK = 5000


def register(registry: OperationRegistry) -> None:
    """Add ``$cohort`` (POST, Group type level) to the operation registry (idempotent)."""
    if registry.find("cohort", "type", "Group", "POST") is not None:
        return
    registry.register(OperationSpec(
        name="cohort", handler=create_cohort, levels=frozenset({"type"}), types=frozenset({"Group"}),
        methods=frozenset({"POST"}), definition=COHORT_OPERATION,
        documentation="Create an actual Group of the Patients matching a search (parameters criteria, name)",
    ))


async def create_cohort(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    """``$cohort``: evaluate the criteria, store the Group, answer 201 with it."""
    criteria = op.param("criteria")
    if not criteria:
        raise InvalidRequest("$cohort needs the parameter 'criteria' (a Patient search)", code="required",
                             expression=("criteria",))
    params = criteria_params(criteria)
    patient_ids = await matching_patient_ids(ctx, services, params)
    group = cohort_group(op.param("name") or f"Cohort: {criteria}", criteria, patient_ids)
    result = await run_in_transaction(ctx, services, lambda uow: create(uow, "Group", group))
    return OperationResponse(201, result.resource, headers=result.headers(ctx, with_location=True))


def criteria_params(criteria: str) -> list[tuple[str, str]]:
    """``Patient?a=b&c=d`` (or ``?a=b``, or ``a=b``) -> [("a", "b"), ("c", "d")]; other types are a 400."""
    resource_type, sep, query = criteria.partition("?")
    if not sep:
        resource_type, query = "Patient", criteria
    if resource_type not in ("", "Patient"):
        raise InvalidRequest(f"A cohort is a Group of Patients: criteria must search Patient, not {resource_type}",
                             code="invalid", expression=("criteria",))
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        raise InvalidRequest("criteria has no search parameters", code="invalid", expression=("criteria",))
    refused = sorted({name for name, _ in pairs if name in RESULT_PARAMS})
    if refused:
        raise InvalidRequest(f"criteria may not use result parameters ({', '.join(refused)})", code="invalid",
                             expression=("criteria",))
    return pairs


async def matching_patient_ids(ctx: RequestContext, services: Services,
                               params: list[tuple[str, str]]) -> list[str]:
    """Ids of the Patients matching the search, streamed from a cursor (ids only)."""
    query = await compiled_filter(ctx, services, "Patient", params)
    cursor = services.store.iterate(ctx, "Patient", query, projection={"_id": 1}, sort=[("_id", 1)])
    return [doc["_id"] async for doc in cursor]


def cohort_group(name: str, criteria: str, patient_ids: list[str]) -> dict[str, Any]:
    """The Group resource of a cohort."""
    group: dict[str, Any] = {
        "resourceType": "Group",
        "extension": [{"url": COHORT_CRITERIA, "valueString": criteria}],
        "type": "person",
        "actual": True,
        "name": name,
        "quantity": len(patient_ids),
        "characteristic": [{
            "code": {"text": "search criteria"},
            "valueCodeableConcept": {"text": criteria},
            "exclude": False,
        }],
    }
    if patient_ids:
        group["member"] = [{"entity": {"reference": f"Patient/{pid}"}} for pid in patient_ids]
    return group


def member_patient_ids(group: dict[str, Any], base_url: str) -> set[str]:
    """Ids of the Patients a Group's active members refer to (relative, or absolute on this server)."""
    out: set[str] = set()
    prefixes = ("Patient/", f"{base_url.rstrip('/')}/Patient/")
    for member in group.get("member", ()):
        if member.get("inactive") is True:
            continue
        reference = (member.get("entity") or {}).get("reference")
        if not isinstance(reference, str):
            continue
        for prefix in prefixes:
            if reference.startswith(prefix):
                ident = reference[len(prefix):].split("/_history/")[0]
                if ident and "/" not in ident:
                    out.add(ident)
    return out


async def cohort_patient_ids(ctx: RequestContext, services: Services, group_id: str) -> set[str]:
    """Ids of the (current, readable by ``ctx``) Patients that are members of ``Group/{group_id}``.

    For the registry report (``cohort=<Group id>``) and the Group-level export. 404/410 when the Group is
    unknown or deleted. Members that were deleted, or that ``ctx`` may not read, are left out.
    """
    group = await services.store.current(ctx, "Group", group_id)
    if group is None:
        raise NotFound(f"Group/{group_id} is not known")
    if group.deleted or group.resource is None:
        raise Gone(f"Group/{group_id} was deleted")
    candidates = sorted(member_patient_ids(group.resource, ctx.base_url))
    found: set[str] = set()
    for chunk in _chunks(candidates, _CHUNK):
        async for doc in services.store.iterate(ctx, "Patient", {"_id": {"$in": chunk}}, projection={"_id": 1}):
            found.add(doc["_id"])
    return found


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
