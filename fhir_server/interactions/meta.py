"""``$meta`` (https://hl7.org/fhir/R4/resource-operation-meta.html): the profiles, tags and security labels in use,
among what the caller may read.

- ``GET [type]/[id]/$meta``: the resource's own ``meta`` (404 unknown, 410 deleted, as a read);
- ``GET [type]/[id]/_history/[vid]/$meta``: that version's (404 and 410 as a vread);
- ``GET [type]/$meta``: every profile, tag and security label the type's current resources carry;
- ``GET /$meta``: the same over every type.

The answer is a ``Parameters`` with one ``return`` of type Meta. A tag or security label is named by its system and
code (the first display found is kept); each list is sorted. Type and system levels are one aggregation per type,
through ``ResourceStore.aggregate`` (the caller's access filter in front, deleted resources never read): only the
resources carrying one of the three (their ``_profile``, ``_tag`` or ``_security`` index values, so an index finds
them), grouped in MongoDB; nothing but the distinct values leaves the database.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import Gone, NotFound
from fhir_server.interactions.read import readable_version
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.resources import SUPPORTED_TYPES
from fhir_server.search.index_layout import param_path
from fhir_server.services import Services

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Resource-meta"
CODED = ("tag", "security")  # Coding lists of Meta; ``profile`` is a list of canonicals


def register(registry: OperationRegistry) -> None:
    registry.register(OperationSpec(
        "meta", meta, frozenset({"system", "type", "instance"}), definition=DEFINITION, on_versions=True,
        documentation="The profiles, tags and security labels in use: of a resource or one of its versions, of a "
                      "type, of every type (among what the caller may read)"))


async def meta(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    if op.resource_type is not None and op.resource_id is not None and op.version_id is not None:
        version = await readable_version(ctx, services, op.resource_type, op.resource_id, op.version_id)
        found = dict((version.resource or {}).get("meta") or {})
    elif op.resource_type is not None and op.resource_id is not None:
        found = await _instance_meta(ctx, services, op.resource_type, op.resource_id)
    else:
        types = [op.resource_type] if op.resource_type is not None else list(SUPPORTED_TYPES)
        per_type = await asyncio.gather(*(services.store.aggregate(ctx, t, pipeline()) for t in types))
        found = summary([group for groups in per_type for group in groups])
    return OperationResponse(200, {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": found}]})


async def _instance_meta(ctx: RequestContext, services: Services, resource_type: str, resource_id: str
                         ) -> dict[str, Any]:
    current = await services.store.current(ctx, resource_type, resource_id)
    if current is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    if current.deleted:
        raise Gone(f"{resource_type}/{resource_id} was deleted", headers={"ETag": current.etag})
    return dict((current.resource or {}).get("meta") or {})


def pipeline() -> list[dict[str, Any]]:
    """The distinct profiles, tags and security labels of a type's resources: one document per list."""
    carrying = {"$or": [{param_path(code): {"$exists": True}} for code in ("_profile", "_tag", "_security")]}
    facets: dict[str, Any] = {"profile": [{"$unwind": "$resource.meta.profile"},
                                          {"$group": {"_id": "$resource.meta.profile"}}]}
    for element in CODED:
        field = f"$resource.meta.{element}"
        facets[element] = [{"$unwind": field},
                           {"$group": {"_id": {"system": f"{field}.system", "code": f"{field}.code"},
                                       "display": {"$first": f"{field}.display"}}}]
    return [{"$match": carrying}, {"$facet": facets}]


def summary(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """One Meta of the facets of every type: each value once, sorted."""
    profiles = sorted({g["_id"] for facet in groups for g in facet.get("profile", []) if isinstance(g["_id"], str)})
    found: dict[str, Any] = {"profile": profiles} if profiles else {}
    for element in CODED:
        codings: dict[tuple[str, str], dict[str, Any]] = {}
        for facet in groups:
            for group in facet.get(element, []):
                coding = {k: v for k, v in {**group["_id"], "display": group.get("display")}.items()
                          if isinstance(v, str)}
                codings.setdefault((coding.get("system", ""), coding.get("code", "")), coding)
        if codings:
            found[element] = [codings[key] for key in sorted(codings)]
    return found
