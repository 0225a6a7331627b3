"""delete and conditional delete (https://hl7.org/fhir/R4/http.html#delete, #cdelete).

A delete stores a tombstone version (history keeps every earlier version); reads then answer 410 Gone.
"""

from __future__ import annotations

from fhir_server.errors import NotFound, PreconditionFailed
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.interactions.write import stage_tombstone


async def delete(uow: UnitOfWork, resource_type: str, resource_id: str) -> InteractionResult:
    current = await uow.current(resource_type, resource_id)
    if current is None:
        raise NotFound(f"{resource_type}/{resource_id} does not exist")
    if current.deleted:  # deleting again changes nothing (an idempotent retry)
        return InteractionResult(204, None, None)
    version = stage_tombstone(uow, current)
    return InteractionResult(204, None, version)


async def conditional_delete(uow: UnitOfWork, resource_type: str, criteria: str) -> InteractionResult:
    matches = await uow.matches(resource_type, criteria)
    if len(matches) > 1:
        raise PreconditionFailed(f"Conditional delete '{criteria}' matches {len(matches)} resources")
    if not matches:
        return InteractionResult(204, None, None)
    return await delete(uow, resource_type, matches[0]["_id"])
