"""patch (https://hl7.org/fhir/R4/http.html#patch): with JSON Patch (RFC 6902, a JSON array) or FHIRPath Patch
(a ``Parameters`` resource, ``interactions/fhirpath_patch.py``); what the patch makes is checked as an update.
Conditional patch (``PATCH [type]?[criteria]``): the one resource the criteria match is patched; none is a 404,
several a 412."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from fhir_server.errors import Gone, InvalidRequest, NotFound, PreconditionFailed, UnprocessableEntity
from fhir_server.interactions.fhirpath_patch import FhirPathPatch, parse_fhirpath_patch
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.interactions.update import check_if_match, check_if_none_match, update


class JsonPatch:
    """A JSON Patch document; :meth:`apply` returns the patched copy of a resource."""

    def __init__(self, operations: jsonpatch.JsonPatch) -> None:
        self.operations = operations

    def apply(self, resource: dict[str, Any]) -> dict[str, Any]:
        try:
            patched: dict[str, Any] = self.operations.apply(copy.deepcopy(resource))
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise UnprocessableEntity(f"The patch cannot be applied: {exc}", code="processing") from exc
        return patched


Patch = JsonPatch | FhirPathPatch


def parse_patch(document: Any) -> Patch:
    """A JSON array is a JSON Patch, a ``Parameters`` resource a FHIRPath Patch; anything else is a 400."""
    if isinstance(document, dict):
        return parse_fhirpath_patch(document)
    if not isinstance(document, list):
        raise InvalidRequest("A patch is a JSON Patch (a JSON array of operations) or a FHIRPath Patch (a "
                             "Parameters resource)", code="structure")
    try:
        return JsonPatch(jsonpatch.JsonPatch(document))
    except (jsonpatch.InvalidJsonPatch, TypeError) as exc:
        raise InvalidRequest(f"Invalid JSON Patch: {exc}", code="structure") from exc


async def patch(uow: UnitOfWork, resource_type: str, resource_id: str, operations: Patch, *,
                if_match: str | None = None, if_none_match: str | None = None) -> InteractionResult:
    current = await uow.current(resource_type, resource_id)
    if current is None:
        raise NotFound(f"{resource_type}/{resource_id} does not exist")
    if current.deleted or current.resource is None:
        raise Gone(f"{resource_type}/{resource_id} was deleted")
    check_if_match(current, if_match)
    check_if_none_match(current, if_none_match)
    patched = operations.apply(current.resource)
    return await update(uow, resource_type, resource_id, patched, method="PATCH")  # checks what the patch made


async def conditional_patch(uow: UnitOfWork, resource_type: str, criteria: str, operations: Patch, *,
                            if_match: str | None = None, if_none_match: str | None = None) -> InteractionResult:
    """Patch the one ``resource_type`` the search ``criteria`` match."""
    resource_id = await conditional_patch_target(uow, resource_type, criteria)
    return await patch(uow, resource_type, resource_id, operations, if_match=if_match, if_none_match=if_none_match)


async def conditional_patch_target(uow: UnitOfWork, resource_type: str, criteria: str) -> str:
    """The id of the one ``resource_type`` the search ``criteria`` match (of what the caller may see): none is a
    404, several a 412."""
    matches = await uow.matches(resource_type, criteria)
    if not matches:
        raise NotFound(f"Conditional patch '{resource_type}?{criteria}' matches no resource")
    if len(matches) > 1:
        raise PreconditionFailed(f"Conditional patch '{resource_type}?{criteria}' matches {len(matches)} resources")
    return str(matches[0]["_id"])
