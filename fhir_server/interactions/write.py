"""Shared steps of the write interactions: validate and stage a new version of a resource."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import operation_outcome
from fhir_server.interactions.enforcement import check_write
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.interactions.versioning import stamp
from fhir_server.storage.documents import ResourceWrite, StoredVersion


async def stage_version(uow: UnitOfWork, resource: dict[str, Any], resource_id: str, method: str,
                        previous: StoredVersion | None, status: int) -> InteractionResult:
    """Validate ``resource`` (422 on profile errors), stamp it as the version after ``previous`` (None: new)
    and stage it; the result carries the validation warnings as its OperationOutcome."""
    vid = previous.vid + 1 if previous is not None else 1
    last_updated = uow.stamp_after(previous)
    stored = stamp(resource, resource_id, vid, last_updated)
    issues = await check_write(uow, stored)
    write = ResourceWrite(
        type=stored["resourceType"], id=resource_id, vid=vid, last_updated=last_updated, method=method,
        resource=stored, search_values=uow.services.index_values(stored),
        previous_vid=previous.vid if previous is not None else None,
    )
    version = uow.stage(write)
    return InteractionResult(status, version.resource, version, operation_outcome(issues) if issues else None)


def stage_tombstone(uow: UnitOfWork, previous: StoredVersion) -> StoredVersion:
    write = ResourceWrite(
        type=previous.type, id=previous.id, vid=previous.vid + 1, last_updated=uow.stamp_after(previous),
        method="DELETE", resource=None, previous_vid=previous.vid,
    )
    return uow.stage(write)
