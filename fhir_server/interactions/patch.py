"""patch with JSON Patch (https://hl7.org/fhir/R4/http.html#patch, RFC 6902)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from fhir_server.errors import Gone, InvalidRequest, NotFound, UnprocessableEntity
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.interactions.update import check_if_match, update


def parse_patch(document: Any) -> jsonpatch.JsonPatch:
    if not isinstance(document, list):
        raise InvalidRequest("A JSON Patch document is a JSON array of operations", code="structure")
    try:
        return jsonpatch.JsonPatch(document)
    except (jsonpatch.InvalidJsonPatch, TypeError) as exc:
        raise InvalidRequest(f"Invalid JSON Patch: {exc}", code="structure") from exc


async def patch(uow: UnitOfWork, resource_type: str, resource_id: str, operations: jsonpatch.JsonPatch, *,
                if_match: str | None = None) -> InteractionResult:
    current = await uow.current(resource_type, resource_id)
    if current is None:
        raise NotFound(f"{resource_type}/{resource_id} does not exist")
    if current.deleted or current.resource is None:
        raise Gone(f"{resource_type}/{resource_id} was deleted")
    check_if_match(current, if_match)
    try:
        patched = operations.apply(copy.deepcopy(current.resource))
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise UnprocessableEntity(f"The patch cannot be applied: {exc}", code="processing") from exc
    return await update(uow, resource_type, resource_id, patched, method="PATCH")  # checks what the patch made
